"""Binary form of card and entity state (struct/array packing; no JSON, no pickle).

Lossless by construction: ints stay ints, floats are float64, so a state read back from a Faust table
gives exactly the features the in-memory state would.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

from pipeline.features.state import Buckets

if TYPE_CHECKING:
    from pipeline.features.definitions import CardState, EntityState

_VERSION = 1
#: Entity state 2: merchant fraud labels per transaction (FraudMarks). Version 1 kept them in day buckets
#: that no worker ever filled, so a version-1 value loads with no labels and nothing is lost.
_ENTITY_VERSION = 2
_CARD_HEAD = struct.Struct("<BqBqdd3d")  # version, last_ms, has_loc, loc_ms, lat, lon, hist(n, mean, m2)
_ENTITY_HEAD = struct.Struct("<B")
_NONE = -(2**63)


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
