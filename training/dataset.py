"""Training data: load or generate transactions, then replay them through the stream's own feature code.

`build_dataset` gives exactly what `pipeline.features.compute_features` gives (a test proves it), only
faster: card state is independent per card and device/IP/merchant state per entity, so the replay is
sharded by key hash over worker processes (one per core), in two phases — cards first (which also finds
repeated transaction ids), then entities over the surviving transactions.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features import FEATURE_NAMES, rows_from_frame
from pipeline.features.definitions import (
    CARD_FEATURES,
    ENTITY_GROUPS,
    GROUP_SIZES,
    TX_FEATURES,
    apply_label,
    card_step,
    entity_keys,
    entity_step,
    label_entities,
    transaction_features,
)
from pipeline.features.keystate import CardState, EntityKind, EntityState
from pipeline.features.offline import LABEL_SORT, LabelEvent, TxRow
from pipeline.io import REQUIRED_FIELDS, read_transactions_file

DAY_MS = 86_400_000


class DatasetError(ValueError):
    """The training data cannot be used; the message says which column or value is wrong."""


@dataclass
class Dataset:
    matrix: npt.NDArray[np.float64]
    labels: npt.NDArray[np.bool_]
    event_ms: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.float64]
    card_ids: npt.NDArray[Any]
    transaction_ids: list[str]
    scenarios: npt.NDArray[Any] | None


def read_history(settings: Any) -> pd.DataFrame:
    """The labelled history the sink stored (`train --from-db`): transactions with their latest label."""
    from pipeline.db.engine import DatabaseError, create_engine_from_settings, session_factory
    from pipeline.db.repository import labelled_history
    from pipeline.records import PROBE_CARD_ID

    engine = create_engine_from_settings(settings)
    try:
        with session_factory(engine)() as session:
            history = labelled_history(session=session)
    except DatabaseError as e:
        raise DatasetError(f"cannot read the stored history: {e}") from e
    finally:
        engine.dispose()
    # The gateway's readiness probes are scored and stored like any transaction; they are not history.
    history = history[history["card_id"] != PROBE_CARD_ID]
    if history.empty:
        raise DatasetError("the database holds no transactions yet (is the sink running?)")
    if not history["is_fraud"].any():
        raise DatasetError("the stored history has no fraud label yet: post labels (POST /v1/labels) first")
    return history


def load_or_generate(config: Any) -> pd.DataFrame:
    """`config.history` (a frame already read) or `config.data` if given (with an `is_fraud` column), else a
    generated set per the config."""
    if getattr(config, "history", None) is not None:
        history: pd.DataFrame = config.history
        return history
    if config.data is None:
        from training.generate import GeneratorConfig, generate

        return generate(GeneratorConfig(transactions=config.transactions, days=config.days, seed=config.seed))
    df = read_transactions_file(config.data)
    missing = [c for c in (*REQUIRED_FIELDS, "is_fraud") if c not in df.columns]
    if missing:
        raise DatasetError(f"{config.data}: missing column(s) {', '.join(missing)} (needed to train)")
    if df["is_fraud"].isna().any():
        raise DatasetError(f"{config.data}: is_fraud has empty values; use true/false or 1/0")
    return df


def label_events(df: pd.DataFrame, label_delay_days: float) -> list[LabelEvent]:
    """Fraud labels as the workers would have seen them: reported at the label's own `label_time` when the
    data has one (a real report time), else `label_delay_days` after the transaction."""
    fraud = df[df["is_fraud"].astype(bool)]
    if fraud.empty:
        return []
    reported = _epoch_ms(fraud["timestamp"]) + int(label_delay_days * DAY_MS)
    if "label_time" in fraud.columns:
        known = fraud["label_time"].notna().to_numpy()
        if known.any():
            reported[known] = _epoch_ms(fraud["label_time"][known])
    return [
        LabelEvent(transaction_id=str(t), merchant_id=str(m), reported_at_ms=int(r), is_fraud=True, card_id=str(c))
        for t, m, c, r in zip(fraud["transaction_id"], fraud["merchant_id"], fraud["card_id"], reported, strict=True)
    ]


def label_records(df: pd.DataFrame, *, source: str = "generator") -> list[dict[str, Any]]:
    """A chargeback (schemas/label.v1.json) per fraud row with a `label_time`, reported then, in report
    order: what a replay produces to the `labels` topic beside the transactions."""
    fraud = df[df["is_fraud"].astype(bool) & df["label_time"].notna()].sort_values("label_time", kind="stable")
    reported = fraud["label_time"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return [
        {"transaction_id": str(t), "label": "chargeback", "reported_at": str(r), "card_id": str(c),
         "merchant_id": str(m), "source": source}
        for t, r, c, m in zip(fraud["transaction_id"], reported, fraud["card_id"], fraud["merchant_id"], strict=True)
    ]  # fmt: skip


def _epoch_ms(series: pd.Series) -> npt.NDArray[np.int64]:
    ts = pd.to_datetime(series, utc=True)
    return np.asarray(ts.astype("datetime64[ms, UTC]").astype("int64"), dtype=np.int64)


# --- sharded replay -------------------------------------------------------------------------------------
# Worker processes are forked and read these module globals (copy-on-write), so rows are not pickled.
_ROWS: list[TxRow] = []
_KEEP: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
_LABELS: list[LabelEvent] = []


def _shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode()) % shards


def _card_shard(
    args: tuple[int, int],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    shard, shards = args
    states: dict[str, CardState] = {}
    index, values, dup = [], [], []
    width = len(TX_FEATURES) + len(CARD_FEATURES)
    for i, tx in enumerate(_ROWS):
        if _shard_of(tx.card_id, shards) != shard:
            continue
        state = states.get(tx.card_id)
        if state is None:
            state = states[tx.card_id] = CardState()
        part = card_step(state, tx)
        index.append(i)
        if part is None:
            dup.append(True)
            values.append((np.nan,) * width)
        else:
            dup.append(False)
            values.append((*transaction_features(tx), *part))
    return (
        np.asarray(index, dtype=np.int64),
        np.asarray(values, dtype=np.float64).reshape(-1, width),
        np.asarray(dup),
    )


_GROUP_WIDTH: dict[str, int] = {kind: GROUP_SIZES[kind] for kind in ENTITY_GROUPS}
_GROUP_OFFSET: dict[str, int] = {
    kind: len(TX_FEATURES) + len(CARD_FEATURES) + sum(GROUP_SIZES[k] for k in ENTITY_GROUPS[:i])
    for i, kind in enumerate(ENTITY_GROUPS)
}


def _entity_shard(args: tuple[int, int]) -> list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    shard, shards = args
    events: dict[tuple[EntityKind, str], list[tuple[int, str, int]]] = {}
    for i, tx in enumerate(_ROWS):
        if not _KEEP[i]:
            continue
        for kind, key in entity_keys(tx):
            if _shard_of(f"{kind}:{key}", shards) == shard:
                events.setdefault((kind, key), []).append((tx.event_time_ms, tx.transaction_id, i))
    for j, label in enumerate(_LABELS):
        for target in label_entities(label.merchant_id, label.card_id):
            if target in events or _shard_of(f"{target[0]}:{target[1]}", shards) == shard:
                events.setdefault(target, []).append((label.reported_at_ms, LABEL_SORT + label.transaction_id, -1 - j))
    out: dict[str, tuple[list[int], list[tuple[float, ...]]]] = {k: ([], []) for k in _GROUP_WIDTH}
    for (kind, _entity), items in events.items():
        if all(i < 0 for _, _, i in items):
            continue
        items.sort(key=lambda e: (e[0], e[1]))
        state = EntityState(kind)
        rows, vals = out[kind]
        for _, _, i in items:
            if i < 0:
                label = _LABELS[-1 - i]
                apply_label(
                    state,
                    transaction_id=label.transaction_id,
                    reported_at_ms=label.reported_at_ms,
                    is_fraud=label.is_fraud,
                )
            else:
                rows.append(i)
                vals.append(entity_step(kind, state, _ROWS[i]))
    return [
        (
            kind,
            np.asarray(rows, dtype=np.int64),
            np.asarray(vals, dtype=np.float64).reshape(-1, _GROUP_WIDTH[kind]),
        )
        for kind, (rows, vals) in out.items()
    ]


def _run(fn: Any, shards: int) -> list[Any]:
    jobs = [(s, shards) for s in range(shards)]
    if shards == 1:
        return [fn(jobs[0])]
    with multiprocessing.get_context("fork").Pool(shards) as pool:
        return pool.map(fn, jobs)


def compute_matrix(
    rows: Sequence[TxRow], labels: Sequence[LabelEvent] = (), processes: int | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Feature matrix (one row per input row, NaN for duplicates) and the mask of rows kept (not repeats)."""
    global _ROWS, _KEEP, _LABELS
    shards = max(1, processes or min(os.cpu_count() or 1, 4))
    n = len(rows)
    matrix = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float64)
    keep = np.zeros(n, dtype=bool)
    _ROWS, _LABELS = list(rows), list(labels)
    try:
        card_width = len(TX_FEATURES) + len(CARD_FEATURES)
        for index, values, dup in _run(_card_shard, shards):
            matrix[index, :card_width] = values
            keep[index] = ~dup
        _KEEP = keep
        for parts in _run(_entity_shard, shards):
            for kind, index, values in parts:
                offset = _GROUP_OFFSET[kind]
                matrix[index, offset : offset + _GROUP_WIDTH[kind]] = values
    finally:
        _ROWS, _KEEP, _LABELS = [], np.zeros(0, dtype=bool), []
    return matrix, keep


def build_dataset(
    df: pd.DataFrame, *, label_delay_days: float, label_features: bool = True, processes: int | None = None
) -> Dataset:
    """Features of every transaction (repeats dropped), labels, and the columns evaluation needs."""
    rows = list(rows_from_frame(df))
    labels = label_events(df, label_delay_days) if label_features else []
    matrix, keep = compute_matrix(rows, labels, processes)
    kept = df[keep]
    return Dataset(
        matrix=matrix[keep],
        labels=kept["is_fraud"].astype(bool).to_numpy(),
        event_ms=np.asarray([r.event_time_ms for r, k in zip(rows, keep, strict=True) if k], dtype=np.int64),
        amounts=kept["amount"].astype(float).to_numpy(),
        card_ids=kept["card_id"].astype(str).to_numpy(),
        transaction_ids=kept["transaction_id"].astype(str).tolist(),
        scenarios=kept["scenario"].astype(str).to_numpy() if "scenario" in kept.columns else None,
    )
