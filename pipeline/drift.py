"""Drift: how far live traffic has moved from what the model was trained on, as a population stability index.

Training stores a *reference* in the model's metadata: per feature and for the score, quantile bins of the
held-out rows (edges at their deciles, deduplicated, so a flag or a count has fewer bins) with the share of
rows in each, missing values (NaN) as a bin of their own, and the share of scores at or above the review
threshold (the flag rate). Workers count the same bins over sliding wall-clock windows (the last hour in
minute buckets, the last day in hour buckets: memory is fixed and a batch costs a few array operations
whatever its size), and `/metrics` exports the PSI of each window against the reference. `riskstream drift`
computes the same report from stored verdicts.

A value v falls in bin `#edges <= v` (edges ascending), NaN in the missing bin. PSI = sum over bins of
(q - p) * ln(q / p), observed share q against reference share p, each at least EPSILON so an empty bin
gives a large but finite term; PSI > 0.2 is the usual "shifted" mark. With fewer than `min_count`
transactions in a window the PSI is NaN: a handful of transactions would show noise as drift.

Pure: numpy only (no Kafka, no Prometheus).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.features import FEATURE_NAMES

log = logging.getLogger("riskstream.drift")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Quantile bins per column (fewer when quantiles coincide), plus the missing bin.
BINS = 10
#: The smallest share a bin counts with in the PSI (an empty bin would make it infinite).
EPSILON = 1e-4
#: The PSI above which a column has drifted (the alert's threshold too: deploy/drift-alerts.yml).
PSI_ALERT = 0.2
#: Fewer transactions than this in a window give no PSI (NaN): sampling noise alone is about bins / count.
MIN_COUNT = 500
#: Batches up to this many rows are binned with one broadcast comparison, larger ones column by column.
SMALL_BATCH = 16
#: The score's column name in reports.
SCORE = "score"
REFERENCE_VERSION = 1


@dataclass(frozen=True)
class SlidingWindow:
    """The last `seconds` of wall-clock time, counted in buckets of `bucket_seconds` (the newest partly)."""

    name: str
    seconds: int
    bucket_seconds: int

    @property
    def buckets(self) -> int:
        return self.seconds // self.bucket_seconds


WINDOWS = (SlidingWindow("1h", 3600, 60), SlidingWindow("1d", 86_400, 3600))


def psi(expected: FloatArray, observed: FloatArray) -> FloatArray:
    """Population stability index over the last axis: reference shares `expected`, observed shares `observed`."""
    p = np.maximum(expected, EPSILON)
    q = np.maximum(observed, EPSILON)
    result: FloatArray = np.sum((q - p) * np.log(q / p), axis=-1)
    return result


@dataclass(frozen=True)
class ColumnReference:
    #: Ascending bin edges; len(edges) + 1 value bins.
    edges: tuple[float, ...]
    #: Share of reference rows per value bin, then the missing share (len(edges) + 2 in all).
    proportions: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    """What training saw: per-column bins and shares, and the flag rate at the review threshold."""

    features: Mapping[str, ColumnReference]
    score: ColumnReference
    flag_rate: float
    review_threshold: float
    rows: int

    def columns(self) -> list[tuple[str, ColumnReference]]:
        return [*self.features.items(), (SCORE, self.score)]

    def to_dict(self) -> dict[str, Any]:
        def column(c: ColumnReference) -> dict[str, Any]:
            return {"edges": list(c.edges), "proportions": list(c.proportions)}

        return {
            "version": REFERENCE_VERSION,
            "bins": BINS,
            "rows": self.rows,
            "flag_rate": self.flag_rate,
            "review_threshold": self.review_threshold,
            "score": column(self.score),
            "features": {name: column(c) for name, c in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Raise ValueError (or KeyError, TypeError) on a malformed reference."""

        def column(d: Mapping[str, Any]) -> ColumnReference:
            edges = tuple(float(e) for e in d["edges"])
            proportions = tuple(float(p) for p in d["proportions"])
            if len(proportions) != len(edges) + 2 or any(b < a for a, b in itertools.pairwise(edges)):
                raise ValueError("a column needs ascending edges and len(edges) + 2 proportions")
            return ColumnReference(edges, proportions)

        return cls(
            features={str(name): column(c) for name, c in data["features"].items()},
            score=column(data["score"]),
            flag_rate=float(data["flag_rate"]),
            review_threshold=float(data["review_threshold"]),
            rows=int(data["rows"]),
        )


