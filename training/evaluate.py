"""Calibration, threshold choice and metrics: plain numpy/scikit-learn over score and label arrays.

Calibration is isotonic and stored as its knots, so the worker applies it with `np.interp` and no fitted
scikit-learn object is ever persisted (no pickle). Thresholds are chosen on the validation split, never on
the test split that the report's figures come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ThresholdPolicy = Literal["fpr", "cost"]


@dataclass(frozen=True)
class Calibration:
    """Isotonic map from raw model score to fraud probability, as interpolation knots."""

    x: list[float]
    y: list[float]

    def apply(self, raw: npt.ArrayLike) -> FloatArray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": self.x, "y": self.y}


def fit_calibration(raw: FloatArray, labels: BoolArray, max_knots: int = 200) -> Calibration:
    """Fit isotonic regression and keep at most `max_knots` knots (the step function's corners)."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(raw, labels.astype(np.float64))
    x = np.asarray(iso.X_thresholds_, dtype=np.float64)
    y = np.asarray(iso.y_thresholds_, dtype=np.float64)
    if len(x) > max_knots:
        idx = np.unique(np.linspace(0, len(x) - 1, max_knots).round().astype(int))
        x, y = x[idx], y[idx]
    if len(x) == 1:  # a constant model: keep np.interp well-defined
        x = np.array([0.0, 1.0])
        y = np.array([y[0], y[0]])
    x, y = _keep_ranking(x, y)
    return Calibration(x=[float(v) for v in x], y=[float(v) for v in y])


#: How far (in probability) the calibrated score may move to keep the raw score's order.
TIE_BREAK = 1e-6


def _keep_ranking(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Tilt the isotonic steps so the map is strictly increasing over the raw score's range [0, 1].

    Isotonic regression is a step function: every raw score of a step got one probability (59,000 distinct
    scores became about 50 on the handbook benchmark), so the ranking a reviewer's queue or card
    precision@k sees was full of ties the model never made, which cost about 0.03 average precision. Each
    value moves by at most `TIE_BREAK`, towards the raw score; knots at 0 and 1 extend the order past the
    validation set's extremes (np.interp clips there).
    """
    if x[0] > 0.0:
        x, y = np.concatenate([[0.0], x]), np.concatenate([[y[0]], y])
    if x[-1] < 1.0:
        x, y = np.concatenate([x, [1.0]]), np.concatenate([y, [y[-1]]])
    return x, y * (1.0 - TIE_BREAK) + TIE_BREAK * x


@dataclass(frozen=True)
class Thresholds:
    review: float
    decline: float
    policy: ThresholdPolicy
    detail: dict[str, float]


def threshold_at_fpr(scores: FloatArray, labels: BoolArray, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate on legitimate traffic is at most `target_fpr`."""
    legit = np.sort(scores[~labels])
    if len(legit) == 0:
        return 0.5
    k = int(np.floor(target_fpr * len(legit)))
    # scores strictly above the (n - k)-th legitimate score flag at most k legitimate transactions
    idx = len(legit) - k - 1
    return float(np.nextafter(legit[idx], np.inf)) if idx >= 0 else float(legit[0])


@dataclass(frozen=True)
class CostPolicy:
    """What decisions cost: `review_cost` per legitimate payment sent to an analyst, `decline_fp_cost` per
    good customer declined, and the amount of each fraud let through. The `cost` threshold policy
    minimises it; backtests report it."""

    review_cost: float = 5.0
    decline_fp_cost: float = 50.0


def flagging_cost(flagged: BoolArray, labels: BoolArray, amounts: FloatArray, fp_cost: float) -> float:
    """fp_cost x (legitimate flagged) + amount of fraud not flagged."""
    return fp_cost * float((flagged & ~labels).sum()) + float(np.where(labels & ~flagged, amounts, 0.0).sum())


def decision_cost(
    *, reviewed: BoolArray, declined: BoolArray, labels: BoolArray, amounts: FloatArray, policy: CostPolicy
) -> dict[str, float]:
    """The policy's cost of a set of decisions: legitimate reviews, legitimate declines, fraud approved."""
    legit_reviews = policy.review_cost * float((reviewed & ~declined & ~labels).sum())
    legit_declines = policy.decline_fp_cost * float((declined & ~labels).sum())
    missed = float(np.where(labels & ~reviewed & ~declined, amounts, 0.0).sum())
    return {
        "legit_reviews": legit_reviews,
        "legit_declines": legit_declines,
        "fraud_approved": missed,
        "total": legit_reviews + legit_declines + missed,
    }


def _min_cost_threshold(scores: FloatArray, labels: BoolArray, amounts: FloatArray, fp_cost: float) -> float:
    """Threshold minimising fp_cost x (legitimate flagged) + amount of fraud not flagged."""
    candidates = np.unique(np.quantile(scores, np.linspace(0.5, 1.0, 501)))
    best_t, best_cost = 1.0, float("inf")
    for t in candidates:
        cost = flagging_cost(scores >= t, labels, amounts, fp_cost)
        if cost < best_cost:
            best_t, best_cost = float(t), cost
    return best_t


def choose_thresholds(
    scores: FloatArray,
    labels: BoolArray,
    *,
    policy: ThresholdPolicy = "fpr",
    review_fpr: float = 0.01,
    decline_fpr: float = 0.001,
    amounts: FloatArray | None = None,
    review_cost: float = CostPolicy.review_cost,
    decline_fp_cost: float = CostPolicy.decline_fp_cost,
) -> Thresholds:
    """Pick the review and decline thresholds on calibrated scores (validation split).

    `fpr`: decline flags at most `decline_fpr` of legitimate traffic, review at most `review_fpr`.
    `cost`: review where it minimises analyst cost (`review_cost` per review) plus fraud let through;
    decline where it minimises the cost of insulting good customers (`decline_fp_cost` each) plus fraud
    let through. Amounts are the loss of a missed fraud.
    """
    if policy == "fpr":
        review = threshold_at_fpr(scores, labels, review_fpr)
        decline = max(threshold_at_fpr(scores, labels, decline_fpr), review)
        return Thresholds(review, decline, policy, {"review_fpr": review_fpr, "decline_fpr": decline_fpr})
    if amounts is None:
        raise ValueError("the cost policy needs the transaction amounts")
    review = _min_cost_threshold(scores, labels, amounts, review_cost)
    decline = max(_min_cost_threshold(scores, labels, amounts, decline_fp_cost), review)
    return Thresholds(review, decline, policy, {"review_cost": review_cost, "decline_fp_cost": decline_fp_cost})


def recall_at_fpr(scores: FloatArray, labels: BoolArray, fpr: float) -> float:
    if labels.all() or not labels.any():
        return float("nan")
    fprs, tprs, _ = roc_curve(labels, scores)
    return float(np.interp(fpr, fprs, tprs))


def precision_recall_at(scores: FloatArray, labels: BoolArray, threshold: float) -> dict[str, float]:
    flagged = scores >= threshold
    tp = int((flagged & labels).sum())
    fp = int((flagged & ~labels).sum())
    fn = int((~flagged & labels).sum())
    return {
        "threshold": threshold,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "flag_rate": float(flagged.mean()) if len(flagged) else float("nan"),
        "fpr": fp / int((~labels).sum()) if (~labels).any() else float("nan"),
    }


def card_precision_at_k_per_day(
    scores: FloatArray, labels: BoolArray, card_ids: npt.NDArray[Any], days: npt.NDArray[Any], k: int = 100
) -> float:
    """Mean over days of the share of fraudulent cards among the k cards with the highest daily score.

    The metric an investigation team lives by: each day they can look at k cards.
    """
    precisions: list[float] = []
    for day in np.unique(days):
        mask = days == day
        by_card: dict[Any, tuple[float, bool]] = {}
        for card, score, label in zip(card_ids[mask], scores[mask], labels[mask], strict=True):
            best, fraud = by_card.get(card, (-1.0, False))
            by_card[card] = (max(best, float(score)), fraud or bool(label))
        ranked = sorted(by_card.values(), key=lambda v: v[0], reverse=True)[:k]
        if ranked:
            precisions.append(sum(fraud for _, fraud in ranked) / len(ranked))
    return float(np.mean(precisions)) if precisions else float("nan")


def summarize(
    scores: FloatArray,
    labels: BoolArray,
    thresholds: Thresholds,
    *,
    card_ids: npt.NDArray[Any] | None = None,
    days: npt.NDArray[Any] | None = None,
    scenarios: npt.NDArray[Any] | None = None,
) -> dict[str, Any]:
    both = labels.any() and not labels.all()
    metrics: dict[str, Any] = {
        "rows": len(labels),
        "fraud_rate": float(labels.mean()) if len(labels) else float("nan"),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "average_precision": float(average_precision_score(labels, scores)) if both else float("nan"),
        "recall_at_1pct_fpr": recall_at_fpr(scores, labels, 0.01),
        "at_review": precision_recall_at(scores, labels, thresholds.review),
        "at_decline": precision_recall_at(scores, labels, thresholds.decline),
    }
    if card_ids is not None and days is not None:
        metrics["card_precision_at_100_per_day"] = card_precision_at_k_per_day(scores, labels, card_ids, days)
    if scenarios is not None:
        per: dict[str, dict[str, float]] = {}
        for name in sorted(set(scenarios.tolist())):
            mask = scenarios == name
            s, y = scores[mask], labels[mask]
            per[str(name)] = {
                "rows": int(mask.sum()),
                "fraud": int(y.sum()),
                "recall_at_review": float((s[y] >= thresholds.review).mean()) if y.any() else float("nan"),
                "recall_at_decline": float((s[y] >= thresholds.decline).mean()) if y.any() else float("nan"),
                "flag_rate_at_review": float((s >= thresholds.review).mean()),
            }
        metrics["per_scenario"] = per
    return metrics
