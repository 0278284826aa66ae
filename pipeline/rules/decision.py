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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.rules.engine import Rule, RuleHit

_RANK = {"approve": 0, "review": 1, "challenge": 2, "decline": 3}
#: Decisions by rank: a decision outranks those before it.
DECISIONS = ("approve", "review", "challenge", "decline")
#: Score overrides are in [0, 1]; this marks "no override".
_NO_OVERRIDE = -1.0


@dataclass
class DecisionResult:
    decision: str
    score: float
    #: Reason dicts (code, text, kind, value) for the rules that acted or would have acted.
    reasons: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Elementwise:
    """How the precedence combines its values: Python scalars for one transaction, numpy columns for many."""

    where: Callable[[Any, Any, Any], Any]
    any: Callable[[list[Any]], Any]
    max: Callable[[list[Any], float], Any]


_ONE = _Elementwise(where=lambda c, a, b: a if c else b, any=any, max=lambda xs, d: max(xs, default=d))


def _columns(rows: int) -> _Elementwise:
    return _Elementwise(
        where=np.where,
        any=lambda xs: np.logical_or.reduce(xs) if xs else np.zeros(rows, dtype=bool),
        max=lambda xs, d: np.maximum.reduce([np.broadcast_to(x, rows) for x in xs]) if xs else np.full(rows, d),
    )


def _precedence(
    ops: _Elementwise, score: Any, thresholds: Mapping[str, Any], enforced: Sequence[tuple[str, float | None, Any]]
) -> tuple[Any, Any]:
    """The precedence of the module docstring, written once: (decision rank, final score), for one
    transaction or for columns. `enforced`: (action, score override, fired) of each enforced rule."""
    overrides = [ops.where(fired, override, _NO_OVERRIDE) for _, override, fired in enforced if override is not None]
    override = ops.max(overrides, _NO_OVERRIDE)
    final = ops.where(override >= 0.0, override, score)
    declined = ops.any([fired for action, _, fired in enforced if action == "decline"])
    approved = ops.any([fired for action, _, fired in enforced if action == "approve"])
    model = ops.max(
        [ops.where(final >= float(thresholds["decline"]), _RANK["decline"], 0),
         ops.where(final >= float(thresholds["review"]), _RANK["review"], 0)], 0,
    )  # fmt: skip
    raised = [ops.where(fired, _RANK[action], 0) for action, _, fired in enforced if action in ("review", "challenge")]
    rank = ops.where(declined, _RANK["decline"], ops.where(approved, _RANK["approve"], ops.max([model, *raised], 0)))
    return rank, final


def decide_columns(
    scores: npt.NDArray[np.float64], thresholds: Mapping[str, Any], rules: Sequence[Rule], fired: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """`decide` for many transactions at once (backtests): decision ranks (index into `DECISIONS`) and final
    scores, from the model scores and `fired` (rows x rules, as `RuleSet.evaluate_frame` gives)."""
    enforced = [(r.action, r.score, fired[:, j]) for j, r in enumerate(rules) if r.state == "enforce"]
    rank, final = _precedence(_columns(len(scores)), np.asarray(scores, dtype=np.float64), thresholds, enforced)
    return np.asarray(rank, dtype=np.int8), np.clip(np.asarray(final, dtype=np.float64), 0.0, 1.0)


def decide(score: float, thresholds: Mapping[str, Any], hits: Sequence[RuleHit]) -> DecisionResult:
    enforced = [h for h in hits if h.state == "enforce"]
    rank, final_score = _precedence(_ONE, score, thresholds, [(h.action, h.score, True) for h in enforced])
    decision = DECISIONS[rank]
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
