"""`riskstream drift` on stored history (real PostgreSQL): the amount features of a shifted traffic drift,
whether the verdicts were stored with their features or have them computed again from stored transactions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.commands.drift import register
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import save_decisions
from pipeline.drift import build_reference
from pipeline.features import FEATURE_NAMES
from pipeline.records import Transaction, Verdict
from pipeline.registry import METADATA_FILE, activate
from tests.fixtures.cli import command_app
from tests.fixtures.drift_traffic import AMOUNT_FEATURES, drift_traffic, offline_features

pytestmark = pytest.mark.integration

SCALE_FREE = frozenset({"card_amount_zscore_history"})
N = 3000


def models_with_reference(root: Path, start: datetime, span: timedelta) -> None:
    """A model version whose metadata carries a reference built from an unshifted sample (the command reads
    only the metadata)."""
    rows = offline_features(drift_traffic(N, seed=1, start=start, span=span))
    scores = np.random.default_rng(1).uniform(size=len(rows))
    metadata = {
        "version": "v-drift", "created_at": "2026-01-01T00:00:00+00:00", "feature_code_version": "test",
        "feature_names": list(FEATURE_NAMES), "data_fingerprint": "f", "params": {},
        "thresholds": {"review": 0.9, "decline": 0.99, "policy": "fpr"}, "calibration": {"x": [0], "y": [0]},
        "drift_reference": build_reference(rows, scores, 0.9).to_dict(),
    }  # fmt: skip
    (root / "v-drift").mkdir(parents=True)
    (root / "v-drift" / METADATA_FILE).write_text(json.dumps(metadata))
    (root / "v-drift" / "model.ubj").write_bytes(b"")
    activate(root, "v-drift")


def test_drift_command_reports_the_amount_features_of_shifted_stored_traffic(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    span = timedelta(hours=3)
    start = now - timedelta(days=2)
    models_with_reference(tmp_path / "models", start, span)
    records = drift_traffic(N, seed=2, start=start, span=span, shift_channel="ecom")
    features = offline_features(records)
    scores = np.random.default_rng(2).uniform(size=N)
    verdicts, transactions = [], []
    first_decided = now - timedelta(minutes=50)
    for i, (record, row) in enumerate(zip(records, features, strict=True)):
        tx = Transaction.model_validate(record, strict=False)
        transactions.append(tx)
        verdicts.append(
            Verdict(
                transaction_id=tx.transaction_id, decision="approve", score=float(scores[i]), model_version="v-drift",
                rules_version="r", event_time=tx.timestamp, decided_at=first_decided + i * timedelta(seconds=0.5),
                latency_ms=1.0, card_id=tx.card_id, merchant_id=tx.merchant_id, amount=tx.amount, currency="EUR",
                # every other verdict stored with its features, the others have them computed again
                features={n: (None if np.isnan(v) else float(v)) for n, v in zip(FEATURE_NAMES, row, strict=True)}
                if i % 2 == 0 else None,
            )
        )  # fmt: skip
    upgrade_database(database_url)
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        save_decisions(session=session, verdicts=verdicts, transactions=transactions)
        session.commit()
    engine.dispose()

    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", database_url)
    result = CliRunner().invoke(
        command_app(register), ["drift", "--since", "2h", "--models-dir", str(tmp_path / "models"), "--top", "0"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"verdicts: {N // 2} with stored features, {N // 2} with features computed again, 0 left out" in result.output
    )
    sections = re.split(r"^window ", result.output, flags=re.M)[1:]
    assert [s.split(":")[0] for s in sections] == ["range", "1h"]
    for section in sections:
        drifted = set(re.findall(r"^  (\S+)\s+PSI\s+\S+  DRIFT$", section, flags=re.M))
        assert drifted == AMOUNT_FEATURES - SCALE_FREE, section
    assert re.search(r"flag rate 0\.\d{4} \(training 0\.\d{4}\)", sections[0]), sections[0]
