"""View models of the console's pages: what a template shows, built from the repository's records.

Plain functions and dataclasses, no FastAPI: a page's facts (which reason points at which feature value,
how the velocity features group by entity, whether they were stored at all) are decided here and tested
without a browser. Nothing here holds a PAN: records refuse one, and the card is shown by its token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pipeline.cases import Case, CaseDetail
from pipeline.features import CARD_FEATURES, DEVICE_FEATURES, IP_FEATURES, MERCHANT_FEATURES
from pipeline.records import FiredRule, Verdict

#: Velocity features shown on a case, by the entity they count (the worker's windows at decision time).
FEATURE_GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("Device", DEVICE_FEATURES),
    ("IP address", IP_FEATURES),
    ("Merchant", MERCHANT_FEATURES),
    ("Card", CARD_FEATURES),
)
#: Transaction fields shown, in order (the audit copy; `card_bin` is the 6-8 digit issuer prefix, not a PAN).
TRANSACTION_FIELDS: Final = (
    "transaction_id", "timestamp", "amount", "currency", "card_id", "card_bin", "card_country", "merchant_id",
    "merchant_category", "channel", "country", "customer_id", "device_id", "ip",
)  # fmt: skip
NO_FEATURES_NOTE: Final = (
    "The features at decision time were not stored with this verdict: the worker emits them only with "
    "RISKSTREAM_WORKER__EMIT_FEATURES=true. The reasons above carry the values that pushed the score."
)


def format_number(value: float | None) -> str:
    """A feature value as an analyst reads it: integers without decimals, others to 3 significant places."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_age(seconds: float) -> str:
    """An SLA age: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def format_time(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class ReasonRow:
    code: str
    text: str
    kind: str
    #: The value the reason carries, if any.
    value: float | None
    #: The feature a model reason is about (`model:<feature>`), and its value at decision time if stored.
    feature: str | None
    feature_value: float | None


@dataclass(frozen=True)
class FeatureRow:
    name: str
    value: float | None
    #: A feature a reason of this verdict names: highlighted.
    cited: bool


@dataclass(frozen=True)
class FeatureGroup:
    entity: str
    rows: list[FeatureRow]


@dataclass(frozen=True)
class RecentRow:
    verdict: Verdict
    #: The verdict of this case's own transaction.
    current: bool


@dataclass(frozen=True)
class CaseView:
    case: Case
    verdict: Verdict
    reasons: list[ReasonRow]
    rules: list[FiredRule]
    #: None when the verdict was stored without its features (the template says so).
    feature_groups: list[FeatureGroup] | None
    transaction: list[tuple[str, str]]
    recent: list[RecentRow]
    prev_id: int | None = None
    next_id: int | None = None


def reason_rows(verdict: Verdict) -> list[ReasonRow]:
    features = verdict.features or {}
    rows = []
    for reason in verdict.reasons:
        prefix, _, name = reason.code.partition(":")
        feature = name if prefix == "model" and name else None
        rows.append(
            ReasonRow(
                code=reason.code,
                text=reason.text,
                kind=reason.kind,
                value=reason.value,
                feature=feature,
                feature_value=features.get(feature) if feature else None,
            )
        )
    return rows


def feature_groups(verdict: Verdict) -> list[FeatureGroup] | None:
    if verdict.features is None:
        return None
    cited = {r.code.partition(":")[2] for r in verdict.reasons if r.code.startswith("model:")}
    groups = []
    for entity, names in FEATURE_GROUPS:
        rows = [FeatureRow(n, verdict.features.get(n), n in cited) for n in names if n in verdict.features]
        if rows:
            groups.append(FeatureGroup(entity, rows))
    return groups


def transaction_rows(detail: CaseDetail) -> list[tuple[str, str]]:
    if detail.transaction is None:
        return []
    values = detail.transaction.model_dump()
    rows = []
    for name in TRANSACTION_FIELDS:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            text = format_time(value)
        elif isinstance(value, float):
            text = f"{value:,.2f}"
        else:
            text = str(value)
        rows.append((name.replace("_", " "), text))
    return rows


def case_view(detail: CaseDetail, *, prev_id: int | None = None, next_id: int | None = None) -> CaseView:
    verdict = detail.verdict
    return CaseView(
        case=detail.case,
        verdict=verdict,
        reasons=reason_rows(verdict),
        rules=list(verdict.rules),
        feature_groups=feature_groups(verdict),
        transaction=transaction_rows(detail),
        recent=[RecentRow(v, v.transaction_id == verdict.transaction_id) for v in detail.card_recent],
        prev_id=prev_id,
        next_id=next_id,
    )


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters as the form sends them (empty string: no filter)."""

    state: str = "open"
    decision: str = ""
    min_priority: int | None = None
    assignee: str = ""
    sort: str = "priority"

    def query(self, **changes: object) -> dict[str, object]:
        """As query parameters, with `changes` applied and empty values left out (links keep the filters)."""
        values: dict[str, object] = {
            "state": self.state, "decision": self.decision, "min_priority": self.min_priority,
            "assignee": self.assignee, "sort": self.sort,
        } | changes  # fmt: skip
        return {k: v for k, v in values.items() if v not in (None, "")}


def sla_class(case: Case, *, warn_seconds: float = 3600, late_seconds: float = 4 * 3600) -> str:
    """A CSS class for the case's age: fine, warn (over an hour) or late (over four), resolved ones fine."""
    if case.state == "resolved":
        return "age-ok"
    if case.age_seconds >= late_seconds:
        return "age-late"
    return "age-warn" if case.age_seconds >= warn_seconds else "age-ok"
