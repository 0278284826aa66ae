"""Worker metrics (Prometheus), served at `/metrics` on the worker's web port.

Names follow Prometheus conventions; the Grafana dashboard in `deploy/grafana` reads exactly these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from pipeline.merge import NOTHING_MS

if TYPE_CHECKING:
    from pipeline.drift import WindowReport
    from pipeline.verdicts import VerdictOut

RECORDS = Counter("riskstream_worker_records_total", "Records handled by stage", ["stage"])
DEAD_LETTERS = Counter("riskstream_worker_dead_letters_total", "Invalid transactions sent to the DLQ")
REFUSED = Counter(
    "riskstream_worker_refused_transactions_total",
    "Valid transactions sent to the DLQ (also in dead_letters_total) for where or what they are, by reason: "
    "wrong_partition (not in the partition murmur2 gives its card: set partitioner=murmur2_random), "
    "conflicting_duplicate (a transaction_id already used by a transaction with other content)",
    ["reason"],
)
DUPLICATES = Counter("riskstream_worker_duplicates_total", "Repeated transaction ids, not counted again")
LATE = Counter(
    "riskstream_worker_late_entity_events_total",
    "Entity events later than the merge allows (not counted again)",
)
LABELS = Counter(
    "riskstream_worker_labels_total",
    "Labels by outcome: applied to merchant or card state (once each); late (applied after they should have counted); "
    "without_merchant / without_card (no merchant_id / card_id: stored, not used by that entity's features)",
    ["outcome"],
)
DROPPED = Counter(
    "riskstream_worker_records_dropped_total",
    "Records a stage did not handle on delivery: redelivered (handled already), skipped (records before it "
    "were skipped: re-read after a seek), unassigned (another worker owns the partition), unprimed (the "
    "partition's committed offset could not be read yet: re-read later), stalled (records left but none "
    "delivered for a while: sought back)",
    ["stage", "reason"],
)
BATCH_SIZE = Histogram(
    "riskstream_worker_batch_size",
    "Records per micro-batch",
    ["stage"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
)
VERDICTS = Counter("riskstream_worker_verdicts_total", "Verdicts by decision", ["decision"])
RULE_HITS = Counter("riskstream_worker_rule_hits_total", "Rule hits by rule and state", ["rule", "state"])
LATENCY = Histogram(
    "riskstream_worker_decision_latency_seconds",
    "From the transaction's arrival at the worker to its verdict",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REPLIES_IGNORED = Counter(
    "riskstream_worker_replies_ignored_total",
    "Replies not sent although a transaction's headers asked for one (its verdict is on the verdicts topic "
    "all the same), by reason: invalid_name (not a valid Kafka topic name), not_a_reply_topic (outside the "
    "reply prefix, or a pipeline topic), unknown_topic (no such topic on the broker), header_too_long "
    "(reply-to or correlation-id over 249 bytes, dropped at the card stage), send_failed",
    ["reason"],
)
EXPIRED_JOINS = Counter("riskstream_worker_expired_joins_total", "Transactions whose partials never all arrived")
MODEL_INFO = Gauge("riskstream_worker_model_info", "The model version serving (value 1)", ["version"])
RULES_INFO = Gauge("riskstream_worker_rules_info", "The rules version serving (value 1)", ["version"])
CONSUMER_LAG = Gauge(
    "riskstream_worker_consumer_lag",
    "Records of each assigned input partition (sources and internal topics) still to handle (pipeline.lag)",
    ["topic", "partition"],
)


CHALLENGER_DECISIONS = Counter(
    "riskstream_challenger_decisions_total",
    "What the challenger model would have decided, by decision (recorded on the verdict, never acted on)",
    ["decision"],
)
CHALLENGER_AGREEMENT = Counter(
    "riskstream_challenger_agreement_total",
    "Verdicts scored by a challenger, by whether its decision agrees with the champion's (agree: true|false)",
    ["agree"],
)
CHALLENGER_INFO = Gauge(
    "riskstream_worker_challenger_info", "The challenger model version scored (value 1; none without one)", ["version"]
)


def observe_verdict(out: VerdictOut) -> None:
    VERDICTS.labels(out.decision).inc()
    LATENCY.observe(out.latency_ms / 1000)
    for hit in out.rules:
        RULE_HITS.labels(hit["id"], hit["state"]).inc()
    if out.challenger is not None:
        CHALLENGER_DECISIONS.labels(out.challenger.decision).inc()
        CHALLENGER_AGREEMENT.labels("true" if out.challenger.decision == out.decision else "false").inc()


def set_info(gauge: Gauge, version: str | None) -> None:
    """One labelled series with value 1 for the version serving now, as `*_info` metrics do (none for None)."""
    gauge.clear()
    if version is not None:
        gauge.labels(version).set(1)


PAUSED = Gauge(
    "riskstream_worker_paused_partitions",
    "Source partitions (transactions, labels) not read now: ahead of the slowest source in event time, or "
    "waiting for the stages behind them (pipeline.alignment); always 0 with flow control off",
)
HELD = Gauge("riskstream_worker_held_items", "Items the event-time merges and the join hold")
INTERNAL_LAG = Gauge(
    "riskstream_worker_internal_lag_records", "Internal-topic records this worker's stages have still to handle"
)
SLOWEST_LAG = Gauge(
    "riskstream_worker_slowest_source_lag_seconds",
    "Wall clock minus the newest event time forwarded by the slowest lagging source (0 when none lags, NaN "
    "while it has forwarded nothing yet)",
)


@dataclass(frozen=True)
class Flow:
    """What holds a worker's stages back now: the figures its flow control decides on (pipeline.alignment),
    measured and exported whether flow control is on or not."""

    #: Source partitions paused by flow control.
    paused: int = 0
    #: Items held in the event-time merges and the join.
    held: int = 0
    #: Internal-topic records the entity and join stages have still to handle.
    internal_lag: int = 0
    #: The newest event time the slowest lagging source forwarded; None when no source lags.
    slowest_ms: int | None = None


def observe_flow(flow: Flow) -> None:
    PAUSED.set(flow.paused)
    HELD.set(flow.held)
    INTERNAL_LAG.set(flow.internal_lag)
    if flow.slowest_ms is None:
        SLOWEST_LAG.set(0)
    elif flow.slowest_ms == NOTHING_MS:  # lagging, nothing forwarded yet: how far behind is not known
        SLOWEST_LAG.set(math.nan)
    else:
        SLOWEST_LAG.set(max(time.time() - flow.slowest_ms / 1000, 0))


def observe_lag(lags: Iterable[tuple[str, int, int]]) -> None:
    """Records behind the end of each assigned partition: (topic, partition, lag); see `pipeline.lag`."""
    CONSUMER_LAG.clear()
    for topic, partition, lag in lags:
        CONSUMER_LAG.labels(topic, str(partition)).set(lag)


FEATURE_PSI = Gauge(
    "riskstream_feature_psi",
    "Population stability index of a feature over a sliding window against the model's training reference "
    "(pipeline.drift); NaN below the window's minimum count; > 0.2 is drift",
    ["feature", "window"],
)
SCORE_PSI = Gauge("riskstream_score_psi", "Population stability index of the model score (as feature_psi)", ["window"])
FLAG_RATE = Gauge(
    "riskstream_flag_rate", "Share of transactions scored at or above the review threshold, by window", ["window"]
)
TRAINING_FLAG_RATE = Gauge("riskstream_training_flag_rate", "The flag rate of the serving model's reference rows")


def observe_drift(reports: Iterable[WindowReport], training_flag_rate: float | None) -> None:
    """The drift gauges as of now; none when the model has no reference (or drift monitoring is off)."""
    for gauge in (FEATURE_PSI, SCORE_PSI, FLAG_RATE):
        gauge.clear()
    if training_flag_rate is None:
        TRAINING_FLAG_RATE.set(math.nan)
        return
    TRAINING_FLAG_RATE.set(training_flag_rate)
    for report in reports:
        for feature, value in report.feature_psi.items():
            FEATURE_PSI.labels(feature, report.window).set(value)
        SCORE_PSI.labels(report.window).set(report.score_psi)
        FLAG_RATE.labels(report.window).set(report.flag_rate)
