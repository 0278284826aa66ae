"""The published JSON Schemas and the Python wire models agree: no drift in either direction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel, ValidationError

from pipeline.records import Label, Transaction, Verdict

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MODELS: dict[str, type[BaseModel]] = {"transaction": Transaction, "verdict": Verdict, "label": Label}


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.v1.json").read_text())
    return loaded


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=FormatChecker())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_schema_is_a_valid_2020_12_schema(name: str) -> None:
    Draft202012Validator.check_schema(schema(name))
    assert schema(name)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert all("description" in p for p in schema(name)["properties"].values()), "document every field"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fields_and_required_fields_are_the_same(name: str) -> None:
    model = MODELS[name]
    s = schema(name)
    assert set(s["properties"]) == set(model.model_fields)
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert set(s["required"]) == required
    assert s["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted(MODELS))
def test_enums_patterns_and_bounds_are_the_same(name: str) -> None:
    ours = MODELS[name].model_json_schema()["properties"]
    published = schema(name)["properties"]

    def flatten(p: dict[str, Any]) -> dict[str, Any]:
        alternatives = p.get("anyOf", [p])
        first = next(a for a in alternatives if a.get("type") != "null")
        keys = ("enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength")
        return {k: first[k] for k in keys if k in first and not (k == "enum" and len(first[k]) > 20)}

    for field, spec in ours.items():
        if "$ref" in spec or spec.get("type") == "array" or "items" in spec:
            continue
        assert flatten(spec) == flatten(published[field]), field


NOW = datetime.now(UTC).replace(microsecond=0)
VALID_TX = {
    "transaction_id": "t-1", "timestamp": (NOW - timedelta(hours=1)).isoformat(), "amount": 12.5, "currency": "EUR",
    "card_id": "card-1", "merchant_id": "m-1", "card_bin": "411111", "device_id": "d-1", "ip": "203.0.113.5",
    "merchant_category": "grocery", "channel": "ecom", "country": "FR", "card_country": "DE", "lat": 48.8, "lon": 2.3,
}  # fmt: skip

# Each case breaks one schema rule: both the schema and the model must refuse it.
SCHEMA_BREAKS: list[tuple[str, dict[str, Any]]] = [
    *[(f"missing {f}", {f: None}) for f in ("transaction_id", "timestamp", "amount", "currency", "card_id")],
    ("missing merchant_id", {"merchant_id": None}),
    ("amount zero", {"amount": 0}), ("amount negative", {"amount": -1.0}), ("amount absurd", {"amount": 1e9}),
    ("amount as string", {"amount": "12.5"}), ("unknown currency", {"currency": "XXX"}),
    ("lowercase currency", {"currency": "eur"}), ("bad timestamp", {"timestamp": "yesterday"}),
    ("id with spaces", {"card_id": "card 1"}), ("empty id", {"merchant_id": ""}),
    ("id too long", {"card_id": "c" * 129}),
    ("bad bin", {"card_bin": "41x111"}), ("bad channel", {"channel": "fax"}), ("bad country", {"country": "FRA"}),
    ("lat out of range", {"lat": 91.0}), ("lon out of range", {"lon": -181.0}), ("extra field", {"pan": "x"}),
    ("category with capitals", {"merchant_category": "Grocery"}), ("id as number", {"transaction_id": 42}),
    ("no UTC offset", {"timestamp": "2026-11-01T10:00:00"}),
]  # fmt: skip
# Rules only the validator enforces (documented in the schema's description).
VALIDATOR_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("PAN as card_id", {"card_id": "4111111111111111"}),
    ("PAN with dashes", {"card_id": "4111-1111-1111-1111"}),
    ("ancient", {"timestamp": "1999-12-31T23:59:59Z"}),
    ("far future", {"timestamp": (NOW + timedelta(days=3)).isoformat()}),
    ("not an ip", {"ip": "999.1.1.1"}),
    ("lat without lon", {"lon": None}),
]


def mutate(change: dict[str, Any]) -> dict[str, Any]:
    doc = dict(VALID_TX)
    for k, v in change.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def model_accepts(model: type[BaseModel], doc: dict[str, Any]) -> bool:
    try:
        model.model_validate_json(json.dumps(doc))
    except ValidationError:
        return False
    return True


def test_the_currency_enum_is_iso_4217() -> None:
    from pipeline.currencies import ISO_4217

    assert set(schema("transaction")["properties"]["currency"]["enum"]) == set(ISO_4217)


def test_a_valid_transaction_is_accepted_by_both() -> None:
    assert validator("transaction").is_valid(VALID_TX)
    assert model_accepts(Transaction, VALID_TX)


@pytest.mark.parametrize(("case", "change"), SCHEMA_BREAKS, ids=[c for c, _ in SCHEMA_BREAKS])
def test_schema_rules_are_refused_by_both(case: str, change: dict[str, Any]) -> None:
    doc = mutate(change)
    assert not validator("transaction").is_valid(doc), case
    assert not model_accepts(Transaction, doc), case


@pytest.mark.parametrize(("case", "change"), VALIDATOR_ONLY, ids=[c for c, _ in VALIDATOR_ONLY])
def test_validator_only_rules_are_refused_by_the_model(case: str, change: dict[str, Any]) -> None:
    doc = mutate(change)
    assert not model_accepts(Transaction, doc), case


ids = st.from_regex(r"\A[A-Za-z][A-Za-z0-9._:-]{0,20}\Z")


@settings(max_examples=100, deadline=None)
@given(
    tx_id=ids, card=ids, merchant=ids, amount=st.floats(0.01, 1e6),
    currency=st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
    minutes=st.integers(0, 60 * 24 * 365), channel=st.sampled_from([None, "pos", "ecom", "atm", "moto", "in_app"]),
)  # fmt: skip
def test_generated_valid_transactions_are_accepted_by_both(
    tx_id: str, card: str, merchant: str, amount: float, currency: str, minutes: int, channel: str | None
) -> None:
    when = (NOW - timedelta(minutes=minutes)).isoformat()
    doc: dict[str, Any] = {"transaction_id": tx_id, "timestamp": when, "amount": amount, "currency": currency,
                           "card_id": card, "merchant_id": merchant}  # fmt: skip
    if channel:
        doc["channel"] = channel
    assert validator("transaction").is_valid(doc)
    assert model_accepts(Transaction, doc)


def test_verdicts_the_code_produces_meet_the_schema() -> None:
    verdict = Verdict(
        transaction_id="t-1", decision="review", score=0.73, model_version="m", rules_version="r",
        event_time=NOW, decided_at=NOW, latency_ms=3.5, card_id="c", amount=1.0, currency="EUR",
        reasons=[{"code": "model:amount", "text": "amount 1.00", "kind": "model", "value": 1.0}],  # type: ignore[list-item]
        rules=[{"id": "x", "state": "shadow", "action": "decline"}],  # type: ignore[list-item]
        features={"amount": 1.0, "card_geo_speed_kmh": None},
    )  # fmt: skip
    doc = json.loads(verdict.model_dump_json())
    assert validator("verdict").is_valid(doc), list(validator("verdict").iter_errors(doc))
    assert not validator("verdict").is_valid({**doc, "decision": "maybe"})
    assert not validator("verdict").is_valid({**doc, "schema_version": 2})
    assert not model_accepts(Verdict, {**doc, "schema_version": 2})


@pytest.mark.parametrize(
    ("doc", "valid"),
    [
        ({"transaction_id": "t", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"}, True),
        ({"transaction_id": "t", "label": "maybe", "reported_at": "2026-11-01T00:00:00Z"}, False),
        ({"transaction_id": "t", "label": "chargeback"}, False),
        ({"transaction_id": "t", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z", "x": 1}, False),
    ],
)
def test_labels_agree(doc: dict[str, Any], valid: bool) -> None:
    assert validator("label").is_valid(doc) is valid
    assert model_accepts(Label, doc) is valid
