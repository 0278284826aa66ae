"""`riskstream evaluate --profile handbook` end to end on a small simulation: files, figures, the model."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import typer
from typer.testing import CliRunner

from pipeline.registry import current_version, list_models, load_model
from tests.fixtures.cli import command_app
from training.commands.evaluate import register
from training.handbook_eval import PUBLISHED


def _cli() -> typer.Typer:
    return command_app(register)


def test_evaluate_writes_results_beside_the_published_figures_and_a_servable_model(tmp_path: Path) -> None:
    # 61 days from 2018-04-01: history fitted 04-11..05-02, validation 05-10..16, test 05-24..30
    args = ["evaluate", "--profile", "handbook", "--customers", "300", "--terminals", "500", "--days", "61",
            "--train-start", "2018-05-10", "--warmup-days", "10", "--out", str(tmp_path / "results"),
            "--models-dir", str(tmp_path / "models")]  # fmt: skip
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output

    [json_path] = (tmp_path / "results").glob("*-handbook.json")
    results = json.loads(json_path.read_text())
    assert results["test_set"]["train"] == ["2018-05-10", "2018-05-16"]
    assert results["test_set"]["test"] == ["2018-05-24", "2018-05-30"]
    assert results["test_set"]["frauds"] > 0
    assert set(results["results"]) == {"history", "handbook-week"}
    history = results["results"]["history"]
    assert history["training"]["fit"] == ["2018-04-11", "2018-05-02"]
    for kind in ("calibrated", "raw"):
        figures = history[kind]
        assert 0.5 < figures["roc_auc"] <= 1 and 0 < figures["average_precision"] <= 1
        assert len(figures["card_precision_at_100_per_day"]) == 7
        assert math.isclose(figures["card_precision_at_100"], sum(figures["card_precision_at_100_per_day"]) / 7)
    assert set(results["timings_seconds"]) >= {"generate", "features"}

    page = json_path.with_suffix(".md").read_text()
    for name in PUBLISHED:
        assert name in page
    assert "| riskstream, trained on the history before the delay (calibrated score, as served) |" in page

    # the history model is a model version the pipeline can serve, not activated
    models = tmp_path / "models"
    [metadata] = list_models(models)
    assert results["model_path"] == str(models / metadata.version)
    assert current_version(models) is None
    assert load_model(models, metadata.version).version == metadata.version


def test_evaluate_refuses_a_period_without_history_before_it(tmp_path: Path) -> None:
    args = ["evaluate", "--customers", "50", "--terminals", "80", "--days", "40", "--train-start", "2018-04-10",
            "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 2
    assert "not enough history" in result.output
    assert not list(tmp_path.iterdir())


def test_evaluate_reads_a_generated_file_as_it_simulates(tmp_path: Path) -> None:
    from pipeline.io import write_transactions
    from training.handbook import HandbookConfig, generate_handbook
    from training.handbook_eval import EvaluationConfig, load_history

    config = HandbookConfig(customers=60, terminals=90, days=12)
    write_transactions(generate_handbook(config), tmp_path / "hb.parquet")
    read = load_history(EvaluationConfig(simulator=config, data=tmp_path / "hb.parquet"))
    pd.testing.assert_frame_equal(read, load_history(EvaluationConfig(simulator=config)))


def test_tuning_chooses_the_history_params_on_folds_before_the_test_weeks_delay() -> None:
    from training.handbook import HandbookConfig
    from training.handbook_eval import EvaluationConfig, run_evaluation
    from training.handbook_report import markdown
    from training.protocol import split_dates
    from training.train import TrainConfig
    from training.tuning import TuningConfig

    dates = split_dates(datetime(2018, 5, 10, tzinfo=UTC))
    config = EvaluationConfig(
        simulator=HandbookConfig(customers=300, terminals=500, days=61), dates=dates, warmup_days=10, processes=1,
        train=TrainConfig(models_dir=Path("unused"), num_boost_round=40, early_stopping_rounds=5),
        tuning=TuningConfig(folds=4, grid={"max_depth": [2, 4]}, num_boost_round=20, early_stopping_rounds=5),
    )  # fmt: skip
    results = run_evaluation(config, log=lambda _: None).as_dict()

    tuning = results["tuning"]
    # the history's validation ends 05-16 (the test week starts 05-24): the folds validate up to there, no later,
    # and a fourth fold (training from 04-05) would start before the warm-up ends (04-11)
    assert [fold["test"] for fold in tuning["folds"]] == [
        ["2018-05-10", "2018-05-16"], ["2018-05-03", "2018-05-09"], ["2018-04-26", "2018-05-02"]
    ]  # fmt: skip
    assert tuning["cutoff"] == dates.train_end.isoformat() and dates.train_end < dates.test_start
    assert [row["params"] for row in tuning["table"]] == [{"max_depth": 2}, {"max_depth": 4}]
    assert results["results"]["history"]["training"]["tuned_params"] == tuning["chosen"]
    assert "tuned_params" not in results["results"]["handbook-week"]["training"]
    page = markdown(results)
    assert "prequential validation" in page and f"| **max_depth {tuning['chosen']['max_depth']}** |" in page