def quantile_edges(values: FloatArray, bins: int = BINS) -> tuple[float, ...]:
    """The inner deciles (for 10 bins) of the finite values, deduplicated; none for an all-missing column."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ()
    # Values seen, not interpolated: a flag's or a count's edges fall on its values.
    cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="lower")
    return tuple(float(e) for e in np.unique(cuts))


class Binner:
    """Counts rows into every column's bins at once: one comparison against a padded edge matrix."""

    def __init__(self, edges: Sequence[Sequence[float]]) -> None:
        self.columns = len(edges)
        self.widths = np.array([len(e) for e in edges], dtype=np.int64)
        most = int(self.widths.max()) if self.columns else 0
        #: Slots per column: value bins 0..most, then the missing bin last.
        self.slots = most + 2
        self.missing = self.slots - 1
        padded = np.full((self.columns, most), np.inf)
        for c, e in enumerate(edges):
            padded[c, : len(e)] = e
        self._edges = padded
        self._edge_lists = [np.asarray(e, dtype=np.float64) for e in edges]
        self._offsets = np.arange(self.columns, dtype=np.int64) * self.slots

    def count(self, matrix: FloatArray) -> IntArray:
        """Rows (n by columns, NaN = missing) -> counts per column and slot (columns by slots)."""
        if len(matrix) <= SMALL_BATCH:  # one broadcast comparison: fewest numpy calls
            index = np.sum(matrix[:, :, None] >= self._edges[None, :, :], axis=2)
            index = np.minimum(index, self.widths[None, :])  # +inf passes the padding: the top bin all the same
        else:  # a binary search per column: the broadcast's work grows with rows x columns x edges
            index = np.empty(matrix.shape, dtype=np.int64)
            for c, edges in enumerate(self._edge_lists):
                index[:, c] = np.searchsorted(edges, matrix[:, c], side="right")
        index[np.isnan(matrix)] = self.missing
        flat = np.bincount((index + self._offsets[None, :]).ravel(), minlength=self.columns * self.slots)
        counts: IntArray = flat.reshape(self.columns, self.slots).astype(np.int64)
        return counts

    def layout(self, proportions: Sequence[Sequence[float]]) -> FloatArray:
        """Reference shares (value bins then missing, per column) in the slot layout of `count`."""
        out = np.zeros((self.columns, self.slots))
        for c, p in enumerate(proportions):
            out[c, : len(p) - 1] = p[:-1]
            out[c, self.missing] = p[-1]
        return out


def build_reference(
    matrix: FloatArray,
    scores: FloatArray,
    review_threshold: float,
    names: Sequence[str] = FEATURE_NAMES,
    bins: int = BINS,
) -> Reference:
    """The reference of these rows (features in `names` order) and their calibrated scores."""
    if len(matrix) == 0:
        raise ValueError("no rows to build a drift reference from")
    full = np.column_stack([matrix, scores]).astype(np.float64)
    edges = [quantile_edges(full[:, c], bins) for c in range(full.shape[1])]
    binner = Binner(edges)
    shares = binner.count(full) / len(full)
    columns = [
        ColumnReference(e, (*(float(s) for s in shares[c, : len(e) + 1]), float(shares[c, binner.missing])))
        for c, e in enumerate(edges)
    ]
    return Reference(
        features=dict(zip(names, columns[:-1], strict=True)),
        score=columns[-1],
        flag_rate=float(np.mean(scores >= review_threshold)),
        review_threshold=float(review_threshold),
        rows=len(full),
    )


@dataclass(frozen=True)
class WindowReport:
    """One window's drift: PSI per feature and of the score (NaN below the minimum count), flag rate."""

    window: str
    count: int
    feature_psi: Mapping[str, float]
    score_psi: float
    flag_rate: float

    def worst_first(self) -> list[tuple[str, float]]:
        return sorted(self.feature_psi.items(), key=lambda kv: (-kv[1] if not math.isnan(kv[1]) else math.inf, kv[0]))


