"""Synthetic card transactions with labelled fraud scenarios, for training, tests and load.

Deterministic: the same config (seed included) gives the same frame, and the default period ends at a
fixed date, so the data neither drifts with the clock nor lands in the future, where the wire contract
would refuse it. Rows are in arrival order: sorted by event time except a small fraction of events that
arrive late, which is what producers really send and what the stream's lateness handling must absorb.

The world and its habits are in `training.populations`; everyday traffic, look-alikes and fraud in
`training.scenarios`. This module sizes the scenarios, assembles them and names the columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from pipeline.io import LABEL_COLUMNS, TRANSACTION_FIELDS, write_transactions
from training.populations import CATEGORIES, BoolArray, IntArray, ObjectArray, Population, build_population
from training.scenarios import (
    ACCOUNT_TAKEOVER,
    CARD_TESTING,
    CHANNELS,
    COMPROMISED_MERCHANT,
    FIRST_FRAUD,
    FRAUD_SCENARIOS,
    SCENARIOS,
    SPREE,
    Period,
    Rows,
    account_takeover_rows,
    apply_big_purchases,
    apply_travel,
    card_testing_rows,
    compromised_merchant_rows,
    label_delays_ms,
    legit_rows,
    stolen_card_spree_rows,
)

__all__ = [
    "DEFAULT_END",
    "FRAUD_SCENARIOS",
    "SCENARIOS",
    "GeneratorConfig",
    "ProgressCallback",
    "generate",
    "write_transactions",
]

#: A fixed end of the generated period (not "now"): reproducible, and never in the future.
DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)

#: Called with a stage description and the fraction of the work done (0..1).
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Scenario rates are fractions of all transactions (fraud ones are injected rows;
    the look-alikes relabel that many everyday rows). A compromised merchant's genuine customers in its
    window add a little fraud on top of the rates."""

    transactions: int = 1_000_000
    days: int = 30
    seed: int = 42
    end: datetime = DEFAULT_END
    card_testing_rate: float = 0.004
    account_takeover_rate: float = 0.002
    compromised_merchant_rate: float = 0.002
    stolen_card_spree_rate: float = 0.003
    legit_travel_rate: float = 0.01
    legit_big_purchase_rate: float = 0.002
    out_of_order_fraction: float = 0.002
    max_lateness_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.transactions < 1:
            raise ValueError(f"transactions must be at least 1, got {self.transactions}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if self.end.tzinfo is None:
            raise ValueError("end must carry a UTC offset")
        rates = {
            "card_testing_rate": self.card_testing_rate,
            "account_takeover_rate": self.account_takeover_rate,
            "compromised_merchant_rate": self.compromised_merchant_rate,
            "stolen_card_spree_rate": self.stolen_card_spree_rate,
            "legit_travel_rate": self.legit_travel_rate,
            "legit_big_purchase_rate": self.legit_big_purchase_rate,
            "out_of_order_fraction": self.out_of_order_fraction,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 0.5:
                raise ValueError(f"{name} must be between 0 and 0.5, got {rate}")
        if self.fraud_rate_injected > 0.5:
            raise ValueError(f"the fraud rates add up to {self.fraud_rate_injected:.2f}; keep them under 0.5")
        if self.max_lateness_seconds < 0:
            raise ValueError(f"max_lateness_seconds must not be negative, got {self.max_lateness_seconds}")

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def fraud_rate_injected(self) -> float:
        return (
            self.card_testing_rate + self.account_takeover_rate + self.compromised_merchant_rate
            + self.stolen_card_spree_rate
        )  # fmt: skip


def generate(config: GeneratorConfig, progress: ProgressCallback | None = None) -> pd.DataFrame:
    """The transactions of `config`: every Transaction field (missing optional values as None/NaN) plus
    `is_fraud`, `scenario` and `label_time` (when the label becomes known; NaT for legitimate rows)."""
    report: ProgressCallback = progress or (lambda stage, done: None)
    n = config.transactions
    end_ms = _epoch_ms(config.end)
    period = Period(start_ms=end_ms - config.days * 86_400_000, end_ms=end_ms)
    # one independent stream per stage: changing one scenario leaves the others' draws as they were
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(10)]

    report("building the population", 0.0)
    pop = build_population(streams[0], transactions=n)
    targets = {
        CARD_TESTING: round(n * config.card_testing_rate),
        ACCOUNT_TAKEOVER: round(n * config.account_takeover_rate),
        COMPROMISED_MERCHANT: round(n * config.compromised_merchant_rate),
        SPREE: round(n * config.stolen_card_spree_rate),
    }
    report("everyday transactions", 0.1)
    rows = legit_rows(streams[1], pop, n - sum(targets.values()), period)
    report("travellers and big purchases", 0.45)
    apply_travel(streams[2], pop, rows, round(n * config.legit_travel_rate), period)
    apply_big_purchases(streams[3], pop, rows, round(n * config.legit_big_purchase_rate))
    report("fraud scenarios", 0.55)
    compromised, windows = compromised_merchant_rows(streams[6], pop, targets[COMPROMISED_MERCHANT], period)
    rows = Rows.concat([
        rows,
        card_testing_rows(streams[4], pop, targets[CARD_TESTING], period),
        account_takeover_rows(streams[5], pop, targets[ACCOUNT_TAKEOVER], period),
        compromised,
        stolen_card_spree_rows(streams[7], pop, targets[SPREE], period),
    ])  # fmt: skip
    # the compromised terminal's genuine customers in its window were skimmed: their rows are fraud too
    hit = windows.contains(rows.merchant, rows.timestamp_ms, len(pop.merchant_ids)) & (rows.scenario < FIRST_FRAUD)
    rows.scenario[hit] = COMPROMISED_MERCHANT

    report("ordering and labelling", 0.7)
    rows = rows.take(np.argsort(rows.timestamp_ms, kind="stable"))
    rows = rows.take(_arrival_order(streams[8], rows.timestamp_ms, config))
    is_fraud = rows.scenario >= FIRST_FRAUD
    label_ms = np.where(is_fraud, rows.timestamp_ms + label_delays_ms(streams[9], rows.scenario), 0)
    report("building the table", 0.8)
    frame = _frame(pop, rows, _transaction_ids(config, len(rows)), is_fraud, label_ms)
    report("done", 1.0)
    return frame


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _arrival_order(rng: np.random.Generator, timestamp_ms: IntArray, config: GeneratorConfig) -> IntArray:
    """A late event arrives after its event time by at most the configured lateness (mostly much less),
    so no row's timestamp is more than that lateness earlier than any row before it."""
    n = len(timestamp_ms)
    max_ms = int(config.max_lateness_seconds * 1000)
    if max_ms <= 0 or config.out_of_order_fraction <= 0:
        return np.arange(n, dtype=np.int64)
    late = rng.random(n) < config.out_of_order_fraction
    delay = np.clip(rng.exponential(max_ms / 4, n), 1, max_ms).astype(np.int64)
    arrival = timestamp_ms + np.where(late, delay, 0)
    return np.argsort(arrival, kind="stable").astype(np.int64)


def _transaction_ids(config: GeneratorConfig, n: int) -> ObjectArray:
    """`t<config hash>-<arrival index>`: readable, unique, and different for differently generated sets,
    so two files replayed into one topic do not deduplicate each other's transactions."""
    digest = hashlib.blake2b(repr(sorted(asdict(config).items())).encode(), digest_size=3).hexdigest()
    width = max(9, len(str(n)))
    return np.array([f"t{digest}-{i:0{width}d}" for i in range(n)], dtype=object)


def _lookup(table: ObjectArray, index: IntArray) -> ObjectArray:
    """table[index] with -1 giving None."""
    return np.append(table, np.array([None], dtype=object))[index]


def _utc(epoch_ms: IntArray, missing: BoolArray | None = None) -> pd.Series:
    values = epoch_ms.astype("datetime64[ms]")
    if missing is not None:
        values[missing] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def _frame(pop: Population, rows: Rows, ids: ObjectArray, is_fraud: BoolArray, label_ms: IntArray) -> pd.DataFrame:
    card, merchant = rows.card, rows.merchant
    text = {
        "transaction_id": ids,
        "currency": np.array(pop.currencies, dtype=object)[pop.merchant_currency(merchant)],
        "card_id": pop.card_ids[card],
        "merchant_id": pop.merchant_ids[merchant],
        "card_bin": pop.bins[pop.card_bin[card]],
        "customer_id": _lookup(pop.customer_ids, pop.card_customer[card]),
        "device_id": _lookup(pop.device_ids, rows.device),
        "ip": _lookup(pop.ips, rows.ip),
        "merchant_category": np.array([c.name for c in CATEGORIES], dtype=object)[pop.merchant_category[merchant]],
        "channel": np.array(CHANNELS, dtype=object)[rows.channel],
        "country": np.array(pop.countries, dtype=object)[pop.merchant_country[merchant]],
        "card_country": np.array(pop.countries, dtype=object)[pop.card_country(card)],
        "scenario": np.array(SCENARIOS, dtype=object)[rows.scenario],
    }
    columns: dict[str, object] = {name: pd.Series(values, dtype="str") for name, values in text.items()}
    columns.update(
        timestamp=_utc(rows.timestamp_ms),
        amount=pd.Series(rows.amount, dtype=np.float64),
        lat=pd.Series(rows.lat, dtype=np.float64),
        lon=pd.Series(rows.lon, dtype=np.float64),
        is_fraud=pd.Series(is_fraud, dtype=bool),
        label_time=_utc(label_ms, missing=~is_fraud),
    )
    order = [*TRANSACTION_FIELDS, *LABEL_COLUMNS]
    return pd.DataFrame({name: columns[name] for name in order})
