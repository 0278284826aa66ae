"""The challenger's side of a verdict: what a second model would have decided, recorded and never acted on.

The challenger scores the same feature matrix as the champion in one batched call, and its decision follows
the same precedence (`pipeline.rules.decide`) with the same rules and its own thresholds (from its
metadata). The rule hits are the champion's, reused: only a rule set that reads `score` is evaluated again
with the challenger's score. No reasons (no SHAP contributions) are computed for the challenger: that is
what keeps scoring both within 1.3x of scoring one (bench/challenger_cpu.py).

The verdict's `challenger` object `{version, score, decision}` is appended to the encoded verdict for the
verdicts topic only; the reply to the gateway is the champion's verdict byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from pipeline.registry import LoadedModel
from pipeline.rules import RuleSet, decide
from pipeline.rules.engine import RuleHit
from pipeline.rules.expr import referenced_names

#: Whether a rule set (by version) reads the model score: a handful of versions in a worker's life.
_READS_SCORE: dict[str, bool] = {}


def reads_score(rules: RuleSet) -> bool:
    """True when a rule's condition reads `score`, so its hits depend on which model scored."""
    known = _READS_SCORE.get(rules.version)
    if known is None:
        known = any("score" in referenced_names(rule.when) for rule in rules.rules)
        if len(_READS_SCORE) > 64:
            _READS_SCORE.clear()
        _READS_SCORE[rules.version] = known
    return known


@dataclass(frozen=True, slots=True)
class ChallengerCall:
    """The challenger's verdict on one transaction."""

    version: str
    #: Calibrated fraud probability after rule overrides, as the verdict's own `score`.
    score: float
    decision: str

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "score": float(self.score), "decision": self.decision}

    def append_to(self, verdict_json: bytes) -> bytes:
        """The encoded verdict with `"challenger": {...}` added as its last key (orjson ends an object
        with `}`), so the champion's encoding is reused, not redone."""
        return verdict_json[:-1] + b',"challenger":' + orjson.dumps(self.as_dict()) + b"}"


def challenge(
    challenger: LoadedModel,
    matrix: npt.NDArray[np.float64],
    txs: Sequence[Mapping[str, Any]],
    hits: Sequence[Sequence[RuleHit]],
    rules: RuleSet,
) -> list[ChallengerCall]:
    """The challenger's calls for a batch: `matrix`, `txs` and the champion's `hits` row by row."""
    scores = challenger.score(matrix)
    thresholds = challenger.thresholds
    again = reads_score(rules)
    out = []
    for i, score in enumerate(scores.tolist()):
        row_hits = rules.evaluate_row(matrix[i], txs[i], score) if again else hits[i]
        result = decide(score, thresholds, row_hits)
        out.append(ChallengerCall(challenger.version, result.score, result.decision))
    return out