class Comparison:
    """A reference compiled for counting: the binner, and the reference shares in its layout."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.names = list(reference.features)
        columns = reference.columns()
        self.binner = Binner([c.edges for _, c in columns])
        self.expected = self.binner.layout([c.proportions for _, c in columns])

    def count(self, matrix: FloatArray, scores: FloatArray) -> tuple[IntArray, int]:
        """Bin counts of a batch, and how many of it are flagged (score at or above the review threshold)."""
        full = np.column_stack([matrix, scores]).astype(np.float64)
        return self.binner.count(full), int(np.count_nonzero(scores >= self.reference.review_threshold))

    def report(self, window: str, counts: IntArray, flagged: int, min_count: int = MIN_COUNT) -> WindowReport:
        total = int(counts[0].sum()) if len(counts) else 0
        enough = total >= max(min_count, 1)
        values = psi(self.expected, counts / total) if enough else np.full(len(counts), np.nan)
        return WindowReport(
            window=window,
            count=total,
            feature_psi={n: float(v) for n, v in zip(self.names, values[:-1], strict=True)},
            score_psi=float(values[-1]),
            flag_rate=flagged / total if total else math.nan,
        )


class SlidingCounts:
    """Bin counts of one sliding window: a ring of buckets, each reset when its time comes round again."""

    def __init__(self, window: SlidingWindow, shape: tuple[int, int]) -> None:
        self.window = window
        n = window.buckets
        self._counts = np.zeros((n, *shape), dtype=np.int64)
        self._flagged = np.zeros(n, dtype=np.int64)
        self._ids = np.full(n, -1, dtype=np.int64)

    def add(self, now_s: float, counts: IntArray, flagged: int) -> None:
        bucket = int(now_s // self.window.bucket_seconds)
        slot = bucket % len(self._ids)
        if self._ids[slot] != bucket:
            self._counts[slot] = 0
            self._flagged[slot] = 0
            self._ids[slot] = bucket
        self._counts[slot] += counts
        self._flagged[slot] += flagged

    def total(self, now_s: float) -> tuple[IntArray, int]:
        """Counts and flagged of the buckets within the window ending now."""
        newest = int(now_s // self.window.bucket_seconds)
        live = (self._ids > newest - len(self._ids)) & (self._ids <= newest)
        counts: IntArray = self._counts[live].sum(axis=0)
        return counts, int(self._flagged[live].sum())


class DriftMonitor:
    """A worker's drift counts against one model's reference, over the sliding windows."""

    def __init__(
        self, reference: Reference, windows: Sequence[SlidingWindow] = WINDOWS, min_count: int = MIN_COUNT
    ) -> None:
        self.comparison = Comparison(reference)
        shape = (self.comparison.binner.columns, self.comparison.binner.slots)
        self.windows = [SlidingCounts(w, shape) for w in windows]
        self.min_count = min_count

    def observe(self, matrix: FloatArray, scores: FloatArray, now_s: float) -> None:
        if len(scores) == 0:
            return
        counts, flagged = self.comparison.count(matrix, scores)
        for window in self.windows:
            window.add(now_s, counts, flagged)

    def report(self, now_s: float) -> list[WindowReport]:
        out = []
        for window in self.windows:
            counts, flagged = window.total(now_s)
            out.append(self.comparison.report(window.window.name, counts, flagged, self.min_count))
        return out


def reference_of(metadata: Any) -> Reference | None:
    """A model's drift reference (`ModelMetadata.drift_reference`), or None: older models have none, and a
    reference for other features than the model's is unusable."""
    data = getattr(metadata, "drift_reference", None)
    if not data:
        return None
    try:
        reference = Reference.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        log.error("model %s: malformed drift reference (%s); drift monitoring off", metadata.version, e)
        return None
    if list(reference.features) != list(metadata.feature_names):
        log.error("model %s: drift reference names other features than the model; drift monitoring off",
                  metadata.version)  # fmt: skip
        return None
    return reference


class DriftWatch:
    """The serving model's monitor, rebuilt when the model changes (its bins are the new model's)."""

    def __init__(self, windows: Sequence[SlidingWindow] = WINDOWS, min_count: int = MIN_COUNT) -> None:
        self.windows = windows
        self.min_count = min_count
        self.version: str | None = None
        self.monitor: DriftMonitor | None = None

    def follow(self, version: str, metadata: Any) -> None:
        if version == self.version:
            return
        self.version = version
        reference = reference_of(metadata)
        if reference is None:
            if not getattr(metadata, "drift_reference", None):
                log.info("model %s has no drift reference (trained before drift monitoring): drift off", version)
            self.monitor = None
        else:
            self.monitor = DriftMonitor(reference, self.windows, self.min_count)
            log.info("drift monitoring against model %s's reference (%d rows)", version, reference.rows)

    def observe(
        self, version: str, metadata: Any, vectors: Sequence[Sequence[float]], scores: Sequence[float], now_s: float
    ) -> None:
        """Count a scored batch (feature vectors and scores, in FEATURE_NAMES order) at wall-clock `now_s`."""
        self.follow(version, metadata)
        if self.monitor is not None and len(scores):
            self.monitor.observe(np.asarray(vectors, dtype=np.float64), np.asarray(scores, dtype=np.float64), now_s)

    def observer(self, version: str, metadata: Any) -> Callable[[FloatArray, FloatArray], None] | None:
        """What counts a batch scored by this model (feature matrix and scores) now; None with drift off."""
        self.follow(version, metadata)
        monitor = self.monitor
        if monitor is None:
            return None
        return lambda matrix, scores: monitor.observe(matrix, scores, time.time())

    def report(self, now_s: float) -> list[WindowReport]:
        return self.monitor.report(now_s) if self.monitor is not None else []

    @property
    def training_flag_rate(self) -> float | None:
        return self.monitor.comparison.reference.flag_rate if self.monitor is not None else None


def format_report(reports: Sequence[WindowReport], training_flag_rate: float, top: int | None = None) -> str:
    """The text report: per window, the score and flag rate, then the features worst first."""
    lines = []
    for r in reports:
        mark = " (too few for a PSI)" if math.isnan(r.score_psi) else ""
        lines.append(f"window {r.window}: {r.count} transactions{mark}")
        lines.append(f"  flag rate {r.flag_rate:.4f} (training {training_flag_rate:.4f})")
        lines.append(f"  {SCORE:<36} PSI {r.score_psi:8.4f}{'  DRIFT' if r.score_psi > PSI_ALERT else ''}")
        ranked = r.worst_first()
        for name, value in ranked[:top] if top else ranked:
            lines.append(f"  {name:<36} PSI {value:8.4f}{'  DRIFT' if value > PSI_ALERT else ''}")
    return "\n".join(lines)
