"""A realistic backlog replayed into one worker: how soon verdicts flow, whether they stall, peak memory, rate,
and every verdict's features against the offline reference (labels included).

The issue's scenario: months of generated history (transactions in event-time order, fraud labels reported
days later at their own report time) produced to 8 partitions before the worker starts, as a replay or a
worker back from an outage sees it. Figures come from the worker process itself (`/proc`) and from the
verdicts' broker timestamps.

Run alone: `python -m bench.backlog --transactions 100000 --days 60`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import BenchEnv, Role, stop_all
from bench.throughput import produce_backlog

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class BacklogResult:
    transactions: int
    labels: int
    days: int
    partitions: int
    workers: int
    kills: int
    #: From the worker's process start to the first verdict's broker timestamp.
    first_verdict_s: float
    #: Longest time between two consecutive verdicts (by broker timestamp), first to last.
    longest_gap_s: float
    first_to_last_tx_s: float
    peak_rss_mb: float
    worker_cpu_s: float
    cpu_ms_per_tx: float
    feature_mismatches: int
    mismatch_examples: list[str] = field(default_factory=list)
    missing: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProcWatch:
    """Samples a process's RSS (and keeps its CPU ticks) from /proc until stopped."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak_kb = 0
        self.cpu_ticks = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._run, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            statm = Path(f"/proc/{self.pid}/statm").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            return
        fields = stat.rsplit(")", 1)[1].split()
        self.cpu_ticks = int(fields[11]) + int(fields[12])
        self.peak_kb = max(self.peak_kb, int(statm[1]) * PAGE_KB)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._sampler.join()


