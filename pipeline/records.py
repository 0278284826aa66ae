"""Wire records: one model per JSON Schema in `schemas/`, used by the worker, the gateway and the sink.

The JSON Schemas are the published contract; these models must accept exactly what they accept
(`tests/contract` proves it). Validation is strict: wrong JSON types are refused, not coerced, because a
fraud pipeline that guesses what a producer meant silently corrupts velocity state.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.currencies import ISO_4217
from pipeline.pan import contains_pan as contains_pan
from pipeline.pan import looks_like_pan as looks_like_pan
from pipeline.pan import luhn_valid as luhn_valid
from pipeline.pan import mask_pans as mask_pans
from pipeline.pan import mask_pans_text

SCHEMA_VERSION: Literal[1] = 1

Channel = Literal["pos", "ecom", "atm", "moto", "in_app"]
Decision = Literal["approve", "review", "decline", "challenge"]
RuleState = Literal["audit", "shadow", "enforce"]
LabelKind = Literal["chargeback", "confirmed_fraud", "confirmed_legitimate"]

#: Earliest accepted event time; anything older is a broken clock or a corrupt record.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: How far in the future (producer clock skew) an event time may be.
MAX_FUTURE_SKEW_SECONDS = 24 * 3600
MAX_AMOUNT = 10_000_000.0
#: The reserved card and merchant of the gateway's readiness probes (api/readiness.py): scored like any
#: transaction, left out of training and business figures.
PROBE_CARD_ID = "riskstream-probe"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

#: Identifiers: a letter or digit, then letters, digits and . _ : @ / + = -.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
#: A transaction id is also a URL path segment (`GET /v1/verdicts/{transaction_id}`): no "/".
TRANSACTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$"
#: RFC 3339 date-time, as JSON Schema's `date-time` means it, minus the leap second (23:59:60), which no
#: datetime library represents. The JSON Schema carries this pattern too: `format` alone is only an
#: annotation in draft 2020-12, so most validators would accept "1764700000" or "2026-12-02 18:20Z".
RFC3339_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
FREE_TEXT_PATTERN = r"^[^\u0000-\u001F\u007F]*$"
_RFC3339 = re.compile(RFC3339_PATTERN.removesuffix("$") + r"\Z")

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
TransactionId = Annotated[str, Field(min_length=1, max_length=128, pattern=TRANSACTION_ID_PATTERN)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class RecordError(ValueError):
    """A record failed validation; `reason` is one line naming the field and the rule.

    The reason goes to the dead-letter header, the worker's log and the API's answer: any card number in it
    (a field *name* can be one) is masked here, once, for all of them.
    """

    def __init__(self, reason: str) -> None:
        reason = mask_pans_text(reason)
        super().__init__(reason)
        self.reason = reason


def _refuse_pan(value: Any) -> Any:
    # Before the pattern check, so "4111 1111 1111 1111" is called what it is: a card number.
    if isinstance(value, str) and contains_pan(value):
        raise ValueError("looks like a card number (PAN); send a token, never the PAN")
    return value


def _rfc3339(value: Any) -> Any:
    # Before pydantic's datetime parsing, which also takes "1764700000", "2026-12-02 18:20Z", "+0000" or a
    # number. Datetimes built in code pass as they are.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _RFC3339.match(value) is None:
        raise ValueError("must be an RFC 3339 date-time with seconds and an offset, e.g. 2026-11-24T10:15:00Z")
    return value


#: An RFC 3339 date-time (RFC3339_PATTERN, also in the model's JSON Schema). Not strict after the check: a
#: before-validator hands pydantic a Python str, which strict mode would refuse as a datetime.
Rfc3339 = Annotated[
    datetime, BeforeValidator(_rfc3339), Field(strict=False, json_schema_extra={"pattern": RFC3339_PATTERN})
]


class Transaction(BaseModel):
    """A card payment as producers send it (schemas/transaction.v1.json)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    transaction_id: TransactionId
    timestamp: Rfc3339
    amount: float = Field(gt=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    card_id: Identifier
    merchant_id: Identifier
    card_bin: str | None = Field(None, pattern=r"^[0-9]{6,8}$")
    customer_id: Identifier | None = None
    device_id: Identifier | None = None
    ip: str | None = Field(None, max_length=45)
    merchant_category: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    channel: Channel | None = None
    country: CountryCode | None = None
    card_country: CountryCode | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    @field_validator("timestamp")
    @classmethod
    def _event_time_in_range(cls, value: datetime) -> datetime:
        return _plausible_time(value, "timestamp")

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in ISO_4217:
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value

    @field_validator(
        "transaction_id", "card_id", "customer_id", "merchant_id", "device_id", "merchant_category", mode="before"
    )
    @classmethod
    def _no_pan(cls, value: Any) -> Any:
        return _refuse_pan(value)

    @field_validator("ip")
    @classmethod
    def _valid_ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError as e:
                raise ValueError("not an IPv4 or IPv6 address") from e
        return value

    @model_validator(mode="after")
    def _lat_lon_together(self) -> Transaction:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self

    @property
    def event_time_ms(self) -> int:
        return epoch_ms(self.timestamp)


def _plausible_time(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a UTC offset (RFC 3339)")
    if value < MIN_EVENT_TIME:
        raise ValueError(f"{name} is before 2000-01-01")
    if value.timestamp() > time.time() + MAX_FUTURE_SKEW_SECONDS:
        raise ValueError(f"{name} is more than 24 h in the future")
    return value


def epoch_ms(when: datetime) -> int:
    """Epoch milliseconds, floored, in integer arithmetic (float seconds would round some values)."""
    return (when - _EPOCH) // _ONE_MS


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    text: str
    kind: Literal["rule", "model", "system"]
    value: float | None = None


class FiredRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    state: RuleState
    action: Decision


class ChallengerVerdict(BaseModel):
    """What the challenger model would have decided (`pipeline.challenger`): recorded, never acted on."""

    model_config = ConfigDict(extra="forbid")

    version: str
    score: float = Field(ge=0, le=1)
    decision: Decision


class Verdict(BaseModel):
    """The decision on one transaction (schemas/verdict.v1.json); key = transaction_id on `verdicts`."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Identifier
    decision: Decision
    score: float = Field(ge=0, le=1)
    reasons: list[Reason] = Field(default_factory=list)
    rules: list[FiredRule] = Field(default_factory=list)
    model_version: str
    rules_version: str
    event_time: datetime
    decided_at: datetime
    latency_ms: float = Field(ge=0)
    degraded: bool = False
    card_id: Identifier | None = None
    merchant_id: Identifier | None = None
    amount: float | None = None
    currency: str | None = None
    features: dict[str, float | None] | None = None
    challenger: ChallengerVerdict | None = None
    schema_version: Literal[1] = SCHEMA_VERSION


class Label(BaseModel):
    """Feedback on a past transaction (schemas/label.v1.json); key = transaction_id on `labels`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    transaction_id: TransactionId
    label: LabelKind
    reported_at: Rfc3339
    card_id: Identifier | None = None
    merchant_id: Identifier | None = None
    #: Free text, but no control characters: PostgreSQL refuses NUL in text, and a line break would forge log
    #: lines.
    source: str | None = Field(None, max_length=64, pattern=FREE_TEXT_PATTERN)

    @field_validator("transaction_id", "card_id", "merchant_id", "source", mode="before")
    @classmethod
    def _no_pan(cls, value: Any) -> Any:
        return _refuse_pan(value)

    @field_validator("reported_at")
    @classmethod
    def _plausible_report_time(cls, value: datetime) -> datetime:
        # A label takes its place in its merchant's event-time order: a report time far in the future would
        # make every later transaction of that merchant look late.
        return _plausible_time(value, "reported_at")

    @property
    def is_fraud(self) -> bool:
        return self.label != "confirmed_legitimate"

    @property
    def reported_at_ms(self) -> int:
        return epoch_ms(self.reported_at)


_M = TypeVar("_M", bound=BaseModel)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise RecordError(f"duplicate field name {duplicate!r}: a field may appear once")
    return dict(pairs)


def _may_repeat_a_name(raw: bytes | str, names: set[str]) -> bool:
    """False when no field name can be repeated: no escapes (a name could be spelled another way) and each
    field's quoted name once in the text (unknown names are refused already). Saves a second parse (~20 us)."""
    text = raw if isinstance(raw, bytes) else raw.encode()
    return b"\\" in text or any(text.count(b'"' + name.encode() + b'"') != 1 for name in names)


def _parse(model: type[_M], raw: bytes | str) -> _M:
    try:
        parsed = model.model_validate_json(raw)
        # The validator keeps the last of repeated names; the raw bytes travel on (to the topic, the verdict)
        # with the first, which nothing validated: `{"card_id": "<PAN>", "card_id": "tok"}` passed.
        if _may_repeat_a_name(raw, parsed.model_fields_set):
            json.loads(raw, object_pairs_hook=_no_duplicates)
        return parsed
    except ValidationError as e:
        if any(item["type"] == "json_invalid" for item in e.errors()):
            if isinstance(raw, bytes):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as ue:
                    raise RecordError("not valid UTF-8") from ue
            raise RecordError("not valid JSON") from e
        raise RecordError(_describe(e)) from e
    except UnicodeDecodeError as e:
        raise RecordError("not valid UTF-8") from e


def parse_transaction(raw: bytes | str) -> Transaction:
    """Validate one JSON transaction; raises RecordError with a one-line reason naming the field."""
    return _parse(Transaction, raw)


def parse_label(raw: bytes | str) -> Label:
    """Validate one JSON label, as `parse_transaction` does."""
    return _parse(Label, raw)


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    """The wire form: optional fields that are unset are omitted, timestamps in RFC 3339."""
    return tx.model_dump(mode="json", exclude_none=True)
