"""The numbers of a backtest, as one JSON-ready dict: what the candidate would have done against what was
served and against the labels.

"Flagged" is any decision but approve (review, challenge and decline stop or hold a payment): a flagged
fraud is caught, a flagged legitimate payment is a customer affected. Precision and recall are per action
(rows given exactly that decision) and for any flag. Costs follow `training.evaluate.CostPolicy`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.rules.decision import DECISIONS
from training.backtest.replay import Replay
from training.evaluate import CostPolicy, decision_cost

DAY_MS = 86_400_000
ARROW = "→"


def _ratio(num: int, den: int) -> float | None:
    """None (null in JSON) when undefined: no flag, no fraud."""
    return num / den if den else None


def _count_amount(mask: npt.NDArray[np.bool_], amounts: npt.NDArray[np.float64]) -> dict[str, float]:
    return {"count": int(mask.sum()), "amount": round(float(amounts[mask].sum()), 2)}


def _precision_recall(flagged: npt.NDArray[np.bool_], labels: npt.NDArray[np.bool_]) -> dict[str, Any]:
    tp = int((flagged & labels).sum())
    return {"count": int(flagged.sum()), "precision": _ratio(tp, int(flagged.sum())),
            "recall": _ratio(tp, int(labels.sum()))}  # fmt: skip


def outcome(
    ranks: npt.NDArray[np.int8], labels: npt.NDArray[np.bool_], amounts: npt.NDArray[np.float64], policy: CostPolicy
) -> dict[str, Any]:
    """What a set of decisions did: per decision, fraud caught, customers affected, precision/recall, cost."""
    flagged = ranks > 0
    declined = ranks == DECISIONS.index("decline")
    return {
        "decisions": {d: int((ranks == i).sum()) for i, d in enumerate(DECISIONS)},
        "fraud_caught": _count_amount(flagged & labels, amounts),
        "fraud_missed": _count_amount(~flagged & labels, amounts),
        "legit_affected": _count_amount(flagged & ~labels, amounts),
        "at_action": {
            **{d: _precision_recall(ranks == i, labels) for i, d in enumerate(DECISIONS) if i > 0},
            "any_flag": _precision_recall(flagged, labels),
        },
        "cost": decision_cost(
            reviewed=flagged & ~declined, declined=declined, labels=labels, amounts=amounts, policy=policy
        ),
    }


def changes(served: npt.NDArray[np.int8], candidate: npt.NDArray[np.int8]) -> dict[str, int]:
    """Decisions that would change, as 'served→candidate': count (changed pairs only)."""
    pairs = served.astype(np.int16) * len(DECISIONS) + candidate
    counts = np.bincount(pairs, minlength=len(DECISIONS) ** 2)
    out = {}
    for a, before in enumerate(DECISIONS):
        for b, after in enumerate(DECISIONS):
            if a != b and counts[a * len(DECISIONS) + b]:
                out[f"{before}{ARROW}{after}"] = int(counts[a * len(DECISIONS) + b])
    return out


def _served_hits(replay: Replay, rule_id: str) -> int | None:
    if replay.served_rule_hits is not None:
        return replay.served_rule_hits.get(rule_id, 0)
    if replay.baseline is not None:
        for j, rule in enumerate(replay.baseline.rules.rules):
            if rule.id == rule_id:
                return int(replay.baseline.fired[:, j].sum())
    return None


def per_rule(replay: Replay) -> list[dict[str, Any]]:
    labels, amounts = replay.labels, replay.amounts
    out = []
    for j, rule in enumerate(replay.candidate.rules.rules):
        hit = replay.candidate.fired[:, j]
        out.append(
            {
                "id": rule.id,
                "action": rule.action,
                "state": rule.state,
                "hits": int(hit.sum()),
                "served_hits": _served_hits(replay, rule.id),
                "fraud_caught": _count_amount(hit & labels, amounts),
                "legit_affected": _count_amount(hit & ~labels, amounts),
                "precision": _ratio(int((hit & labels).sum()), int(hit.sum())),
                "recall": _ratio(int((hit & labels).sum()), int(labels.sum())),
                "changes": changes(replay.served_ranks[hit], replay.candidate.ranks[hit]),
            }
        )
    return out


def daily(replay: Replay) -> list[dict[str, Any]]:
    """Per UTC day: rows, decisions made stricter and looser than served, candidate flags."""
    from datetime import UTC, datetime

    days = replay.event_ms // DAY_MS
    stricter = replay.candidate.ranks > replay.served_ranks
    looser = replay.candidate.ranks < replay.served_ranks
    out = []
    for day in np.unique(days):
        on = days == day
        out.append(
            {
                "day": datetime.fromtimestamp(int(day) * DAY_MS / 1000, tz=UTC).strftime("%Y-%m-%d"),
                "rows": int(on.sum()),
                "stricter": int((on & stricter).sum()),
                "looser": int((on & looser).sum()),
                "fraud": int((on & replay.labels).sum()),
            }
        )
    return out


def summarize(replay: Replay, policy: CostPolicy, *, context: dict[str, Any]) -> dict[str, Any]:
    """The whole backtest as a JSON-ready dict (also the input of the Markdown and HTML reports)."""
    labels, amounts = replay.labels, replay.amounts
    served = outcome(replay.served_ranks, labels, amounts, policy)
    candidate = outcome(replay.candidate.ranks, labels, amounts, policy)
    return {
        **context,
        "rows": replay.rows,
        "fraud": _count_amount(labels, amounts),
        "served_source": replay.served_source,
        "cost_policy": {"review_cost": policy.review_cost, "decline_fp_cost": policy.decline_fp_cost},
        "served": served,
        "candidate": candidate,
        "changed": int((replay.served_ranks != replay.candidate.ranks).sum()),
        "changes": changes(replay.served_ranks, replay.candidate.ranks),
        "cost_delta": round(candidate["cost"]["total"] - served["cost"]["total"], 2),
        "rules": per_rule(replay),
        "daily": daily(replay),
        "notes": list(replay.notes),
        "timings": {k: round(v, 3) for k, v in replay.timings.items()},
    }


def clean(value: Any) -> Any:
    """NaN and inf as null: the summary is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value
