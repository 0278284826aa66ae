"""The state kept per key, and its binary form: `CardState` per card, `EntityState` per device, IP, merchant
and card label (the Faust tables hold these bytes).

One module for both, so the classes and their packing change together and neither imports the other.
Struct/array packing, no JSON, no pickle; lossless by construction: ints stay ints, floats are float64, so a
state read back from a Faust table gives exactly the features the in-memory state would.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Literal, get_args

from pipeline.features.state import Buckets, CappedSet, FraudMarks, RecentIds

EntityKind = Literal["device", "ip", "merchant", "card_label"]
ENTITY_KINDS: tuple[EntityKind, ...] = get_args(EntityKind)

_VERSION = 1
#: Entity state 2: merchant fraud labels per transaction (FraudMarks). Version 1 kept them in day buckets
#: that no worker ever filled, so a version-1 value loads with no labels and nothing is lost.
_ENTITY_VERSION = 2
_CARD_HEAD = struct.Struct("<BqBqdd3d")  # version, last_ms, has_loc, loc_ms, lat, lon, hist(n, mean, m2)
_ENTITY_HEAD = struct.Struct("<B")
_NONE = -(2**63)


class CardState:
    """Everything kept per card; ~0.5 KB serialized for a card with a few transactions a day."""

    __slots__ = (
        "countries",
        "day",
        "devices",
        "hist",
        "hour",
        "ids",
        "last_ms",
        "loc",
        "merchants",
        "minute",
    )

    def __init__(self) -> None:
        self.minute = Buckets("minute")
        self.hour = Buckets("hour")  # flag = card-country mismatches
        self.day = Buckets("day")
        self.merchants = CappedSet(16)
        self.countries = CappedSet(8)
        self.devices = CappedSet(8)
        self.ids = RecentIds()
        self.last_ms: int | None = None
        self.loc: tuple[int, float, float] | None = None
        self.hist = [0.0, 0.0, 0.0]  # Welford: count, mean, M2 of amounts over the card's history

    @classmethod
    def from_bytes(cls, data: bytes | None) -> CardState:
        state = cls()
        if data:
            load_card(state, data)
        return state

    def to_bytes(self) -> bytes:
        return dump_card(self)


class EntityState:
    """Per device, IP or merchant: count/amount buckets, distinct cards and BINs, fraud labels (merchant);
    per card (`card_label`): daily counts and fraud labels only."""

    __slots__ = ("bins", "cards", "day", "frauds", "hour", "kind", "minute")

    def __init__(self, kind: EntityKind) -> None:
        self.kind: EntityKind = kind
        self.minute = Buckets("minute")
        self.hour = Buckets("hour")
        self.day = Buckets("day")
        self.cards = CappedSet(64 if kind == "ip" else 32)
        self.bins = CappedSet(32)
        self.frauds = FraudMarks()  # merchant, card_label: labelled frauds and when each became visible

    @classmethod
    def from_bytes(cls, kind: str, data: bytes | None) -> EntityState:
        if kind not in ENTITY_KINDS:
            raise ValueError(f"unknown entity kind {kind!r}")
        state = cls(kind)
        if data:
            load_entity(state, data)
        return state

    def to_bytes(self) -> bytes:
        return dump_entity(self)


# --- binary form --------------------------------------------------------------------------------------


def dump_card(state: CardState) -> bytes:
    loc_ms, lat, lon = state.loc if state.loc is not None else (0, math.nan, math.nan)
    head = _CARD_HEAD.pack(
        _VERSION,
        _NONE if state.last_ms is None else state.last_ms,
        int(state.loc is not None),
        loc_ms,
        lat,
        lon,
        *state.hist,
    )
    return b"".join(
        (
            head,
            state.minute.to_bytes(),
            state.hour.to_bytes(),
            state.day.to_bytes(),
            state.merchants.to_bytes(),
            state.countries.to_bytes(),
            state.devices.to_bytes(),
            state.ids.to_bytes(),
        )
    )


def load_card(state: CardState, data: bytes) -> None:
    version, last_ms, has_loc, loc_ms, lat, lon, n, mean, m2 = _CARD_HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"card state version {version} is not {_VERSION}")
    state.last_ms = None if last_ms == _NONE else last_ms
    state.loc = (loc_ms, lat, lon) if has_loc else None
    state.hist = [n, mean, m2]
    buf = memoryview(data)
    pos = _CARD_HEAD.size
    for part in (
        state.minute,
        state.hour,
        state.day,
        state.merchants,
        state.countries,
        state.devices,
        state.ids,
    ):
        pos = part.load(buf, pos)


def dump_entity(state: EntityState) -> bytes:
    if state.kind == "card_label":  # new in version 2: no version-1 value of this kind exists
        return _ENTITY_HEAD.pack(_ENTITY_VERSION) + state.day.to_bytes() + state.frauds.to_bytes()
    parts = [state.minute.to_bytes(), state.hour.to_bytes()]
    if state.kind != "ip":
        parts.append(state.day.to_bytes())
    if state.kind != "merchant":
        parts.append(state.cards.to_bytes())
    if state.kind == "ip":
        parts.append(state.bins.to_bytes())
    if state.kind == "merchant":
        parts.append(state.frauds.to_bytes())
    return _ENTITY_HEAD.pack(_ENTITY_VERSION) + b"".join(parts)


def load_entity(state: EntityState, data: bytes) -> None:
    (version,) = _ENTITY_HEAD.unpack_from(data)
    if version not in (1, _ENTITY_VERSION):
        raise ValueError(f"entity state version {version} is not {_ENTITY_VERSION}")
    buf = memoryview(data)
    pos = _ENTITY_HEAD.size
    if state.kind == "card_label":
        state.frauds.load(buf, state.day.load(buf, pos))
        return
    parts: list[Any] = [state.minute, state.hour]
    if state.kind != "ip":
        parts.append(state.day)
    if state.kind != "merchant":
        parts.append(state.cards)
    if state.kind == "ip":
        parts.append(state.bins)
    if state.kind == "merchant":
        parts.append(state.frauds if version == _ENTITY_VERSION else Buckets("day"))
    for part in parts:
        pos = part.load(buf, pos)
