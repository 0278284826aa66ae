"""Internal records: split to fit a topic's limit, and refused when no stage wrote them (pipeline.wire)."""

from __future__ import annotations

import orjson
import pytest

from pipeline import stages, wire
from tests.fixtures.factories import make_transaction_dict


def item(i: int, size: int = 300) -> bytes:
    return wire.entity_item(entity_key=f"merchant:m{i}", source=1, offset=i, event_time_ms=1000 + i, tx_id=f"t{i}",
                            raw=orjson.dumps({"pad": "x" * size}))  # fmt: skip


def test_entity_batches_fit_and_the_markers_come_after_every_item() -> None:
    items = [item(i) for i in range(100)]
    markers = [(1, 1099, True, 70), (3, 5, False, 70)]
    chunks = wire.entity_batches(items, markers, 60, 4000)
    assert len(chunks) > 5 and all(len(c) <= 4000 for c in chunks)
    decoded = [wire.decode_entity_batch(c, sources=4) for c in chunks]
    assert [i for its, _, _ in decoded for i in its] == [orjson.loads(i) for i in items]
    assert [m for _, m, _ in decoded] == [[]] * (len(chunks) - 1) + [markers]
    assert {taken for _, _, taken in decoded} == {60}
    assert wire.entity_batches(items, markers, 60, 10**9) == [wire.entity_batch(items, markers, 60)]
    assert wire.entity_batches([], markers, 60, 4000) == [wire.entity_batch([], markers, 60)]


def test_partials_batches_fit() -> None:
    partials = [wire.encode_partial({"id": f"t{i}", "p": "ip", "v": [float(i)] * 50}) for i in range(200)]
    chunks = wire.partials_batches(partials, 5000)
    assert all(len(c) <= 5000 for c in chunks)
    assert [p for c in chunks for p in wire.decode_partials(c)] == [orjson.loads(p) for p in partials]
    assert wire.partials_batches([], 5000) == []


def test_what_the_stages_write_decodes() -> None:
    tx = orjson.dumps(make_transaction_dict(transaction_id="t1", card_id="c1", device_id="d1"))
    out = stages.process_card_batch([wire.RawRecord(0, 0, b"c1", tx, ((wire.REPLY_TO_HEADER, b"r"),))], {}.get)
    wire.decode_entity_batch(wire.entity_batch([v for _, v in out.entity_records], [(0, 5, True, 9)], 8), sources=2)
    partials = wire.decode_partials(wire.partials_batch([v for _, v in out.partials]))
    assert partials[0]["p"] == "card"
    label = wire.label_item(entity_key="merchant:m", source=1, offset=0, merge_id="~t1", reported_at_ms=5,
                            tx_id="t1", is_fraud=True)  # fmt: skip
    wire.decode_entity_batch(wire.entity_batch([label], [], 0), sources=2)
    dup = wire.encode_partial({"id": "t1", "p": "dup", "h": {}})
    entity = wire.encode_partial({"id": "t1", "p": "ip", "v": [1.0, None, 3]})
    assert len(wire.decode_partials(wire.partials_batch([dup, entity]))) == 2


@pytest.mark.parametrize(
    "value",
    [None, b"", b"junk", b"[]", b'{"i": {}, "m": []}', b'{"i": [], "m": {}}', b'{"i": [1], "m": []}',
     b'{"i": [{"e": 1, "s": 0, "t": 1, "id": "a"}], "m": []}',
     b'{"i": [{"e": "k", "s": 9, "t": 1, "id": "a"}], "m": []}',
     b'{"i": [{"e": "k", "s": 0, "t": 1.5, "id": "a"}], "m": []}',
     b'{"i": [{"e": "k", "s": 0, "t": 1, "id": ""}], "m": []}',
     b'{"i": [{"e": "k", "s": 0, "t": 1, "id": "a", "r": []}], "m": []}',
     b'{"i": [{"e": "k", "s": 0, "t": 1, "id": "a", "l": ["t", 1]}], "m": []}',
     b'{"i": [], "m": [[9, 0, true]]}', b'{"i": [], "m": [[0, 0]]}', b'{"i": [], "m": [[0, "x", true]]}',
     b'{"i": [], "m": [[0, 0, true, "x"]]}', b'{"i": [], "m": [[0, 0, true, 1, 2]]}', b'{"i": [], "c": "x", "m": []}'],
)  # fmt: skip
def test_malformed_entity_records_are_refused_with_a_reason(value: bytes | None) -> None:
    with pytest.raises(wire.MalformedRecord) as e:
        wire.decode_entity_batch(value, sources=2)
    assert e.value.reason.startswith("malformed internal record: ")


CARD = {"id": "t", "p": "card", "parts": ["ip"], "t": 1, "in": 2, "tx": [1.0], "card": [None], "raw": "{}", "h": {}}


@pytest.mark.parametrize(
    "partials",
    [{"a": 1}, [1], [{"id": 5, "p": "card"}], [{"id": "t"}], [{"id": "t", "p": "ip", "v": ["x"]}],
     [{"id": "t", "p": "ip"}], [{"id": "t", "p": "dup", "h": {"reply-to": 5}}],
     *([{**CARD, k: v}] for k, v in [("parts", "ip"), ("t", None), ("in", "x"), ("tx", [True]), ("card", {}),
                                     ("raw", None), ("h", [])]),
     *([{k: v for k, v in CARD.items() if k != gone}] for gone in ("parts", "t", "in", "tx", "card", "raw"))],
)  # fmt: skip
def test_malformed_partials_are_refused_with_a_reason(partials: object) -> None:
    with pytest.raises(wire.MalformedRecord) as e:
        wire.decode_partials(orjson.dumps(partials))
    assert e.value.reason.startswith("malformed internal record: ")
    assert wire.decode_partials(orjson.dumps([CARD])) == [CARD]
