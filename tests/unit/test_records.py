"""The validator: every way a transaction can be wrong gives one clear, one-line error naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.pan import mask_pans, mask_pans_text
from pipeline.records import RecordError, contains_pan, looks_like_pan, parse_label, parse_transaction
from tests.contract.test_schemas import SCHEMA_BREAKS, VALID_TX, VALIDATOR_ONLY, mutate

FIELD_OF = {
    "missing transaction_id": "transaction_id", "missing timestamp": "timestamp", "missing amount": "amount",
    "missing currency": "currency", "missing card_id": "card_id", "missing merchant_id": "merchant_id",
    "amount zero": "amount", "amount negative": "amount", "amount absurd": "amount", "amount as string": "amount",
    "unknown currency": "currency", "lowercase currency": "currency", "bad timestamp": "timestamp",
    "id with spaces": "card_id", "empty id": "merchant_id", "id too long": "card_id", "bad bin": "card_bin",
    "bad channel": "channel", "bad country": "country", "lat out of range": "lat", "lon out of range": "lon",
    "extra field": "pan", "category with capitals": "merchant_category", "id as number": "transaction_id",
    "PAN as card_id": "card_id", "PAN with dashes": "card_id", "no UTC offset": "timestamp", "ancient": "timestamp",
    "far future": "timestamp", "not an ip": "ip", "lat without lon": "lat and lon",
}  # fmt: skip
CASES = SCHEMA_BREAKS + VALIDATOR_ONLY


@pytest.mark.parametrize(("case", "change"), CASES, ids=[c for c, _ in CASES])
def test_each_broken_rule_gives_one_clear_error_naming_the_field(case: str, change: dict[str, Any]) -> None:
    with pytest.raises(RecordError) as info:
        parse_transaction(json.dumps(mutate(change)).encode())
    reason = info.value.reason
    assert "\n" not in reason
    assert FIELD_OF[case] in reason, reason


def test_a_pan_is_refused_and_never_echoed() -> None:
    with pytest.raises(RecordError) as info:
        parse_transaction(json.dumps(mutate({"card_id": "4111 1111 1111 1111"})).encode())
    assert "card number" in info.value.reason
    assert "4111" not in info.value.reason


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"transaction_id": "t", ', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2, 3]", "record"),
        (b"null", "record"),
        (b"", "not valid JSON"),
    ],
)
def test_non_records_are_refused_with_a_reason(raw: bytes, fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_transaction(raw)
    assert fragment in info.value.reason


def test_a_one_megabyte_payload_is_refused_quickly() -> None:
    doc = dict(VALID_TX, merchant_category="x" * 1_000_000)
    with pytest.raises(RecordError, match="merchant_category"):
        parse_transaction(json.dumps(doc).encode())


def test_valid_transactions_round_trip() -> None:
    tx = parse_transaction(json.dumps(VALID_TX).encode())
    assert tx.transaction_id == "t-1" and tx.amount == 12.5
    assert tx.event_time_ms % 1000 == 0


@pytest.mark.parametrize(
    ("value", "pan"),
    [("4111111111111111", True), ("4111 1111 1111 1111", True), ("4111111111111112", False),
     ("card-4111111111111111", False), ("123456789012", False), ("5500-0000-0000-0004", True),
     ("4111.1111.1111.1111", True), ("4111/1111/1111/1111", True), ("4111:1111:1111:1111", True),
     ("4111+1111+1111+1111", True), ("4111=1111=1111=1111", True), ("4111_1111_1111_1111", True),
     ("4111/1111:1111_1111", True), ("4111 - 1111 - 1111 - 1111", True), ("192.168.10.200:51234", False),
     ("2026-12-02 18:20:00", False)],
)  # fmt: skip
def test_pan_detection(value: str, pan: bool) -> None:
    assert looks_like_pan(value) is pan


@pytest.mark.parametrize(
    ("value", "pan"),
    [("card-4111111111111111", True), ("c_4111.1111.1111.1111_x", True), ("tok-5500-0000-0000-0004", True),
     ("card-4111111111111112", False), ("dev-1733011200000123", False), ("m-12345", False),
     ("order-0000000000000000", False), ("4111111111111111", True), ("amex 3782 822463 10005", True),
     ("tx-4111111111111111", True), ("4111-1111 1111.1111", True), ("tok4111111111111111", False),
     ("0b8e5c4a-4111-1111-1111-111111111111", False)],
)  # fmt: skip
def test_a_pan_inside_an_identifier_is_found(value: str, pan: bool) -> None:
    assert contains_pan(value) is pan


@pytest.mark.parametrize("field", ["card_id", "customer_id", "device_id", "merchant_id", "transaction_id"])
def test_a_token_that_embeds_a_pan_is_refused(field: str) -> None:
    doc = dict(VALID_TX, **{field: "tok-4111111111111111"})
    with pytest.raises(RecordError, match=f"{field}: .*card number"):
        parse_transaction(json.dumps(doc).encode())


def test_a_label_with_a_pan_anywhere_is_refused() -> None:
    body = {"transaction_id": "t", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"}
    for field, value in (("card_id", "c-4111111111111111"), ("source", "analyst saw 4111 1111 1111 1111")):
        with pytest.raises(RecordError, match="card number"):
            parse_label(json.dumps(body | {field: value}).encode())


def test_labels_are_validated_too() -> None:
    assert parse_label(b'{"transaction_id":"t","label":"chargeback","reported_at":"2026-11-01T00:00:00Z"}').is_fraud
    with pytest.raises(RecordError, match="label"):
        parse_label(b'{"transaction_id":"t","label":"maybe","reported_at":"2026-11-01T00:00:00Z"}')


def test_pans_are_masked_in_kept_bytes() -> None:
    from pipeline.records import mask_pans

    raw = b'{"card_id":"4111 1111 1111 1111","id":"1234567890123","t":"2026-11-24T10:00:00Z"}'
    assert mask_pans(raw) == b'{"card_id":"411111******1111","id":"1234567890123","t":"2026-11-24T10:00:00Z"}'


PAN = "4111111111111111"
#: A PAN as a person writes it: every separator, and mixes of them.
WRITTEN = [
    *(sep.join(PAN[i : i + 4] for i in range(0, 16, 4)) for sep in (" ", ".", "-", "/", ":", "+", "=", "_")),
    "4111/1111:1111_1111", "4111 - 1111 - 1111 - 1111", "4111=1111+1111.1111",
]  # fmt: skip


@pytest.mark.parametrize("written", WRITTEN)
@pytest.mark.parametrize("where", ["the whole card_id", "inside a device_id", "the whole transaction_id"])
def test_a_pan_with_any_separator_is_refused_and_not_echoed(written: str, where: str) -> None:
    field = {"the whole card_id": "card_id", "inside a device_id": "device_id"}.get(where, "transaction_id")
    value = f"dev:{written}" if where.startswith("inside") else written
    with pytest.raises(RecordError) as info:
        parse_transaction(json.dumps(dict(VALID_TX, **{field: value})).encode())
    assert field in info.value.reason and "card number" in info.value.reason, info.value.reason
    assert "1111" not in info.value.reason.replace("411111******1111", "")


@pytest.mark.parametrize("name", [PAN, *WRITTEN[3:]])
def test_a_pan_as_a_field_name_is_masked_in_the_reason(name: str) -> None:
    """The reason goes to the dead-letter header, the worker log and the API's 422: the PAN must not."""
    label = {"transaction_id": "t", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"}
    for parse, doc in ((parse_transaction, VALID_TX), (parse_label, label)):
        with pytest.raises(RecordError) as info:
            parse(json.dumps(doc | {name: 1}).encode())
        assert "411111******1111" in info.value.reason, info.value.reason
        assert name not in info.value.reason and PAN not in info.value.reason


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4111111111111111 declined", "card 411111******1111 declined"),
        ("4111/1111:1111_1111: Extra inputs", "411111******1111: Extra inputs"),
        ("tok4111111111111111", "tok411111******1111"),  # glued to letters: refused nowhere, masked anyway
        ("1234 4111 1111 1111 1111", "1234 411111******1111"),  # after other digit groups
        ("amex 3782 822463 10005", "amex 378282*****0005"),
        ("6011 0009 9013 9424 123", "601100******9424 123"),  # then a CVV
        ("2026-12-02 18:20:00,123 INFO", "2026-12-02 18:20:00,123 INFO"),  # a log timestamp stays
        ('"time":"2026-12-02T18:20:00.123+00:00"', '"time":"2026-12-02T18:20:00.123+00:00"'),
        ("4111111111111112", "4111111111111112"),  # not Luhn-valid
        ("offset=123456 partition=3", "offset=123456 partition=3"),
    ],
)
def test_card_numbers_are_masked_in_text(text: str, masked: str) -> None:
    assert mask_pans_text(text) == masked


