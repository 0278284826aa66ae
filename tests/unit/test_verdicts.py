"""Verdicts from joined vectors: the reasons a flagged verdict carries, and their order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES
from pipeline.registry import LoadedModel, ModelMetadata
from pipeline.rules import RuleSet, load_rules
from pipeline.stages import Joined
from pipeline.verdicts import TOP_REASONS, build_verdicts
from tests.fixtures.factories import make_transaction_dict
from tests.unit.reason_model import row, train_booster

RULES = """rules:
  - id: burst
    description: many card transactions in an hour
    when: card_count_1h >= 8
    action: review
    state: enforce
    reason: "{card_count_1h:.0f} transactions on this card in 1 h"
  - id: would-decline
    description: trying a decline
    when: amount > 10
    action: decline
    state: shadow
    reason: amount over 10
"""


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    metadata = ModelMetadata(
        version="test",
        created_at="2026-12-06T00:00:00Z",
        feature_code_version=FEATURE_CODE_VERSION,
        feature_names=list(FEATURE_NAMES),
        data_fingerprint="test",
        params={},
        thresholds={"review": 0.999, "decline": 0.9999},  # the model alone flags nothing: the rule does
        calibration={"x": [0.0, 1.0], "y": [0.0, 1.0]},
    )
    return LoadedModel("test", metadata, train_booster(), np.array([0.0, 1.0]), np.array([0.0, 1.0]))


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(RULES)
    return load_rules(tmp_path)


def joined(vector: npt.NDArray[np.float64], **fields: Any) -> Joined:
    raw = orjson.dumps(make_transaction_dict(**fields)).decode()
    return Joined(str(fields.get("transaction_id", "t")), {"raw": raw, "t": 0, "in": 0, "h": {}}, list(vector), [])


def reasons_of(model: LoadedModel, rules: RuleSet, vector: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    [out] = build_verdicts([joined(vector)], model, rules, now_ms=0)
    verdict = orjson.loads(out.value)
    assert verdict["decision"] == "review"
    reasons: list[dict[str, Any]] = verdict["reasons"]
    return reasons


def test_acting_rules_come_first_then_the_model_strongest_first_then_shadow_rules(
    model: LoadedModel, rules: RuleSet
) -> None:
    reasons = reasons_of(model, rules, row(card_count_1h=9.0))
    kinds = [r["code"].split(":")[0] for r in reasons]
    assert kinds == ["rule", *["model"] * TOP_REASONS, "shadow"]
    assert reasons[0]["text"] == "9 transactions on this card in 1 h"  # the model's own card_count_1h is not repeated
    assert len({r["text"] for r in reasons}) == len(reasons)


def test_a_flagged_verdict_without_device_or_history_says_so_in_words(model: LoadedModel, rules: RuleSet) -> None:
    reasons = reasons_of(model, rules, row(card_count_1h=9.0, has_device=0.0, has_ip=0.0, card_history_count=0.0))
    texts = [r["text"] for r in reasons]
    assert not [t for t in texts if "missing" in t]
    assert "first transaction seen on this card" in texts
    assert "no device seen for this transaction" in texts
    assert len(set(texts)) == len(texts)
