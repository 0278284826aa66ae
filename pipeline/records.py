"""Wire records: one model per JSON Schema in `schemas/`, used by the worker, the gateway and the sink.

The JSON Schemas are the published contract; these models must accept exactly what they accept
(`tests/contract` proves it). Validation is strict: wrong JSON types are refused, not coerced, because a
fraud pipeline that guesses what a producer meant silently corrupts velocity state.
"""

from __future__ import annotations

import ipaddress
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.currencies import ISO_4217

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
#: Card networks' numbers start with 2-6 (Mastercard 2/5, Amex/JCB/Diners 3, Visa 4, Discover/UnionPay 6):
#: without that, one pure-numeric id in ten (e.g. epoch microseconds) would pass for a card number.
_PAN_CANDIDATE = re.compile(r"^[2-6]\d{12,18}$")
_PAN_SEPARATORS = re.compile(r"[\s.-]")
#: A card number inside a longer string, as card numbers are written: 13 to 19 digits starting with a card
#: network's first digit (2-6), contiguous or in the printed groups (4-4-4-4[-3], Amex 4-6-5), not glued to
#: other letters or digits. Ordinary identifiers stay out: no false positive in 200,000 random UUIDs, hex
#: tokens and epoch-millisecond or -microsecond ids each. Missed: a number glued to letters ("tok4111...").
_PAN_RUN = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(?:[2-6][0-9]{12,18}|[2-6][0-9]{3}(?:([ .-])[0-9]{4})(?:\1[0-9]{4}){2}(?:\1[0-9]{3})?"
    r"|3[0-9]{3}([ .-])[0-9]{6}\2[0-9]{5})"
    r"(?![A-Za-z0-9])"
)
_THIRTEEN_DIGITS = re.compile(r"[0-9](?:[\s.-]?[0-9]){12}")

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class RecordError(ValueError):
    """A record failed validation; `reason` is one line naming the field and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_PAN_IN_TEXT = re.compile(rb"(?<![0-9])[0-9](?:[ .-]?[0-9]){12,18}(?![0-9])")


def mask_pans(raw: bytes) -> bytes:
    """Replace anything that looks like a card number with its first 6 and last 4 digits (PCI DSS masking).

    Dead letters keep the original bytes for diagnosis, except a PAN: it is never stored, anywhere.
    """

    def mask(match: re.Match[bytes]) -> bytes:
        digits = re.sub(rb"[ .-]", b"", match.group())
        if not luhn_valid(digits.decode()):
            return match.group()
        return digits[:6] + b"*" * (len(digits) - 10) + digits[-4:]

    return _PAN_IN_TEXT.sub(mask, raw)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def looks_like_pan(value: str) -> bool:
    """13 to 19 digits from 2-6 (spaces, dots and dashes ignored) passing the Luhn check: a card number."""
    compact = _PAN_SEPARATORS.sub("", value)
    return bool(_PAN_CANDIDATE.match(compact)) and luhn_valid(compact)


def contains_pan(value: str) -> bool:
    """A card number anywhere in the string ("card-4111111111111111"), or the whole string one, whatever its
    separators ("4111-1111 1111.1111")."""
    if _THIRTEEN_DIGITS.search(value) is None:  # nearly every identifier: one C-level scan and done
        return False
    if looks_like_pan(value):
        return True
    return any(luhn_valid(_PAN_SEPARATORS.sub("", m.group())) for m in _PAN_RUN.finditer(value))


def _refuse_pan(value: Any) -> Any:
    # Before the pattern check, so "4111 1111 1111 1111" is called what it is: a card number.
    if isinstance(value, str) and contains_pan(value):
        raise ValueError("looks like a card number (PAN); send a token, never the PAN")
    return value


class Transaction(BaseModel):
    """A card payment as producers send it (schemas/transaction.v1.json)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    transaction_id: Identifier
    timestamp: datetime
    amount: float = Field(gt=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    card_id: Identifier
    merchant_id: Identifier
    card_bin: str | None = Field(None, pattern=r"^\d{6,8}$")
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
    schema_version: Literal[1] = SCHEMA_VERSION


class Label(BaseModel):
    """Feedback on a past transaction (schemas/label.v1.json); key = transaction_id on `labels`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    transaction_id: Identifier
    label: LabelKind
    reported_at: datetime
    card_id: Identifier | None = None
    merchant_id: Identifier | None = None
    source: str | None = Field(None, max_length=64)

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


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_transaction(raw: bytes | str) -> Transaction:
    """Validate one JSON transaction; raises RecordError with a one-line reason naming the field."""
    try:
        return Transaction.model_validate_json(raw)
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


def parse_label(raw: bytes | str) -> Label:
    try:
        return Label.model_validate_json(raw)
    except ValidationError as e:
        raise RecordError(_describe(e)) from e


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    """The wire form: optional fields that are unset are omitted, timestamps in RFC 3339."""
    return tx.model_dump(mode="json", exclude_none=True)