def test_a_label_source_with_a_control_character_is_refused() -> None:
    """PostgreSQL refuses NUL in text (the sink would retry the label forever); a line break forges log lines."""
    body = {"transaction_id": "t", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"}
    for bad in ("a\x00b", "issuer\nforged line", "tab\there"):
        with pytest.raises(RecordError, match="source"):
            parse_label(json.dumps(body | {"source": bad}).encode())
    assert parse_label(json.dumps(body | {"source": "issuer (émetteur)"}).encode()).source == "issuer (émetteur)"


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"card_id":"4111\u00201111\u00201111\u00201111"}',  # a separator escaped
        rb'{"card_id":"\u0034111\u002d1111\u002D1111\u002d1111"}',  # a digit and separators escaped
        rb'{"card_id":"4111\u002f1111\u002f1111\u002f1111"}',
    ],
)
def test_json_escapes_do_not_hide_a_pan_from_the_dead_letter_mask(raw: bytes) -> None:
    masked = mask_pans(raw)
    assert json.loads(masked)["card_id"] == "411111******1111"


def test_escapes_around_other_text_are_kept() -> None:
    raw = rb'{"note":"caf\u00e9 12\u002034","n":"4111"}'
    assert mask_pans(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        '{"card_id": "4111111111111111", ' + json.dumps(VALID_TX)[1:],
        '{"source": "a", "transaction_id": "t-1", "label": "chargeback", "reported_at": "2026-12-01T10:00:00Z", '
        '"source": "b"}',
    ],
    ids=["transaction", "label"],
)
def test_a_repeated_field_name_is_refused(raw: str) -> None:
    """Validators keep the last of repeated names; the raw bytes, which travel on, keep the first too."""
    parse = parse_transaction if "card_id" in raw else parse_label
    with pytest.raises(RecordError, match="duplicate field name") as e:
        parse(raw)
    assert "4111111111111111" not in e.value.reason
