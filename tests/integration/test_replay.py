"""`riskstream replay` into a running, caught-up pair of workers gives `riskstream features`' features.

A replay lands as a burst on workers that are caught up: before "caught up" was dated (pipeline.merge), the
partitions read first overtook the others and 3,450 of 20,000 replayed verdicts had features different from
the offline reference or none at all. The CLI does all of it here, as a user would.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.features import FEATURE_NAMES
from tests.fixtures.processes import PipelineEnv, RoleProcess

pytestmark = pytest.mark.integration


def cli(env: PipelineEnv, *args: str, timeout: float = 600) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env.environ(),
        check=True,
        timeout=timeout,
        capture_output=True,
    )


def wait_until_ready(workers: list[RoleProcess], timeout_s: float = 120) -> None:
    """Both workers have joined the group and been given partitions, and heartbeats have gone round."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert all(w.alive() for w in workers), [w.log_tail() for w in workers]
        logs = [w.log_path.read_text(errors="replace") if w.log_path.exists() else "" for w in workers]
        if all("Worker ready" in log for log in logs):
            time.sleep(3)  # the second worker's join moves partitions once more
            return
        time.sleep(0.5)
    raise AssertionError("workers not ready: " + "\n".join(w.log_tail() for w in workers))


@pytest.mark.parametrize(
    "n", [pytest.param(4_000, id="short"), pytest.param(20_000, id="soak", marks=pytest.mark.soak)]
)
def test_replay_into_running_workers_matches_the_offline_reference(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], tmp_path: Path, n: int
) -> None:
    history = tmp_path / "history.jsonl"
    cli(pipeline_env, "generate", "--transactions", str(n), "--days", "10", "--seed", "41", "--out", str(history))
    workers = [RoleProcess("worker", pipeline_env, name=f"worker-{x}").start() for x in ("a", "b")]
    role_processes.extend(workers)
    wait_until_ready(workers)

    verdicts_file, features_file = tmp_path / "verdicts.jsonl", tmp_path / "features.parquet"
    cli(pipeline_env, "replay", str(history), "--out", str(verdicts_file), "--with-features", "--timeout", "400")
    cli(pipeline_env, "features", str(history), "--out", str(features_file))

    offline = pd.read_parquet(features_file).set_index("transaction_id")
    stream: dict[str, dict[str, float | None]] = {}
    for line in verdicts_file.read_text().splitlines():
        verdict = json.loads(line)
        stream.setdefault(verdict["transaction_id"], verdict["features"])
    missing = sorted(set(offline.index) - set(stream))
    assert not missing, f"{len(missing)} transactions without a verdict, first: {missing[:5]}"
    wrong = []
    for tx_id, row in offline.iterrows():
        for name in FEATURE_NAMES:
            a, b = stream[str(tx_id)][name], row[name]
            a = math.nan if a is None else float(a)
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                wrong.append(f"{tx_id} {name}: stream={a} offline={b}")
    assert all(w.alive() for w in workers), [w.log_tail() for w in workers]
    assert not wrong, f"{len(wrong)} features differ, first: " + "\n".join(wrong[:10])
