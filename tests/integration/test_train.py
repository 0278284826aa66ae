"""`riskstream train` end to end on small data: sane metrics, a complete artifact, user data, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.features import FEATURE_CODE_VERSION, FEATURE_NAMES, compute_features, rows_from_frame
from pipeline.registry import current_version, load_model, read_metadata
from training.dataset import build_dataset, label_events
from training.generate import GeneratorConfig, generate

runner = CliRunner()


def test_train_writes_a_complete_sane_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = runner.invoke(app, ["train", "--transactions", "60000", "--days", "40", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    version = current_version(models)
    assert version is not None
    meta = read_metadata(models / version)
    assert meta.feature_names == list(FEATURE_NAMES) and meta.feature_code_version == FEATURE_CODE_VERSION
    test = meta.metrics["test"]
    assert test["average_precision"] > 10 * test["fraud_rate"], test
    assert test["roc_auc"] > 0.9
    assert {"account_takeover", "compromised_merchant", "stolen_card_spree"} <= set(test["per_scenario"])
    assert 0 < meta.thresholds["review"] <= meta.thresholds["decline"] <= 1
    for name in meta.report_files:
        path = models / version / name
        assert path.is_file()
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scenario_recall.png" in meta.report_files
    assert not list(models.glob(".tmp-*")), "no half-written versions left behind"
    assert (models / version / "model.ubj").read_bytes()[:1] == b"{"  # UBJSON, not a pickle
    model = load_model(models)
    assert model.score(np.zeros((2, len(FEATURE_NAMES)))).shape == (2,)


def test_training_features_are_the_stream_reference(tmp_path: Path) -> None:
    df = generate(GeneratorConfig(transactions=15000, days=20, seed=5))
    dataset = build_dataset(df, label_delay_days=7, label_features=False, processes=2)
    reference = compute_features(rows_from_frame(df))
    assert dataset.transaction_ids == reference.transaction_ids
    assert np.array_equal(dataset.matrix, reference.matrix, equal_nan=True)


def test_training_features_with_labels_are_the_stream_reference() -> None:
    df = generate(GeneratorConfig(transactions=15000, days=20, seed=6))
    labels = label_events(df, label_delay_days=7)
    assert len(labels) > 50
    dataset = build_dataset(df, label_delay_days=7, label_features=True, processes=2)
    reference = compute_features(rows_from_frame(df), labels)
    assert np.array_equal(dataset.matrix, reference.matrix, equal_nan=True)
    counts = dataset.matrix[:, FEATURE_NAMES.index("merchant_fraud_count_30d")]
    assert counts.max() >= 2, "labels reached the merchant features"


def test_train_on_a_users_csv_with_only_the_required_fields(tmp_path: Path) -> None:
    df = generate(GeneratorConfig(transactions=30000, days=40, seed=3))
    csv = tmp_path / "history.csv"
    df[["transaction_id", "timestamp", "amount", "currency", "card_id", "merchant_id", "is_fraud"]].to_csv(
        csv, index=False
    )
    models = tmp_path / "models"
    result = runner.invoke(app, ["train", "--data", str(csv), "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    assert current_version(models) is not None


def test_a_missing_label_column_is_a_clear_error(tmp_path: Path) -> None:
    csv = tmp_path / "no-labels.csv"
    pd.DataFrame({"transaction_id": ["a"], "timestamp": ["2026-11-01T00:00:00Z"], "amount": [1.0], "currency": ["EUR"],
                  "card_id": ["c"], "merchant_id": ["m"]}).to_csv(csv, index=False)  # fmt: skip
    result = runner.invoke(app, ["train", "--data", str(csv), "--models-dir", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "is_fraud" in result.output and "no-labels.csv" in result.output


@pytest.mark.parametrize("bad", ["feature_names", "feature_code_version"])
def test_a_model_for_other_features_is_refused(tmp_path: Path, trained_models_dir: Path, bad: str) -> None:
    import shutil

    from pipeline.registry import ModelError, activate

    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models, symlinks=True)
    version = current_version(models)
    assert version is not None
    other = models / (version + "-x")
    shutil.copytree(models / version, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["version"] = other.name
    meta[bad] = ["amount"] if bad == "feature_names" else "0-deadbeef"
    (other / "metadata.json").write_text(json.dumps(meta))
    activate(models, other.name)
    with pytest.raises(ModelError, match="feature"):
        load_model(models)
    result = runner.invoke(app, ["models", "activate", version, "--models-dir", str(models)])  # rollback
    assert result.exit_code == 0 and current_version(models) == version


def test_train_tune_uses_the_params_prequential_validation_chose(tmp_path: Path) -> None:
    from training.train import TrainConfig, train

    models = tmp_path / "models"
    # 40 days: the test split starts on day 32, room for two folds of 7 + 7 + 7 days before it
    result = train(TrainConfig(models_dir=models, transactions=20_000, days=40, seed=3, num_boost_round=20,
                               early_stopping_rounds=5, tune=True))  # fmt: skip
    meta = read_metadata(result.path)
    tuning = meta.params["tuning"]
    assert len(tuning["folds"]) == 2 and len(tuning["table"]) == 12
    assert sum(row["chosen"] for row in tuning["table"]) == 1
    for name, value in tuning["chosen"].items():
        assert meta.params[name] == value
    assert "tuning" in result.timings
    assert "Hyper-parameters by prequential validation" in (result.path / "report.md").read_text()
