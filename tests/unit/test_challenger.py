"""Champion / challenger: the challenger is scored and recorded beside the champion and never acts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from typer.testing import CliRunner

from pipeline import metrics
from pipeline.challenger import reads_score
from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES
from pipeline.records import Verdict
from pipeline.registry import (
    LoadedModel,
    ModelError,
    ModelMetadata,
    activate,
    activate_challenger,
    challenger_version,
    clear_challenger,
    current_version,
    load_model,
    promote,
    write_model,
)
from pipeline.rules import RuleSet, load_rules
from pipeline.scoring import ModelHolder
from pipeline.verdicts import build_verdicts
from tests.unit.reason_model import row, train_booster
from tests.unit.test_verdicts import joined

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "verdict.v1.json").read_text())

RULES = """rules:
  - id: burst
    description: many card transactions in an hour
    when: card_count_1h >= 8
    action: review
    state: enforce
  - id: big
    description: trying a decline
    when: amount > 10
    action: decline
    state: shadow
"""
SCORE_RULE = """rules:
  - id: high-score-night
    description: a high score at night
    when: score >= 0.6 and is_night == 1
    action: decline
    state: enforce
"""


def metadata(version: str, review: float, decline: float, y_top: float = 1.0) -> ModelMetadata:
    return ModelMetadata(
        version=version, created_at=f"2026-12-06T00:00:0{len(version) % 10}Z",
        feature_code_version=FEATURE_CODE_VERSION, feature_names=list(FEATURE_NAMES), data_fingerprint="test",
        params={}, thresholds={"review": review, "decline": decline}, calibration={"x": [0.0, 1.0], "y": [0.0, y_top]},
    )  # fmt: skip


@pytest.fixture(scope="module")
def booster() -> Any:
    return train_booster()


def loaded(booster: Any, meta: ModelMetadata) -> LoadedModel:
    knots = meta.calibration
    return LoadedModel(meta.version, meta, booster, np.asarray(knots["x"], float), np.asarray(knots["y"], float))


@pytest.fixture(scope="module")
def champion(booster: Any) -> LoadedModel:
    return loaded(booster, metadata("champion", review=0.999, decline=0.9999))


@pytest.fixture(scope="module")
def challenger(booster: Any) -> LoadedModel:
    # Half the champion's score, and thresholds that flag almost everything: its calls differ visibly.
    return loaded(booster, metadata("challenger", review=0.0, decline=0.45, y_top=0.5))


def rule_set(tmp_path: Path, text: str = RULES) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(text)
    return load_rules(tmp_path)


def batch() -> list[Any]:
    vectors = [row(), row(card_count_1h=9.0), row(has_device=0.0, card_history_count=0.0), row(is_night=1.0)]
    return [joined(v, transaction_id=f"t-{i}", amount=5.0 + 10 * i) for i, v in enumerate(vectors)]


def test_the_challenger_never_changes_the_verdict_nor_the_reply(
    champion: LoadedModel, challenger: LoadedModel, tmp_path: Path
) -> None:
    rules = rule_set(tmp_path)
    alone = build_verdicts(batch(), champion, rules, now_ms=1_000)
    both = build_verdicts(batch(), champion, rules, now_ms=1_000, challenger=challenger)
    assert [o.value for o in both] == [o.value for o in alone]  # the reply, byte for byte
    for a, b in zip(alone, both, strict=True):
        assert (b.decision, b.rules) == (a.decision, a.rules)
        record = orjson.loads(b.record_value())
        assert {k: v for k, v in record.items() if k != "challenger"} == orjson.loads(a.value)
        assert a.challenger is None and a.record_value() == a.value


def test_the_challenger_decides_with_its_own_thresholds_and_score(
    champion: LoadedModel, challenger: LoadedModel, tmp_path: Path
) -> None:
    rules = rule_set(tmp_path)
    rows = batch()
    outs = build_verdicts(rows, champion, rules, now_ms=0, challenger=challenger)
    matrix = np.asarray([j.vector for j in rows])
    expected = challenger.score(matrix)
    assert [o.decision for o in outs] == ["approve", "review", "approve", "approve"]  # champion: only the rule flags
    for out, score in zip(outs, expected, strict=True):
        call = orjson.loads(out.record_value())["challenger"]
        assert call["version"] == "challenger"
        assert call["score"] == pytest.approx(score, abs=1e-6)
        assert call["decision"] == ("decline" if score >= 0.45 else "review")  # review threshold 0: never approve


def test_a_rule_reading_the_score_is_evaluated_again_with_the_challengers_score(
    champion: LoadedModel, challenger: LoadedModel, tmp_path: Path
) -> None:
    rules = rule_set(tmp_path, SCORE_RULE)
    (tmp_path / "plain").mkdir()
    assert reads_score(rules) and not reads_score(rule_set(tmp_path / "plain"))
    night = [joined(row(is_night=1.0, has_device=0.0, card_history_count=0.0), transaction_id="n")]
    [out] = build_verdicts(night, champion, rules, now_ms=0, challenger=challenger)
    champion_score = float(champion.score(np.asarray([night[0].vector]))[0])
    challenger_score = float(challenger.score(np.asarray([night[0].vector]))[0])
    assert champion_score >= 0.6 > challenger_score, "the case needs the rule to fire for one model only"
    call = orjson.loads(out.record_value())["challenger"]
    assert out.decision == "decline" and [r["id"] for r in out.rules] == ["high-score-night"]
    assert call["decision"] == "review"  # the rule does not fire on the challenger's score: its own threshold


@pytest.mark.parametrize("with_challenger", [False, True])
def test_verdicts_meet_the_schema_with_and_without_a_challenger(
    champion: LoadedModel, challenger: LoadedModel, tmp_path: Path, with_challenger: bool
) -> None:
    validator = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
    for out in build_verdicts(
        batch(), champion, rule_set(tmp_path), challenger=challenger if with_challenger else None
    ):
        doc = orjson.loads(out.record_value())
        assert ("challenger" in doc) is with_challenger
        assert validator.is_valid(doc), list(validator.iter_errors(doc))
        parsed = Verdict.model_validate_json(out.record_value())  # the sink's parser accepts it
        assert (parsed.challenger is not None) is with_challenger
        assert validator.is_valid(orjson.loads(out.value)) and "challenger" not in orjson.loads(out.value)
    broken = {**orjson.loads(out.record_value()), "challenger": {"version": "x", "score": 2.0, "decision": "approve"}}
    assert not validator.is_valid(broken)


def test_the_challenger_metrics_count_its_decisions_and_agreement(
    champion: LoadedModel, challenger: LoadedModel, tmp_path: Path
) -> None:
    def sample(name: str, **labels: str) -> float:
        from prometheus_client import REGISTRY

        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {k: sample("riskstream_challenger_agreement_total", agree=k) for k in ("true", "false")}
    outs = build_verdicts(batch(), champion, rule_set(tmp_path), challenger=challenger)
    for out in outs:
        metrics.observe_verdict(out)
    agree = sum(o.challenger is not None and o.challenger.decision == o.decision for o in outs)
    assert sample("riskstream_challenger_agreement_total", agree="true") - before["true"] == agree
    assert sample("riskstream_challenger_agreement_total", agree="false") - before["false"] == len(outs) - agree


# --- pointers, promotion and the worker's holder ---------------------------------------------------------


@pytest.fixture
def models(tmp_path: Path, booster: Any) -> Path:
    root = tmp_path / "models"
    for version in ("v1", "v2"):
        write_model(root, booster, metadata(version, review=0.5, decline=0.9))
    bad = metadata("v3-other-features", review=0.5, decline=0.9)
    bad.feature_code_version = "elsewhere"
    write_model(root, booster, bad)
    activate(root, "v1")
    return root


def test_a_pointer_name_is_never_a_version(models: Path, booster: Any) -> None:
    with pytest.raises(ModelError, match="pointer"):
        write_model(models, booster, metadata("challenger", review=0.5, decline=0.9))
    with pytest.raises(ModelError):
        activate_challenger(models, "current")


def test_promote_makes_the_challenger_current_and_clears_it(models: Path) -> None:
    with pytest.raises(ModelError, match="champion"):
        activate_challenger(models, "v1")
    with pytest.raises(ModelError, match="no challenger"):
        promote(models)
    activate_challenger(models, "v2")
    assert (current_version(models), challenger_version(models)) == ("v1", "v2")
    assert promote(models) == ("v1", "v2")
    assert (current_version(models), challenger_version(models)) == ("v2", None)
    assert clear_challenger(models) is None


def test_the_holder_loads_swaps_refuses_and_drops_the_challenger(
    models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(models)
    assert holder.maybe_reload() and holder.model is not None and holder.challenger is None
    activate_challenger(models, "v2")
    assert holder.maybe_reload()
    champion = holder.model
    assert champion is not None and champion.version == "v1" and holder.challenger_for(champion) is holder.challenger
    with caplog.at_level(logging.INFO, logger="riskstream.scoring"):
        activate_challenger(models, "v3-other-features")
        assert holder.maybe_reload() and holder.challenger is None  # refused: no challenger at all
        assert not holder.maybe_reload()  # refused once, not again at every poll
    refusals = [r for r in caplog.records if "refused challenger model v3-other-features" in r.getMessage()]
    assert len(refusals) == 1 and holder.model is champion
    activate_challenger(models, "v2")
    holder.maybe_reload()
    activate(models, "v2")  # the instant of a promotion: both pointers name v2
    holder.maybe_reload()
    champion = holder.model
    assert champion is not None and champion.version == "v2" and holder.challenger_for(champion) is None
    clear_challenger(models)
    assert holder.maybe_reload() and holder.challenger is None


def test_a_batch_reads_no_challenger_of_another_pair(models: Path) -> None:
    holder = ModelHolder(models)
    activate_challenger(models, "v2")
    holder.maybe_reload()
    stale = load_model(models, "v1")  # a champion read before the pair was replaced
    assert holder.challenger_for(stale) is None


def test_the_cli_sets_clears_and_promotes_the_challenger(models: Path) -> None:
    import typer

    from pipeline.commands.models import register

    app = typer.Typer()
    register(app)
    run = CliRunner().invoke
    assert (
        run(app, ["models", "activate", "--challenger", "v3-other-features", "--models-dir", str(models)]).exit_code
        == 2
    )
    assert challenger_version(models) is None
    result = run(app, ["models", "activate", "--challenger", "v2", "--models-dir", str(models)])
    assert result.exit_code == 0 and challenger_version(models) == "v2", result.output
    assert run(app, ["models", "activate", "--challenger", "none", "--models-dir", str(models)]).exit_code == 0
    assert challenger_version(models) is None
    run(app, ["models", "activate", "--challenger", "v2", "--models-dir", str(models)])
    assert run(app, ["models", "deactivate-challenger", "--models-dir", str(models)]).exit_code == 0
    assert challenger_version(models) is None
    run(app, ["models", "activate", "--challenger", "v2", "--models-dir", str(models)])
    result = run(app, ["models", "promote", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    assert (current_version(models), challenger_version(models)) == ("v2", None)
    assert run(app, ["models", "promote", "--models-dir", str(models)]).exit_code == 2


def test_a_failing_challenger_costs_its_calls_not_the_verdicts(
    champion: LoadedModel, booster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = loaded(booster, metadata("broken", review=0.5, decline=0.9))
    broken.metadata.thresholds = {}  # no thresholds: its decision raises
    rules = rule_set(tmp_path)
    with caplog.at_level(logging.ERROR, logger="riskstream.verdicts"):
        outs = build_verdicts(batch(), champion, rules, now_ms=0, challenger=broken)
    assert [o.value for o in outs] == [o.value for o in build_verdicts(batch(), champion, rules, now_ms=0)]
    assert all(o.challenger is None for o in outs) and "challenger model broken failed" in caplog.text
