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
from array import array

from pipeline.features.windows import TIERS

_U16 = struct.Struct("<H")


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
        keys = sorted(self.data)
        idx = array("I", keys)
        counts = [self.data[k][0] for k in keys]
        cents = [self.data[k][1] for k in keys]
        flags = [self.data[k][2] for k in keys]
        wide = int(max(counts, default=0) > 0xFFFF or max(flags, default=0) > 0xFFFF)
        wide |= int(max(cents, default=0) > 0xFFFFFFFF or min(cents, default=0) < 0) << 1
        cnt = array("I" if wide & 1 else "H", counts)
        fl = array("I" if wide & 1 else "H", flags)
        cn = array("q" if wide & 2 else "I", cents)
        return struct.pack("<HB", len(keys), wide) + idx.tobytes() + cnt.tobytes() + fl.tobytes() + cn.tobytes()

    def load(self, buf: memoryview, pos: int) -> int:
        n, wide = struct.unpack_from("<HB", buf, pos)
        pos += 3
        arrays = []
        for code in ("I", "I" if wide & 1 else "H", "I" if wide & 1 else "H", "q" if wide & 2 else "I"):
            a = array(code)
            width = a.itemsize * n
            a.frombytes(buf[pos : pos + width])
            pos += width
            arrays.append(a)
        idx, counts, flags, cents = arrays
        self.data = {int(k): [int(c), int(m), int(f)] for k, c, f, m in zip(idx, counts, flags, cents, strict=True)}
        self.newest = max(self.data, default=-(2**62))
        return pos


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
        keys = sorted(self.seen)
        return _U16.pack(len(keys)) + array("I", keys).tobytes() + array("q", [self.seen[k] for k in keys]).tobytes()

    def load(self, buf: memoryview, pos: int) -> int:
        (n,) = _U16.unpack_from(buf, pos)
        pos += 2
        keys, secs = array("I"), array("q")
        keys.frombytes(buf[pos : pos + 4 * n])
        pos += 4 * n
        secs.frombytes(buf[pos : pos + 8 * n])
        pos += 8 * n
        self.seen = dict(zip((int(k) for k in keys), (int(s) for s in secs), strict=True))
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
        return _dump_u64_seconds(self.ids)

    def load(self, buf: memoryview, pos: int) -> int:
        self.ids, pos = _load_u64_seconds(buf, pos)
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

    def expire(self, before_s: int) -> None:
        for h in [h for h, s in self.marks.items() if s <= before_s]:
            del self.marks[h]

    def to_bytes(self) -> bytes:
        return _dump_u64_seconds(self.marks)

    def load(self, buf: memoryview, pos: int) -> int:
        self.marks, pos = _load_u64_seconds(buf, pos)
        return pos


def _dump_u64_seconds(values: dict[int, int]) -> bytes:
    """{64-bit hash: second} as a count, the sorted hashes, then their seconds."""
    keys = sorted(values)
    return _U16.pack(len(keys)) + array("Q", keys).tobytes() + array("q", [values[k] for k in keys]).tobytes()


def _load_u64_seconds(buf: memoryview, pos: int) -> tuple[dict[int, int], int]:
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    keys, secs = array("Q"), array("q")
    keys.frombytes(buf[pos : pos + 8 * n])
    pos += 8 * n
    secs.frombytes(buf[pos : pos + 8 * n])
    pos += 8 * n
    return dict(zip((int(k) for k in keys), (int(s) for s in secs), strict=True)), pos
