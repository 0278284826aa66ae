"""Compact per-entity state: time buckets and capped distinct sets, with a lossless binary form.

Stream state is read from and written to Faust tables as bytes once per key per batch, while the offline
reference keeps these objects in memory; so serialization must be lossless (ints as ints, floats as
float64) or the two would drift. Everything here is deterministic and independent of process (stable
hashes, never Python's randomized `hash()`).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

from pipeline.features.windows import TIERS

_U16 = struct.Struct("<H")
_BUCKET_HEAD = struct.Struct("<HB")


@lru_cache(maxsize=4096)
def _bucket_struct(n: int, wide: int) -> struct.Struct:
    """One compiled layout per (size, widths): packing in one call is several times faster than arrays."""
    count = "I" if wide & 1 else "H"
    return struct.Struct(f"<HB{n}I{n}{count}{n}{count}{n}{'q' if wide & 2 else 'I'}")


@lru_cache(maxsize=4096)
def _hash_seconds_struct(n: int, hash_code: str) -> struct.Struct:
    return struct.Struct(f"<H{n}{hash_code}{n}q")


def hash32(text: str) -> int:
    """Stable 32-bit hash for distinct-value sets (a collision merges two values; 1 in 4 billion)."""
    return zlib.crc32(text.encode())


def hash64(text: str) -> int:
    """Stable 64-bit hash for transaction ids (dedup must practically never merge two transactions)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class Buckets:
    """Per-tier time buckets of [count, amount in cents, flag count]."""

    __slots__ = ("data", "newest", "retained", "size")

    def __init__(self, tier: str) -> None:
        self.size, self.retained = TIERS[tier]
        self.data: dict[int, list[int]] = {}
        self.newest = -(2**62)

    def add(self, event_s: int, cents: int, flag: int = 0) -> None:
        idx = event_s // self.size
        b = self.data.get(idx)
        if b is not None:
            b[0] += 1
            b[1] += cents
            b[2] += flag
            return
        if idx <= self.newest - self.retained:
            return  # older than anything a window can reach: nothing to count
        self.data[idx] = [1, cents, flag]
        if idx > self.newest:
            self.newest = idx
            if len(self.data) > self.retained or next(iter(self.data)) <= idx - self.retained:
                cutoff = idx - self.retained
                for old in [i for i in self.data if i <= cutoff]:
                    del self.data[old]

    def totals(self, event_s: int, spans: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """(count, cents, flags) for windows of `spans` buckets ending with event_s's bucket.

        One tight pass per span: measured 2-3x faster than one pass testing every span per bucket.
        """
        current = event_s // self.size
        out = []
        for n in spans:
            low = current - n
            c = m = f = 0
            for idx, b in self.data.items():
                if low < idx <= current:
                    c += b[0]
                    m += b[1]
                    f += b[2]
            out.append((c, m, f))
        return out

    def to_bytes(self) -> bytes:
        """Count, width flags, then the sorted bucket indexes, counts, flags and cents as arrays."""
        data = self.data
        keys = sorted(data)
        n = len(keys)
        values = [data[k] for k in keys]
        counts = [v[0] for v in values]
        flags = [v[2] for v in values]
        cents = [v[1] for v in values]
        wide = int(n > 0 and (max(counts) > 0xFFFF or max(flags) > 0xFFFF))
        wide |= int(n > 0 and (max(cents) > 0xFFFFFFFF or min(cents) < 0)) << 1
        return _bucket_struct(n, wide).pack(n, wide, *keys, *counts, *flags, *cents)

    def load(self, buf: memoryview, pos: int) -> int:
        n, wide = _BUCKET_HEAD.unpack_from(buf, pos)
        layout = _bucket_struct(n, wide)
        fields = layout.unpack_from(buf, pos)
        keys, counts, flags, cents = (fields[2 + i * n : 2 + (i + 1) * n] for i in range(4))
        self.data = {k: [c, m, f] for k, c, f, m in zip(keys, counts, flags, cents, strict=True)}
        self.newest = max(keys, default=-(2**62))
        return pos + layout.size


class CappedSet:
    """Distinct values with their last-seen second, keeping the `cap` most recently seen.

    Eviction drops the smallest (last_seen, hash), so the content does not depend on arrival order for
    values seen in event-time order. A count over a window saturates at the cap.
    """

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: dict[int, int] = {}

    def __contains__(self, h: int) -> bool:
        return h in self.seen

    def add(self, h: int, event_s: int) -> None:
        prev = self.seen.get(h)
        if prev is None or event_s > prev:
            self.seen[h] = event_s
        if len(self.seen) > self.cap:
            victim = min(self.seen.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del self.seen[victim]

    def count_within(self, event_s: int, seconds: int) -> int:
        low = event_s - seconds
        n = 0
        for s in self.seen.values():
            if low < s <= event_s:
                n += 1
        return n

    def expire(self, before_s: int) -> None:
        for h in [h for h, s in self.seen.items() if s <= before_s]:
            del self.seen[h]

    def to_bytes(self) -> bytes:
        return _dump_hash_seconds(self.seen, "I")

    def load(self, buf: memoryview, pos: int) -> int:
        self.seen, pos = _load_hash_seconds(buf, pos, "I")
        return pos


class RecentIds:
    """Transaction-id hashes seen within a TTL of event time, for dedup (capped)."""

    __slots__ = ("cap", "ids")

    def __init__(self, cap: int = 256) -> None:
        self.cap = cap
        self.ids: dict[int, int] = {}

    def seen(self, h: int) -> bool:
        return h in self.ids

    def add(self, h: int, event_s: int, ttl_s: int) -> None:
        self.ids[h] = event_s
        newest = max(self.ids.values())
        if len(self.ids) > self.cap or min(self.ids.values()) <= newest - ttl_s:
            for k in [k for k, s in self.ids.items() if s <= newest - ttl_s]:
                del self.ids[k]
            while len(self.ids) > self.cap:
                del self.ids[min(self.ids.items(), key=lambda kv: (kv[1], kv[0]))[0]]

    def to_bytes(self) -> bytes:
        return _dump_hash_seconds(self.ids, "Q")

    def load(self, buf: memoryview, pos: int) -> int:
        self.ids, pos = _load_hash_seconds(buf, pos, "Q")
        return pos


class FraudMarks:
    """Fraud labels of one merchant: labelled transaction hash -> second from which the label counts.

    Keyed by transaction, so the same fraud reported twice (chargeback, then confirmed) counts once, a
    label re-delivered after a crash changes nothing, and a later "confirmed legitimate" withdraws it.
    The earliest visibility wins. Capped (the oldest marks go first), so a merchant's state stays bounded;
    counts over a window saturate at the cap.
    """

    __slots__ = ("cap", "marks")

    def __init__(self, cap: int = 256) -> None:
        self.cap = cap
        self.marks: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.marks)

    def mark(self, h: int, visible_s: int) -> None:
        prev = self.marks.get(h)
        if prev is None or visible_s < prev:
            self.marks[h] = visible_s
        if len(self.marks) > self.cap:
            del self.marks[min(self.marks.items(), key=lambda kv: (kv[1], kv[0]))[0]]

    def withdraw(self, h: int) -> None:
        self.marks.pop(h, None)

    def count_within(self, event_s: int, seconds: int) -> int:
        """Marks visible at `event_s` that became visible less than `seconds` before it."""
        low = event_s - seconds
        return sum(1 for s in self.marks.values() if low < s <= event_s)

    def latest_visible(self, event_s: int) -> int | None:
        """The second the newest mark visible at `event_s` became visible (None: none is)."""
        return max((s for s in self.marks.values() if s <= event_s), default=None)

    def expire(self, before_s: int) -> None:
        for h in [h for h, s in self.marks.items() if s <= before_s]:
            del self.marks[h]

    def to_bytes(self) -> bytes:
        return _dump_hash_seconds(self.marks, "Q")

    def load(self, buf: memoryview, pos: int) -> int:
        self.marks, pos = _load_hash_seconds(buf, pos, "Q")
        return pos


def _dump_hash_seconds(values: dict[int, int], hash_code: str) -> bytes:
    """{hash: second} as a count, the sorted hashes (32-bit "I" or 64-bit "Q"), then their seconds."""
    keys = sorted(values)
    n = len(keys)
    return _hash_seconds_struct(n, hash_code).pack(n, *keys, *[values[k] for k in keys])


def _load_hash_seconds(buf: memoryview, pos: int, hash_code: str) -> tuple[dict[int, int], int]:
    (n,) = _U16.unpack_from(buf, pos)
    layout = _hash_seconds_struct(n, hash_code)
    fields = layout.unpack_from(buf, pos)
    return dict(zip(fields[1 : 1 + n], fields[1 + n :], strict=True)), pos + layout.size
