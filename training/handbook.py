"""The transaction simulator of the Fraud Detection Handbook, chapter 3, written here from its description.

*Reproducible Machine Learning for Credit Card Fraud Detection - Practical handbook* (Le Borgne, Siblini,
Lebichot, Bontempi), "Transaction data simulator". A public benchmark nobody here designed, so a model's
figures on it mean something our own generator's cannot. The steps, as the handbook describes them:

1. customers at (x, y) uniform on a 100 x 100 grid, mean amount U(5, 100), amount std = mean / 2, mean
   transactions per day U(0, 4);
2. terminals at (x, y) uniform on the same grid;
3. each customer uses the terminals strictly within `radius` (5) of home;
4. every day, a Poisson(mean) number of transactions per customer: time of day normal around noon
   (43,200 s, std 20,000 s, truncated to whole seconds; a draw outside ]0, 86,400[ is dropped), amount
   normal(mean, std) with a negative draw replaced by U(0, 2 x mean), rounded to cents, terminal uniform
   among the available ones (a customer without any makes no transaction);
5. fraud, in this order, a later scenario relabelling an earlier one's rows: (1) every amount above 220;
   (2) each day d but the last, 2 random terminals compromised for days [d, d + 28): all their
   transactions; (3) each day d but the last, 3 random customers compromised for days [d, d + 14): a
   random third (rounded down) of their transactions have their amount multiplied by 5.

Ours is vectorised numpy with one seeded generator, so it gives the handbook's distributions, not its
exact rows (the handbook reseeds per customer and per day). Mapped to our transaction schema: customer ->
`card_id` (`card-<n>`) and `customer_id` (`cust-<n>`), terminal -> `merchant_id` (`term-<n>`), times UTC
from 2018-04-01. What the handbook's transaction table does not have is left out (None): BIN, device, IP,
category, channel, countries and location (the grid positions stay in the profiles, as in the handbook).
Fixed: `currency` EUR (the handbook's amounts have no currency). Changed: an amount that rounds to 0.00
(a few in a million) becomes 0.01, since our contract wants amounts above zero. Fraud rows carry
`label_time` = event time + `label_delay_days`: when the chargeback is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.io import LABEL_COLUMNS, TRANSACTION_FIELDS

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ProgressCallback = Callable[[str, float], None]

HANDBOOK_START = datetime(2018, 4, 1, tzinfo=UTC)
DAY_SECONDS = 86_400
DAY_MS = DAY_SECONDS * 1000

#: Scenario codes; the handbook's TX_FRAUD_SCENARIO numbers them the same way.
LEGIT, HIGH_AMOUNT, COMPROMISED_TERMINAL, COMPROMISED_CUSTOMER = range(4)
SCENARIOS: tuple[str, ...] = ("legit", "hb_high_amount", "hb_compromised_terminal", "hb_compromised_customer")
FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[1:]
#: Smallest amount our contract accepts (it refuses 0).
MIN_AMOUNT = 0.01
#: Wire fields the handbook's transactions do not have: always missing.
_LEFT_OUT = ("card_bin", "device_id", "ip", "merchant_category", "channel", "country", "card_country")


@dataclass(frozen=True)
class HandbookConfig:
    """The handbook's defaults: 5,000 customers, 10,000 terminals, 183 days from 2018-04-01, radius 5."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    start: datetime = HANDBOOK_START
    radius: float = 5.0
    seed: int = 42
    #: Days from a fraud to its reported label (`label_time`).
    label_delay_days: float = 7.0
    high_amount: float = 220.0
    terminals_compromised_per_day: int = 2
    terminal_compromised_days: int = 28
    customers_compromised_per_day: int = 3
    customer_compromised_days: int = 14
    customer_fraud_share: float = 1 / 3
    customer_fraud_amount_factor: float = 5.0

    def __post_init__(self) -> None:
        for name in ("customers", "terminals", "days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.terminals_compromised_per_day > self.terminals:
            raise ValueError("more terminals compromised per day than there are terminals")
        if self.customers_compromised_per_day > self.customers:
            raise ValueError("more customers compromised per day than there are customers")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must not be negative, got {self.label_delay_days}")
        if self.start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")


@dataclass(frozen=True)
class Profiles:
    """Customer and terminal tables; customer c may use terminals `available[indptr[c]:indptr[c + 1]]`."""

    customer_xy: FloatArray
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_tx_per_day: FloatArray
    terminal_xy: FloatArray
    indptr: IntArray
    available: IntArray

    def terminal_counts(self) -> IntArray:
        return np.diff(self.indptr)


@dataclass
class Transactions:
    """The simulated transactions in event-time order (the handbook's TRANSACTION_ID is the row index)."""

    day: IntArray
    second: IntArray
    customer: IntArray
    terminal: IntArray
    amount: FloatArray
    scenario: IntArray

    def take(self, index: IntArray) -> Transactions:
        return Transactions(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @property
    def is_fraud(self) -> BoolArray:
        return np.asarray(self.scenario != LEGIT, dtype=bool)


def customer_profiles(rng: np.random.Generator, customers: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Home (x, y), mean amount and mean transactions per day of each customer (std amount is mean / 2)."""
    xy = rng.uniform(0, 100, size=(customers, 2))
    mean_amount = rng.uniform(5, 100, size=customers)
    mean_tx_per_day = rng.uniform(0, 4, size=customers)
    return xy, mean_amount, mean_tx_per_day


def terminals_within_radius(
    customer_xy: FloatArray, terminal_xy: FloatArray, radius: float
) -> tuple[IntArray, IntArray]:
    """Each customer's terminals at a distance strictly below `radius`, as CSR (indptr, terminal indices in
    ascending order). Chunked so the distance matrix stays a few tens of MB whatever the sizes."""
    chunk = max(1, 4_000_000 // max(len(terminal_xy), 1))
    parts: list[IntArray] = []
    counts = np.zeros(len(customer_xy), dtype=np.int64)
    r2 = radius * radius
    for lo in range(0, len(customer_xy), chunk):
        block = customer_xy[lo : lo + chunk]
        dx = block[:, 0:1] - terminal_xy[None, :, 0]
        dy = block[:, 1:2] - terminal_xy[None, :, 1]
        d2 = dx * dx
        d2 += dy * dy
        rows, cols = np.nonzero(d2 < r2)
        counts[lo : lo + len(block)] = np.bincount(rows, minlength=len(block))
        parts.append(cols.astype(np.int64))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


def build_profiles(rng: np.random.Generator, config: HandbookConfig) -> Profiles:
    xy, mean_amount, mean_tx = customer_profiles(rng, config.customers)
    terminal_xy = rng.uniform(0, 100, size=(config.terminals, 2))
    indptr, available = terminals_within_radius(xy, terminal_xy, config.radius)
    return Profiles(xy, mean_amount, mean_amount / 2, mean_tx, terminal_xy, indptr, available)


def daily_transactions(rng: np.random.Generator, profiles: Profiles, days: int) -> Transactions:
    """Step 4 for every customer and day at once, then sorted by event time (stable: ties keep customer order)."""
    customers = len(profiles.mean_amount)
    per_day = rng.poisson(np.repeat(profiles.mean_tx_per_day[:, None], days, axis=1))  # (customers, days)
    customer = np.repeat(np.arange(customers, dtype=np.int64), per_day.sum(axis=1))
    day = np.repeat(np.tile(np.arange(days, dtype=np.int64), customers), per_day.ravel())
    n = len(customer)
    # int() truncates towards zero, as the handbook's int(np.random.normal(...)) does
    second = np.trunc(rng.normal(DAY_SECONDS / 2, 20_000, size=n)).astype(np.int64)
    mean, std = profiles.mean_amount[customer], profiles.std_amount[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)
    counts = profiles.terminal_counts()[customer]
    pick = np.floor(rng.random(n) * np.maximum(counts, 1)).astype(np.int64)
    terminal = profiles.available[np.minimum(profiles.indptr[customer] + pick, max(len(profiles.available) - 1, 0))]
    keep = (second > 0) & (second < DAY_SECONDS) & (counts > 0)
    tx = Transactions(
        day=day[keep], second=second[keep], customer=customer[keep], terminal=terminal[keep],
        amount=amount[keep], scenario=np.zeros(int(keep.sum()), dtype=np.int64),
    )  # fmt: skip
    return tx.take(np.argsort(tx.day * DAY_SECONDS + tx.second, kind="stable"))


def add_frauds(rng: np.random.Generator, tx: Transactions, config: HandbookConfig, terminals: int) -> None:
    """Step 5, in place: label the three scenarios in the handbook's order (and scale scenario 3's amounts)."""
    tx.scenario[tx.amount > config.high_amount] = HIGH_AMOUNT
    if len(tx.day) == 0:
        return
    last_day = int(tx.day.max())  # the handbook draws for range(TX_TIME_DAYS.max()): every day but the last
    days = last_day + 1
    compromised = np.zeros((terminals, days), dtype=bool)
    for d in range(last_day):
        chosen = rng.choice(terminals, size=config.terminals_compromised_per_day, replace=False)
        compromised[chosen, d : d + config.terminal_compromised_days] = True
    tx.scenario[compromised[tx.terminal, tx.day]] = COMPROMISED_TERMINAL

    customers = config.customers
    by_customer = np.argsort(tx.customer, kind="stable")  # each customer's rows, in event-time order
    bounds = np.searchsorted(tx.customer[by_customer], np.arange(customers + 1))
    for d in range(last_day):
        chosen = rng.choice(customers, size=config.customers_compromised_per_day, replace=False)
        windows = []
        for c in chosen:
            rows = by_customer[bounds[c] : bounds[c + 1]]
            lo, hi = np.searchsorted(tx.day[rows], [d, d + config.customer_compromised_days])
            windows.append(rows[lo:hi])
        window = np.concatenate(windows)
        k = int(len(window) * config.customer_fraud_share)
        if k:
            hit = rng.choice(window, size=k, replace=False)
            tx.amount[hit] = np.round(tx.amount[hit] * config.customer_fraud_amount_factor, 2)
            tx.scenario[hit] = COMPROMISED_CUSTOMER


def simulate(config: HandbookConfig, progress: ProgressCallback | None = None) -> tuple[Profiles, Transactions]:
    """Profiles and labelled transactions, in event-time order. Same config (seed included), same result."""
    report: ProgressCallback = progress or (lambda stage, done: None)
    profiles_rng, tx_rng, fraud_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3))
    report("customer and terminal profiles", 0.0)
    profiles = build_profiles(profiles_rng, config)
    report("daily transactions", 0.15)
    tx = daily_transactions(tx_rng, profiles, config.days)
    report("fraud scenarios", 0.55)
    add_frauds(fraud_rng, tx, config, config.terminals)
    tx.amount = np.maximum(tx.amount, MIN_AMOUNT)
    return profiles, tx


def generate_handbook(config: HandbookConfig, progress: ProgressCallback | None = None) -> pd.DataFrame:
    """The simulated transactions as our transaction table: every wire field (missing ones None), then
    `is_fraud`, `scenario` and `label_time` (NaT for legitimate rows), like `training.generate.generate`."""
    report: ProgressCallback = progress or (lambda stage, done: None)
    _, tx = simulate(config, report)
    report("building the table", 0.7)
    n = len(tx.day)
    start_ms = int(config.start.timestamp() * 1000)
    event_ms = start_ms + tx.day * DAY_MS + tx.second * 1000
    is_fraud = tx.is_fraud
    label_ms = event_ms + round(config.label_delay_days * DAY_MS)
    columns: dict[str, Any] = {
        "transaction_id": _transaction_ids(config, n),
        "currency": _strings(["EUR"], np.zeros(n, dtype=np.int64)),
        "card_id": _strings([f"card-{c}" for c in range(config.customers)], tx.customer),
        "merchant_id": _strings([f"term-{t}" for t in range(config.terminals)], tx.terminal),
        "customer_id": _strings([f"cust-{c}" for c in range(config.customers)], tx.customer),
        "scenario": _strings(SCENARIOS, tx.scenario),
        **{name: pd.Series(pa.nulls(n, pa.string()).to_pandas()) for name in _LEFT_OUT},
    }
    columns.update(
        timestamp=_utc(event_ms),
        amount=pd.Series(tx.amount, dtype=np.float64),
        lat=pd.Series(np.full(n, np.nan), dtype=np.float64),
        lon=pd.Series(np.full(n, np.nan), dtype=np.float64),
        is_fraud=pd.Series(is_fraud, dtype=bool),
        label_time=_utc(label_ms, missing=~is_fraud),
    )
    report("done", 1.0)
    return pd.DataFrame({name: columns[name] for name in (*TRANSACTION_FIELDS, *LABEL_COLUMNS)})


def _transaction_ids(config: HandbookConfig, n: int) -> pd.Series:
    """`hb<config hash>-<event-time index>`: two differently simulated sets never share an id."""
    digest = hashlib.blake2b(repr(sorted(asdict(config).items())).encode(), digest_size=3).hexdigest()
    width = max(7, len(str(n)))
    index = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width, "0")
    return pd.Series(pc.binary_join_element_wise(f"hb{digest}-", index, "").to_pandas())


def _strings(table: Sequence[str], index: IntArray) -> pd.Series:
    """`table[index]` as a string column, gathered in Arrow (seconds faster than a million Python strs)."""
    return pd.Series(pa.array(list(table), pa.string()).take(pa.array(index)).to_pandas())


def _utc(epoch_ms: IntArray, missing: BoolArray | None = None) -> pd.Series:
    values = epoch_ms.astype("datetime64[ms]")
    if missing is not None:
        values[missing] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")