def history(transactions: int, days: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Generated transactions in event-time order, and a chargeback per fraud at its report time."""
    from pipeline.io import iter_wire_transactions
    from training.generate import GeneratorConfig, generate

    df = generate(GeneratorConfig(transactions=transactions, days=days, seed=seed)).sort_values("timestamp")
    records = list(iter_wire_transactions(df))
    import pandas as pd

    # A chargeback not due yet has not been reported: the worker would refuse it as from the future.
    due = df["label_time"].notna() & (df["label_time"] < pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1))
    fraud = df[df["is_fraud"].astype(bool) & due].sort_values("label_time")
    labels = [
        {
            "transaction_id": str(t),
            "label": "chargeback",
            "reported_at": r.isoformat().replace("+00:00", "Z"),
            "merchant_id": str(m),
            "card_id": str(c),
            "source": "issuer",
        }
        for t, r, m, c in zip(
            fraud["transaction_id"], fraud["label_time"], fraud["merchant_id"], fraud["card_id"], strict=True
        )
    ]
    return records, labels, df


def offline_features(df: Any, labels: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The offline reference (the training path's replay) per transaction_id."""
    from pipeline.features import FEATURE_NAMES
    from pipeline.features.offline import LabelEvent, rows_from_frame
    from pipeline.records import Label
    from training.dataset import compute_matrix

    events = []
    for raw in labels:
        label = Label.model_validate_json(orjson.dumps(raw))
        events.append(
            LabelEvent(label.transaction_id, label.merchant_id, label.reported_at_ms, label.is_fraud, label.card_id)
        )
    rows = list(rows_from_frame(df))
    matrix, keep = compute_matrix(rows, events)
    assert matrix.shape[1] == len(FEATURE_NAMES)
    return {r.transaction_id: list(matrix[i]) for i, r in enumerate(rows) if keep[i]}


def compare(verdicts: dict[str, dict[str, Any]], offline: dict[str, list[float]]) -> tuple[int, list[str], int]:
    from pipeline.features import FEATURE_NAMES

    mismatches, missing = 0, 0
    examples: list[str] = []
    for tx_id, expected in offline.items():
        verdict = verdicts.get(tx_id)
        if verdict is None:
            missing += 1
            continue
        got = verdict["features"]
        for name, b in zip(FEATURE_NAMES, expected, strict=True):
            a = got[name]
            a = math.nan if a is None else float(a)
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                mismatches += 1
                if len(examples) < 10:
                    examples.append(f"{tx_id} {name}: stream={a} offline={b}")
                break
    return mismatches, examples, missing


async def collect_verdicts(
    bootstrap: str, topic: str, expected: int, timeout_s: float, fleet: Fleet
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """Every verdict (first per transaction) and the broker timestamps of the first copies; SIGKILLs and
    restarts the worker at the fleet's planned points."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    seen: dict[str, dict[str, Any]] = {}
    stamps: list[int] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {expected} verdicts after {timeout_s:.0f} s")
            if not fleet.alive():
                raise RuntimeError(f"the worker exited; {len(seen)} of {expected} verdicts")
            for messages in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for m in messages:
                    key = m.key.decode()
                    if key not in seen:
                        seen[key] = orjson.loads(m.value)
                        stamps.append(m.timestamp)
            fleet.maybe_kill(len(seen) / expected)
    finally:
        await consumer.stop()
    return seen, stamps


class Fleet:
    """The worker under test, SIGKILLed and restarted when the given fractions of verdicts are in."""

    def __init__(self, env: BenchEnv, root: Path, kill_at: Sequence[float]) -> None:
        self.env, self.root = env, root
        self.kill_at = sorted(kill_at)
        self.kills = 0
        self.peak_kb = 0
        self.cpu_ticks = 0
        self.worker, self.watch = self._start()

    def _start(self) -> tuple[Role, ProcWatch]:
        log_path = self.root / f"backlog-worker-{self.env.suffix}-{self.kills}.log"
        worker = Role(["-m", "pipeline.cli", "worker"], self.env.environ(), log_path).start()
        assert worker.proc is not None
        return worker, ProcWatch(worker.proc.pid)

    def alive(self) -> bool:
        return self.worker.alive()

    def maybe_kill(self, done: float) -> None:
        if self.kills < len(self.kill_at) and done >= self.kill_at[self.kills]:
            assert self.worker.proc is not None
            os.killpg(self.worker.proc.pid, signal.SIGKILL)
            self.worker.proc.wait(10)
            self._account()
            self.kills += 1
            self.worker, self.watch = self._start()

    def _account(self) -> None:
        self.watch.stop()
        self.peak_kb = max(self.peak_kb, self.watch.peak_kb)
        self.cpu_ticks += self.watch.cpu_ticks

    def stop(self) -> None:
        self._account()
        stop_all([self.worker])


def run_backlog(
    bootstrap: str,
    root: Path,
    models_dir: Path,
    *,
    transactions: int,
    days: int,
    seed: int = 5,
    partitions: int = 8,
    timeout_s: float = 1800,
    extra_env: dict[str, str] | None = None,
    kill_at: Sequence[float] = (),
    log: Any = print,
) -> BacklogResult:
    """Produce the history, start the worker, collect every verdict, compare with the offline reference."""
    records, labels, df = history(transactions, days, seed)
    log(f"backlog: {len(records):,} transactions, {len(labels):,} labels over {days} days")
    env = BenchEnv(bootstrap, root, partitions=partitions)
    env.extra.update({"RISKSTREAM_MODEL__DIR": str(models_dir), "RISKSTREAM_WORKER__EMIT_FEATURES": "true"})
    env.extra.update(extra_env or {})
    env.create_topics()
    produce_backlog(bootstrap, env.topics["TRANSACTIONS_TOPIC"], records)
    produce_labels(bootstrap, env.topics["LABELS_TOPIC"], labels)
    started = time.time()
    fleet = Fleet(env, root, kill_at)
    try:
        verdicts, stamps = asyncio.run(
            collect_verdicts(bootstrap, env.topics["VERDICTS_TOPIC"], len(df), timeout_s, fleet)
        )
    finally:
        fleet.stop()
    stamps.sort()
    log(f"verdicts: first {stamps[0] / 1000 - started:.1f} s after start, peak RSS {fleet.peak_kb / 1024:.0f} MB")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    log("comparing every verdict's features with the offline reference…")
    mismatches, examples, missing = compare(verdicts, offline_features(df, labels))
    cpu_s = fleet.cpu_ticks / CLOCK_TICKS
    return BacklogResult(
        transactions=len(records),
        labels=len(labels),
        days=days,
        partitions=partitions,
        workers=1,
        kills=fleet.kills,
        first_verdict_s=stamps[0] / 1000 - started,
        longest_gap_s=max(gaps, default=0) / 1000,
        first_to_last_tx_s=len(stamps) / max((stamps[-1] - stamps[0]) / 1000, 1e-3),
        peak_rss_mb=fleet.peak_kb / 1024,
        worker_cpu_s=cpu_s,
        cpu_ms_per_tx=1000 * cpu_s / max(len(records), 1),
        feature_mismatches=mismatches,
        mismatch_examples=examples,
        missing=missing,
    )


def produce_labels(bootstrap: str, topic: str, labels: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random"}
    )
    for label in labels:
        producer.produce(topic, key=label["transaction_id"], value=orjson.dumps(label))
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("labels not fully delivered")


def main() -> None:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--models", default="models")
    parser.add_argument("--kill-at", type=float, nargs="*", default=[], help="SIGKILL at these fractions done")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="riskstream-backlog-"))
    result = run_backlog(
        args.bootstrap,
        root,
        Path(args.models).resolve(),
        transactions=args.transactions,
        days=args.days,
        kill_at=args.kill_at,
    )
    print(json.dumps(result.as_dict(), indent=2))
    print("logs in", root)


if __name__ == "__main__":
    main()
