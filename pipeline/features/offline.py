"""The offline reference: features of a whole file of transactions, with the stream's own step functions.

Order, as in the stream: each card's transactions in the order given (arrival order, which Kafka keeps
per key); each device's, IP's, merchant's and card's label history (`card_label`) transactions and label
events in event-time order, key `(event_time_ms, transaction_id)`, which the stream's event-time merge
reproduces; a label takes its place in its merchant's and its card's order at the time it was reported
(after transactions of the same millisecond). A repeated
transaction_id on a card is a duplicate: no second row, no second count. The same transaction_id on another
card (a conflicting duplicate, which the stream's join dead-letters) counts in that card's and its entities'
state, as in the stream, but has no row; an entity counts a (time, transaction_id) once, as the entity
stage does. The parity tests compare the stream against this; training builds its matrix with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.features.definitions import (
    FEATURE_NAMES,
    TxLike,
    apply_label,
    assemble_vector,
    card_step,
    entity_keys,
    entity_step,
    label_entities,
    transaction_features,
)
from pipeline.features.keystate import CardState, EntityKind, EntityState

#: Label events sort after transactions at the same millisecond (a prefix of their merge id).
LABEL_SORT = "\U0010ffff"
NO_TIME = -(2**62)


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A label as the workers see it: reported for a transaction of a merchant and a card at
    `reported_at_ms`, and counting for both from `label_visible_at_ms(reported_at_ms)`."""

    transaction_id: str
    merchant_id: str | None
    reported_at_ms: int
    is_fraud: bool
    card_id: str | None = None


class TxRow:
    """A transaction read from a table (training), with the attributes the step functions use."""

    __slots__ = (
        "amount",
        "card_bin",
        "card_country",
        "card_id",
        "channel",
        "country",
        "device_id",
        "event_time_ms",
        "ip",
        "lat",
        "lon",
        "merchant_category",
        "merchant_id",
        "transaction_id",
    )

    amount: float
    card_bin: str | None
    card_country: str | None
    card_id: str
    channel: str | None
    country: str | None
    device_id: str | None
    event_time_ms: int
    ip: str | None
    lat: float | None
    lon: float | None
    merchant_category: str | None
    merchant_id: str
    transaction_id: str

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, values.get(name))


@dataclass
class FeatureTable:
    transaction_ids: list[str]
    matrix: npt.NDArray[np.float64]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            self.matrix,
            index=pd.Index(self.transaction_ids, name="transaction_id"),
            columns=list(FEATURE_NAMES),
        )


def compute_features(transactions: Iterable[TxLike], labels: Iterable[LabelEvent] = ()) -> FeatureTable:
    cards: dict[str, CardState] = {}
    rows: dict[str, tuple[tuple[float, ...], tuple[float, ...], dict[str, tuple[float, ...]]]] = {}
    order: list[str] = []
    owner: dict[str, Any] = {}  # transaction_id -> the transaction whose row it is (the first)
    by_entity: dict[tuple[EntityKind, str], list[tuple[int, str, Any]]] = {}
    for tx in transactions:
        state = cards.get(tx.card_id)
        if state is None:
            state = cards[tx.card_id] = CardState()
        card_part = card_step(state, tx)
        if card_part is None:
            continue
        if tx.transaction_id not in rows:  # else a conflicting duplicate: counted, no row
            rows[tx.transaction_id] = (transaction_features(tx), card_part, {})
            order.append(tx.transaction_id)
            owner[tx.transaction_id] = tx
        for kind, key in entity_keys(tx):
            by_entity.setdefault((kind, key), []).append((tx.event_time_ms, tx.transaction_id, tx))
    for label in labels:
        for target in label_entities(label.merchant_id, label.card_id):
            by_entity.setdefault(target, []).append((label.reported_at_ms, LABEL_SORT + label.transaction_id, label))
    for (kind, _), events in by_entity.items():
        events.sort(key=lambda e: (e[0], e[1]))
        entity = EntityState(kind)
        last_ms, at_last = NO_TIME, set[str]()  # as the entity stage: ids applied at the newest time
        for t_ms, sort_id, item in events:
            if sort_id.startswith(LABEL_SORT):
                apply_label(
                    entity,
                    transaction_id=item.transaction_id,
                    reported_at_ms=item.reported_at_ms,
                    is_fraud=item.is_fraud,
                )
            elif t_ms != last_ms or sort_id not in at_last:
                if t_ms != last_ms:
                    last_ms, at_last = t_ms, set()
                at_last.add(sort_id)
                values = entity_step(kind, entity, item)
                if owner[item.transaction_id] is item:
                    rows[item.transaction_id][2][kind] = values
    matrix = np.empty((len(order), len(FEATURE_NAMES)), dtype=np.float64)
    for i, tx_id in enumerate(order):
        tx_part, card_part, parts = rows[tx_id]
        matrix[i] = assemble_vector(tx_part, card_part, parts)
    return FeatureTable(order, matrix)


def _clean_column(df: Any, name: str) -> list[Any]:
    """A column as Python values, NaN/NaT/None as None (whole column at once: per-value checks were the
    largest cost of reading a million rows)."""
    if name not in df:
        return [None] * len(df)
    series = df[name]
    values: list[Any] = series.astype(object).where(series.notna(), None).tolist()
    return values


def rows_from_frame(df: Any) -> Iterator[TxRow]:
    """TxRows from a pandas DataFrame of transactions (a `timestamp` column of datetimes), in row order."""
    import pandas as pd

    ts = pd.to_datetime(df["timestamp"], utc=True)
    # Whatever the stored resolution (s, ms, us, ns): epoch milliseconds, floored, as the stream computes them.
    event_ms = ts.astype("datetime64[ms, UTC]").astype("int64").tolist()
    names = [name for name in TxRow.__slots__ if name not in ("event_time_ms", "amount")]
    columns = [_clean_column(df, name) for name in names]
    amounts = [float(a or 0.0) for a in _clean_column(df, "amount")]
    new = object.__new__
    for values, t_ms, amount in zip(zip(*columns, strict=True), event_ms, amounts, strict=True):
        row = new(TxRow)
        for name, value in zip(names, values, strict=True):
            setattr(row, name, value)
        row.event_time_ms = int(t_ms)
        row.amount = amount
        yield row
