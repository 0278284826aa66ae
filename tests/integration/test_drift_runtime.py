"""A real worker on shifted traffic: its /metrics shows PSI > 0.2 for exactly the amount features.

The serving model is the session's trained booster with a drift reference built the training way
(`pipeline.drift.build_reference` on the offline features and the model's scores) from one sample of the
test traffic; the worker then scores another sample with one channel's amounts tripled, on the real broker.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.drift import PSI_ALERT, build_reference
from pipeline.registry import METADATA_FILE, MODEL_FILE, activate, current_version, load_model
from tests.fixtures.drift_traffic import AMOUNT_FEATURES, drift_traffic, offline_features
from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, produce_transactions

pytestmark = pytest.mark.integration

TRANSACTIONS = 3000
#: Scale-free by construction: a shifted amount moves the card's history spread along with it.
SCALE_FREE = frozenset({"card_amount_zscore_history"})


def model_with_reference(trained: Path, target: Path, start: datetime, span: timedelta) -> float:
    """The trained model as a new version whose drift reference is one unshifted sample of the traffic;
    returns the reference's flag rate."""
    version = current_version(trained)
    assert version is not None
    model = load_model(trained, version)
    rows = offline_features(drift_traffic(TRANSACTIONS, seed=1, start=start, span=span))
    reference = build_reference(rows, model.score(rows), float(model.thresholds["review"]))
    out = target / "drift-reference"
    out.mkdir(parents=True)
    shutil.copyfile(trained / version / MODEL_FILE, out / MODEL_FILE)
    metadata = json.loads((trained / version / METADATA_FILE).read_text())
    (out / METADATA_FILE).write_text(
        json.dumps({**metadata, "version": out.name, "drift_reference": reference.to_dict()})
    )
    activate(target, out.name)
    return reference.flag_rate


async def test_a_worker_on_shifted_traffic_exports_drift_for_exactly_the_amount_features(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], trained_models_dir: Path, tmp_path: Path
) -> None:
    span = timedelta(hours=3)
    start = datetime.now(UTC) - span
    training_flag_rate = model_with_reference(trained_models_dir, tmp_path / "models", start, span)
    web = free_port()
    pipeline_env.extra["RISKSTREAM_MODEL__DIR"] = str(tmp_path / "models")
    pipeline_env.extra["RISKSTREAM_WORKER__WEB_PORT"] = str(web)
    shifted = drift_traffic(TRANSACTIONS, seed=2, start=start, span=span, shift_channel="ecom")
    await produce_transactions(pipeline_env.bootstrap, pipeline_env.topics["TRANSACTIONS_TOPIC"], shifted)
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)

    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            try:
                text = (await http.get(f"http://127.0.0.1:{web}/metrics")).text
            except httpx.TransportError:  # not listening yet
                text = ""
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
            verdicts = sum(s.value for s in samples if s.name == "riskstream_worker_verdicts_total")
            if verdicts >= TRANSACTIONS:
                break
            await asyncio.sleep(0.5)

    by_window: dict[str, dict[str, float]] = {}
    for s in samples:
        if s.name == "riskstream_feature_psi":
            by_window.setdefault(s.labels["window"], {})[s.labels["feature"]] = s.value
    assert by_window.keys() == {"1h", "1d"}
    for window, values in by_window.items():
        drifted = {name for name, value in values.items() if value > PSI_ALERT}
        assert drifted == AMOUNT_FEATURES - SCALE_FREE, (window, sorted(values.items(), key=lambda kv: -kv[1])[:20])
    gauges = {(s.name, s.labels.get("window")): s.value for s in samples}
    assert math.isfinite(gauges[("riskstream_score_psi", "1h")])
    assert 0 <= gauges[("riskstream_flag_rate", "1h")] <= 1
    assert gauges[("riskstream_training_flag_rate", None)] == pytest.approx(training_flag_rate)
    assert "drift monitoring against model drift-reference" in worker.log_tail(400)
