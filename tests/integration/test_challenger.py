"""A real worker scores a challenger activated while it runs, exactly as that model scores offline, and a
promotion makes the next verdicts name the new champion; no verdict mixes two models.

The challenger is the session's trained booster under another version with another calibration (scores
scaled by 0.6) and other thresholds: a different model as far as the registry and the worker can tell, so
a verdict's numbers say which model produced them. No rules (an empty rules folder): the verdict's scores
are then the models' own, comparable with offline scoring of the emitted features.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from pipeline.commands.models import register
from pipeline.features import FEATURE_NAMES
from pipeline.registry import METADATA_FILE, MODEL_FILE, activate, activate_challenger, current_version, load_model
from tests.fixtures.drift_traffic import drift_traffic
from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions

pytestmark = pytest.mark.integration

PER_PHASE = 200


def copy_model(trained: Path, target: Path, version: str, scale: float, review: float, decline: float) -> None:
    source = current_version(trained)
    assert source is not None
    (target / version).mkdir(parents=True)
    shutil.copyfile(trained / source / MODEL_FILE, target / version / MODEL_FILE)
    metadata = json.loads((trained / source / METADATA_FILE).read_text())
    calibration = metadata["calibration"]
    metadata.update(
        version=version,
        calibration={"x": calibration["x"], "y": [y * scale for y in calibration["y"]]},
        thresholds={**metadata["thresholds"], "review": review, "decline": decline},
    )
    (target / version / METADATA_FILE).write_text(json.dumps(metadata))


async def metric_versions(http: httpx.AsyncClient, url: str) -> dict[str, set[str]]:
    try:
        text = (await http.get(url)).text
    except httpx.TransportError:
        return {}
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("riskstream_worker_model_info", "riskstream_worker_challenger_info") and s.value == 1:
                out.setdefault(s.name, set()).add(s.labels["version"])
    return out


async def wait_for(worker: RoleProcess, url: str, model: str, challenger: str | None) -> None:
    """Until the worker's /metrics says it serves `model` with `challenger` (it swaps at its next poll)."""
    deadline = time.monotonic() + 30
    want = {"riskstream_worker_model_info": {model}}
    if challenger:
        want["riskstream_worker_challenger_info"] = {challenger}
    async with httpx.AsyncClient(timeout=5) as http:
        while (await metric_versions(http, url)) != want:
            assert worker.alive() and time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.3)


def offline(models: Path, version: str, verdicts: list[dict[str, Any]]) -> Any:
    matrix = np.asarray(
        [[math.nan if v["features"][n] is None else v["features"][n] for n in FEATURE_NAMES] for v in verdicts]
    )
    return load_model(models, version).score(matrix)


async def test_a_challenger_activated_live_scores_as_offline_and_a_promotion_switches_whole_batches(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], trained_models_dir: Path, tmp_path: Path
) -> None:
    models, rules = tmp_path / "models", tmp_path / "rules"
    rules.mkdir()
    copy_model(trained_models_dir, models, "v-champion", scale=1.0, review=0.5, decline=0.9)
    copy_model(trained_models_dir, models, "v-challenger", scale=0.6, review=0.02, decline=0.3)
    activate(models, "v-champion")
    web = free_port()
    url = f"http://127.0.0.1:{web}/metrics"
    pipeline_env.extra.update(
        RISKSTREAM_MODEL__DIR=str(models), RISKSTREAM_MODEL__RELOAD_INTERVAL_SECONDS="0.5",
        RISKSTREAM_RULES__DIR=str(rules), RISKSTREAM_WORKER__WEB_PORT=str(web),
    )  # fmt: skip
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    span = timedelta(hours=3)
    traffic = drift_traffic(3 * PER_PHASE, seed=3, start=datetime.now(UTC) - span, span=span)
    topics = pipeline_env.topics

    async def phase(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await produce_transactions(pipeline_env.bootstrap, topics["TRANSACTIONS_TOPIC"], records)
        ids = {r["transaction_id"] for r in records}
        seen = await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], ids, timeout_s=60,
                                    processes=[worker])  # fmt: skip
        return [seen[i][0] for i in sorted(ids)]

    before = await phase(traffic[:PER_PHASE])
    assert {v["model_version"] for v in before} == {"v-champion"} and not [v for v in before if "challenger" in v]
    np.testing.assert_allclose([v["score"] for v in before], offline(models, "v-champion", before), atol=1e-6)

    activate_challenger(models, "v-challenger")
    await wait_for(worker, url, "v-champion", "v-challenger")
    during = await phase(traffic[PER_PHASE : 2 * PER_PHASE])
    assert {v["model_version"] for v in during} == {"v-champion"}
    assert {v["challenger"]["version"] for v in during} == {"v-challenger"}
    champion_offline, challenger_offline = (
        offline(models, "v-champion", during),
        offline(models, "v-challenger", during),
    )
    np.testing.assert_allclose([v["score"] for v in during], champion_offline, atol=1e-6)
    np.testing.assert_allclose([v["challenger"]["score"] for v in during], challenger_offline, atol=1e-6)
    for v, score in zip(during, challenger_offline, strict=True):
        assert v["challenger"]["decision"] == ("decline" if score >= 0.3 else "review" if score >= 0.02 else "approve")
    assert not np.allclose(champion_offline, challenger_offline), "the two models must be told apart"

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["models", "promote", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    await wait_for(worker, url, "v-challenger", None)
    after = await phase(traffic[2 * PER_PHASE :])
    assert {v["model_version"] for v in after} == {"v-challenger"} and not [v for v in after if "challenger" in v]
    np.testing.assert_allclose([v["score"] for v in after], offline(models, "v-challenger", after), atol=1e-6)
