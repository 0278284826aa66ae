"""Review cases: what a `review` or `challenge` verdict asks of an analyst, as plain data and functions.

A case is opened by the sink beside its verdict (one per transaction), claimed by an analyst (the API key's
name), and resolved as `fraud` or `legitimate`. Resolving produces one label on the `labels` topic, built
here from the stored case alone (`resolution_label`), so every attempt to send it sends the same record: the
sink keeps one label per (transaction_id, label, reported_at) and the worker one fraud mark per transaction,
so a label sent twice changes nothing.

No database or framework here: `pipeline.db.cases` stores cases, the gateway serves them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.pan import contains_pan
from pipeline.records import Label, LabelKind, Transaction, Verdict

CaseState = Literal["open", "claimed", "resolved"]
Resolution = Literal["fraud", "legitimate"]
CaseSort = Literal["priority", "age"]

CASE_STATES: Final[tuple[CaseState, ...]] = ("open", "claimed", "resolved")
#: The decisions that open a case: the transaction waits on someone's judgement.
CASE_DECISIONS: Final = frozenset({"review", "challenge"})

#: Priority bounds: 0 (score 0) to 100 (score 1 on 10,000 or more).
PRIORITY_MAX: Final = 100
#: `log10(1 + amount)` at which the amount weight reaches 1 (an amount of 9,999).
_FULL_WEIGHT_LOG_AMOUNT: Final = 4.0
#: Lowest amount weight: small amounts (card testing probes) still rank by their score.
_MIN_AMOUNT_WEIGHT: Final = 0.25
#: Weight of a verdict that names no amount: that of about 100, a typical payment.
_UNKNOWN_AMOUNT_WEIGHT: Final = 0.5

#: An analyst's note: free text up to 2,000 characters, line breaks allowed, no other control characters.
NOTE_MAX_CHARS: Final = 2000
_NOTE_FORBIDDEN: Final = frozenset(chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))

_LABELS: Final[dict[Resolution, LabelKind]] = {"fraud": "confirmed_fraud", "legitimate": "confirmed_legitimate"}
#: Labels carry at most 64 characters of `source`.
_SOURCE_MAX: Final = 64


class CaseError(Exception):
    """Base of the case errors; the gateway maps each to its HTTP answer."""


class CaseNotFound(CaseError):
    """No case has this id."""


class CaseConflict(CaseError):
    """The case is not in a state that allows the action (claimed by someone else, resolved otherwise)."""


class Case(BaseModel):
    """A review case as the queue shows it: the case's own fields and its verdict's summary (never a PAN)."""

    model_config = ConfigDict(frozen=True)

    id: int
    transaction_id: str
    decision: str
    priority: int = Field(description="0..100, higher first: round(100 * score * amount weight)")
    state: CaseState
    assignee: str | None = Field(None, description="The API key name that claimed or resolved it")
    created_at: datetime
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: Resolution | None = None
    note: str | None = None
    #: When Kafka acknowledged the resolution's label; null while it is still to be sent.
    label_sent_at: datetime | None = None
    age_seconds: float = Field(description="From opening to resolution, or to the time of reading")
    score: float
    amount: float | None = None
    currency: str | None = None
    card_id: str | None = None
    merchant_id: str | None = None
    event_time: datetime


class CaseDetail(BaseModel):
    """A case with everything an analyst decides on: its verdict (reasons, rules, score, features when the
    worker emitted them), the transaction as the worker accepted it, and the card's recent verdicts."""

    case: Case
    verdict: Verdict
    transaction: Transaction | None = None
    card_recent: list[Verdict] = Field(default_factory=list, description="The card's latest verdicts, newest first")


class CasePage(BaseModel):
    items: list[Case]
    #: Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


def check_note(note: str | None) -> str | None:
    """The note as stored, or ValueError: too long, a control character other than a line break, a PAN."""
    if note is None:
        return None
    if len(note) > NOTE_MAX_CHARS:
        raise ValueError(f"note is longer than {NOTE_MAX_CHARS} characters")
    if any(c in _NOTE_FORBIDDEN for c in note):
        raise ValueError("note contains a control character")
    if contains_pan(note):
        raise ValueError("note looks like it contains a card number (PAN); never write one")
    return note


def amount_weight(amount: float | None) -> float:
    """How much is at stake, 0.25..1: `log10(1 + amount) / 4`, clamped (1 from 9,999, 0.5 at 99).

    Logarithmic, because a queue ordered by the raw amount (expected loss) would bury every card-testing
    probe under one large payment; currencies are not converted (the amount as sent).
    """
    if amount is None or not math.isfinite(amount):
        return _UNKNOWN_AMOUNT_WEIGHT
    weight = math.log10(1 + max(amount, 0.0)) / _FULL_WEIGHT_LOG_AMOUNT
    return min(1.0, max(_MIN_AMOUNT_WEIGHT, weight))


def case_priority(*, score: float, amount: float | None) -> int:
    """The case's priority, 0..100 (higher first): `round(100 * score * amount_weight(amount))`.

    The one definition: the sink computes it when it opens a case, the queue sorts and filters on it.
    """
    bounded = min(1.0, max(0.0, score)) if math.isfinite(score) else 1.0
    return round(PRIORITY_MAX * bounded * amount_weight(amount))


def opens_case(decision: str) -> bool:
    return decision in CASE_DECISIONS


def age_seconds(*, created_at: datetime, resolved_at: datetime | None, now: datetime) -> float:
    """The case's SLA age: from opening to resolution, or to `now` while it is not resolved."""
    return max(0.0, ((resolved_at or now) - created_at).total_seconds())


def label_source(case_id: int, assignee: str | None) -> str:
    """`case:<id>:<analyst>`, cut to the label's 64 characters."""
    return f"case:{case_id}:{assignee or '-'}"[:_SOURCE_MAX]


def resolution_label(
    *,
    case_id: int,
    transaction_id: str,
    resolution: Resolution,
    resolved_at: datetime,
    assignee: str | None,
    card_id: str | None,
    merchant_id: str | None,
) -> Label:
    """The label a resolved case produces: a function of the stored case only, so a retry sends the same.

    `reported_at` is the resolution time, so the label counts for the card and merchant features from a
    minute after the analyst's decision, and the sink's unique key sees a re-sent label as the same one.
    """
    return Label.model_validate(
        {
            "transaction_id": transaction_id,
            "label": _LABELS[resolution],
            "reported_at": resolved_at,
            "card_id": card_id,
            "merchant_id": merchant_id,
            "source": label_source(case_id, assignee),
        },
        strict=False,
    )
