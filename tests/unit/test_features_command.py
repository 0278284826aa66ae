"""`riskstream features --labels`: the offline reference counts labels as the parity bench's reference does."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
import typer

from bench.backlog import history, offline_features
from pipeline.commands.features import run_features
from pipeline.features import FEATURE_NAMES

LABEL_FEATURES = [n for n in FEATURE_NAMES if n.startswith(("merchant_fraud", "card_fraud"))]


def _write_lines(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_labels_count_in_the_offline_reference(tmp_path: Path) -> None:
    records, labels, df = history(3000, 20, seed=5)
    assert labels, "the generated history has reported frauds"
    transactions = _write_lines(tmp_path / "tx.jsonl", records)
    label_file = _write_lines(tmp_path / "labels.jsonl", labels)

    run_features(transactions, tmp_path / "with.parquet", label_file)
    run_features(transactions, tmp_path / "without.parquet")
    with_labels = pd.read_parquet(tmp_path / "with.parquet").set_index("transaction_id")
    without = pd.read_parquet(tmp_path / "without.parquet").set_index("transaction_id")

    assert LABEL_FEATURES
    assert (with_labels[LABEL_FEATURES].fillna(0).to_numpy() != without[LABEL_FEATURES].fillna(0).to_numpy()).any()
    reference = offline_features(df, labels)
    columns = [FEATURE_NAMES.index(n) for n in LABEL_FEATURES]
    for tx_id, values in reference.items():
        got = with_labels.loc[tx_id, LABEL_FEATURES].to_numpy(dtype=float)
        want = [values[i] for i in columns]
        assert pd.Series(got).equals(pd.Series(want, dtype=float)), tx_id


def test_a_bad_label_line_names_its_line(tmp_path: Path) -> None:
    records, _, _ = history(50, 2, seed=1)
    transactions = _write_lines(tmp_path / "tx.jsonl", records)
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"transaction_id": "t1", "label": "chargeback", "reported_at": "2024-01-01T00:00:00Z"}\n{"x": 1}\n')
    with pytest.raises(typer.BadParameter, match=r"labels.jsonl:2"):
        run_features(transactions, tmp_path / "out.parquet", bad)
