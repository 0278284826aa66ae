"""The decision: model thresholds and rules combined by one documented precedence.

1. An enforced `decline` rule (deny lists included) declines.
2. Else an enforced `approve` rule (allow lists) approves.
3. Else the model: score >= decline threshold declines, >= review threshold reviews, else approve.
4. Enforced `challenge` / `review` rules raise an approve to that action (a challenge outranks a
   review); they never lower what the model decided.
An enforced rule's `score` override replaces the model score (the highest override wins). `shadow` rules
are reported as what they would have done and `audit` rules are only recorded: neither changes anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.rules.engine import RuleHit

_RANK = {"approve": 0, "review": 1, "challenge": 2, "decline": 3}


@dataclass
class DecisionResult:
    decision: str
    score: float
    #: Reason dicts (code, text, kind, value) for the rules that acted or would have acted.
    reasons: list[dict[str, Any]] = field(default_factory=list)


def decide(score: float, thresholds: Mapping[str, Any], hits: Sequence[RuleHit]) -> DecisionResult:
    enforced = [h for h in hits if h.state == "enforce"]
    overrides = [h.score for h in enforced if h.score is not None]
    final_score = max(overrides) if overrides else score
    if any(h.action == "decline" for h in enforced):
        decision = "decline"
    elif any(h.action == "approve" for h in enforced):
        decision = "approve"
    else:
        if final_score >= float(thresholds["decline"]):
            decision = "decline"
        elif final_score >= float(thresholds["review"]):
            decision = "review"
        else:
            decision = "approve"
        raised = [h.action for h in enforced if h.action in ("review", "challenge")]
        if raised:
            strongest = max(raised, key=_RANK.__getitem__)
            if _RANK[strongest] > _RANK[decision]:
                decision = strongest
    reasons: list[dict[str, Any]] = []
    if decision != "approve":
        for h in enforced:
            if h.action == decision or (decision == "decline" and h.action != "approve"):
                reasons.append({"code": f"rule:{h.id}", "text": h.reason, "kind": "rule", "value": None})
    for h in hits:
        if h.state == "shadow":
            text = f"(shadow, would {h.action}) {h.reason}"
            reasons.append({"code": f"shadow:{h.id}", "text": text, "kind": "rule", "value": None})
    return DecisionResult(decision=decision, score=float(min(max(final_score, 0.0), 1.0)), reasons=reasons)
