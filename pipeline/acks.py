"""Acknowledge Kafka records in offset order, whatever order the stages finish them in.

The entity stage holds records in its event-time merge and the join stage holds partials until every part
of a transaction is in, while records behind them are finished. Faust commits the first run of
consecutive acked offsets, and checks for a gap at the head of that run only against a committed offset
it may not know (a fresh consumer) or off by one: acking a later record while an earlier one is held lets
the commit pass the held record, which a crash then loses. So each stage marks records done here and
acks only the finished prefix of each partition, in offset order: the committed position never passes a
record that is still held.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedAcks(Generic[T]):
    """Tracks records per partition; `done` marks one finished, `pop_ready` returns the ackable prefix.

    A record carrying several items (a batched internal record) is tracked with a count and finished
    when `done` was called that many times.
    """

    def __init__(self) -> None:
        self._partitions: dict[int, OrderedDict[int, tuple[T, int]]] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._partitions.values())

    def track(self, partition: int, offset: int, token: T, count: int = 1) -> None:
        """Register a record as it is read (offsets arrive in increasing order per partition)."""
        self._partitions.setdefault(partition, OrderedDict())[offset] = (token, count)

    def done(self, partition: int, offset: int) -> None:
        """One item of the record is finished."""
        records = self._partitions.get(partition)
        if records is not None and offset in records:
            token, remaining = records[offset]
            records[offset] = (token, remaining - 1)

    def pop_ready(self) -> list[T]:
        """Tokens of every partition's finished prefix, in offset order; they leave the tracker."""
        out: list[T] = []
        for records in self._partitions.values():
            while records:
                offset, (token, remaining) = next(iter(records.items()))
                if remaining > 0:
                    break
                del records[offset]
                out.append(token)
        return out

    def forget(self, partition: int) -> None:
        """Drop a revoked partition: its unacked records will be re-read by the next owner."""
        self._partitions.pop(partition, None)

    def oldest_pending(self) -> dict[int, int]:
        """Per partition, the offset of the oldest unfinished record (for progress logs)."""
        return {p: next(iter(r)) for p, r in self._partitions.items() if r}
