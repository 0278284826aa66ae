"""The real processes as users run them: worker, sink and gateway on the real broker, driven over HTTP.

Covers the gateway's done-when: verdicts come back, the same id twice gives the same verdict and is
counted once, a stopped worker gives the fallback within the deadline; plus live model and rules reloads
and verdicts landing in the database through the sink.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import RiskstreamClient
from pipeline.db.migrate import upgrade_database
from pipeline.records import Verdict
from pipeline.registry import activate, current_version, read_metadata
from tests.fixtures.kafka import free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
KEY = "e2e-key-0123456789abcdef"
PROJECT_RULES = Path(__file__).resolve().parents[2] / "rules"


class Stack:
    def __init__(self, env: PipelineEnv, models: Path, rules: Path) -> None:
        self.env, self.models, self.rules = env, models, rules
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_web = free_port()
        env.extra.update({
            "RISKSTREAM_GATEWAY__API_KEYS": KEY, "RISKSTREAM_GATEWAY__PORT": str(self.port),
            "RISKSTREAM_GATEWAY__DEADLINE_MS": "2000", "RISKSTREAM_MODEL__DIR": str(models),
            "RISKSTREAM_MODEL__RELOAD_INTERVAL_SECONDS": "0.5", "RISKSTREAM_RULES__DIR": str(rules),
            "RISKSTREAM_WORKER__WEB_PORT": str(self.worker_web),
        })  # fmt: skip
        self.worker = RoleProcess("worker", env)
        self.sink = RoleProcess("sink", env, args=["--metrics-port", "0"])
        self.gateway = RoleProcess("gateway", env)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(40)}" for p in (self.worker, self.sink, self.gateway))


@pytest.fixture
async def stack(pipeline_env: PipelineEnv, trained_models_dir: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models, symlinks=True)
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_RULES, rules)
    upgrade_database(pipeline_env.extra["RISKSTREAM_DATABASE__URL"])
    s = Stack(pipeline_env, models, rules)
    for p in (s.worker, s.sink, s.gateway):
        p.start()
    try:
        async with httpx.AsyncClient(base_url=s.url, timeout=5) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, s.logs()
                await asyncio.sleep(0.2)
        # The worker joins its group and loads the model: wait for a first real verdict.
        async with RiskstreamClient(s.url, KEY, timeout_s=10) as client:
            deadline = time.monotonic() + 90
            while (await client.score(tx("warmup-" + str(time.monotonic())))).degraded:
                assert time.monotonic() < deadline, "no verdict from the worker\n" + s.logs()
        yield s
    finally:
        for p in (s.gateway, s.sink, s.worker):
            p.stop(timeout=15)


def tx(transaction_id: str, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "transaction_id": transaction_id, "timestamp": now.isoformat(), "amount": 25.0, "currency": "EUR",
        "card_id": f"card-{transaction_id}", "merchant_id": "m-e2e", "merchant_category": "grocery",
        "channel": "pos", "country": "FR", "card_country": "FR",
    }  # fmt: skip
    return base | fields


async def test_scores_are_idempotent_reasoned_and_stored(stack: Stack) -> None:
    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        original = tx("e2e-1")
        first = await client.score(original)
        assert not first.degraded and first.decision in ("approve", "review", "decline", "challenge")
        assert first.model_version == current_version(stack.models)
        # A retry sends the same transaction; the same id with other content is a conflicting duplicate (DLQ).
        again = await client.score(dict(original))
        assert again.model_dump() == first.model_dump(), "the same transaction must get the same verdict"

        # Card testing: many cards, one IP, small amounts, within a minute.
        burst = []
        for i in range(12):
            burst.append(await client.score(tx(f"e2e-ct-{i}", card_id=f"ct-card-{i}", amount=1.5, channel="ecom",
                                               ip="198.51.100.9", card_bin=f"4{i:05d}")))  # fmt: skip
        last = burst[-1]
        assert last.decision == "decline", last
        assert any("cards on this IP" in r.text for r in last.reasons), last.reasons

        # Sanctioned country: an enforced rule, with its reason.
        sanctioned = await client.score(tx("e2e-kp", country="KP"))
        assert sanctioned.decision == "decline"
        assert any(r.code == "rule:sanctioned-country" for r in sanctioned.reasons)

    # Counted once: the repeat did not add to the card's velocity.
    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        follow = await client.score(tx("e2e-1b", card_id="card-e2e-1"))
    assert follow.decision in ("approve", "review", "decline", "challenge")

    # The sink stores every verdict; the read API serves them.
    async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        deadline = time.monotonic() + 30
        while (response := await http.get("/v1/verdicts/e2e-ct-11")).status_code != 200:
            assert time.monotonic() < deadline, stack.logs()
            await asyncio.sleep(0.3)
        assert Verdict.model_validate(response.json()).decision == "decline"
        listed = (await http.get("/v1/verdicts", params={"card_id": "card-e2e-1"})).json()
        assert [v["transaction_id"] for v in listed] == ["e2e-1b", "e2e-1"] or len(listed) >= 1


async def test_model_swap_and_rules_reload_apply_to_the_next_verdicts(stack: Stack) -> None:
    old = current_version(stack.models)
    assert old is not None
    # A second version: the same artifact under a new name (training is covered elsewhere).
    new = old + "-b"
    shutil.copytree(stack.models / old, stack.models / new)
    meta_path = stack.models / new / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = new
    meta_path.write_text(json.dumps(meta))
    read_metadata(stack.models / new)
    activate(stack.models, new)

    old_rules = None
    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        deadline = time.monotonic() + 20
        i = 0
        while (verdict := await client.score(tx(f"swap-{i}"))).model_version != new:
            assert time.monotonic() < deadline, stack.logs()
            old_rules = verdict.rules_version
            i += 1
            await asyncio.sleep(0.2)
        old_rules = verdict.rules_version
        (stack.rules / "extra.yaml").write_text(
            "rules:\n  - id: big-amount\n    description: test\n    when: amount > 5000\n"
            "    action: review\n    state: enforce\n"
        )
        deadline = time.monotonic() + 20
        while (verdict := await client.score(tx(f"rules-{i}", amount=9000.0))).rules_version == old_rules:
            assert time.monotonic() < deadline, stack.logs()
            i += 1
            await asyncio.sleep(0.2)
        assert verdict.decision in ("review", "decline", "challenge")
        assert any(r.code == "rule:big-amount" for r in verdict.reasons) or verdict.decision == "decline"
        # A broken edit is refused and the previous rules keep serving.
        (stack.rules / "extra.yaml").write_text("rules:\n  - id: broken\n    when: amount >\n")
        await asyncio.sleep(2.0)
        after = await client.score(tx(f"rules-after-{i}"))
        assert after.rules_version == verdict.rules_version and not after.degraded
    assert "rules refused" in stack.worker.log_tail(200)


async def test_a_stopped_worker_gives_the_fallback_within_the_deadline(stack: Stack) -> None:
    stack.worker.stop()
    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        started = time.monotonic()
        verdict = await client.score(tx("no-worker"))
        elapsed = time.monotonic() - started
    assert verdict.degraded and verdict.decision == "review"
    assert verdict.reasons[0].code == "timeout"
    assert elapsed < 2.0 + 1.0


async def test_worker_and_gateway_metrics_parse_and_count_what_happened(stack: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        await client.score(tx("metrics-1"))
    async with httpx.AsyncClient(timeout=5) as http:
        worker = (await http.get(f"http://127.0.0.1:{stack.worker_web}/metrics")).text
        gateway = (await http.get(f"{stack.url}/metrics")).text
    worker_metrics = {f.name: f for f in text_string_to_metric_families(worker)}
    gateway_metrics = {f.name: f for f in text_string_to_metric_families(gateway)}
    verdicts = sum(s.value for s in worker_metrics["riskstream_worker_verdicts"].samples if s.name.endswith("_total"))
    assert verdicts >= 2
    assert any(s.labels.get("version") for s in worker_metrics["riskstream_worker_model_info"].samples)
    assert "riskstream_worker_decision_latency_seconds" in worker_metrics
    outcomes = {
        s.labels["outcome"]
        for s in gateway_metrics["riskstream_gateway_score_requests"].samples
        if "outcome" in s.labels
    }
    assert "verdict" in outcomes
    assert "riskstream_gateway_score_seconds" in gateway_metrics


async def labels_applied(worker_web: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{worker_web}/metrics")).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "riskstream_worker_labels_total" and s.labels.get("outcome") == "applied"
    )


async def test_a_posted_label_raises_the_merchant_and_card_fraud_rates_only_once_its_delay_has_passed(
    stack: Stack,
) -> None:
    from pipeline.features.definitions import LABEL_VISIBLE_AFTER_SECONDS

    merchant, card = "m-labelled", "card-labelled"
    base = datetime.now(UTC) - timedelta(minutes=30)
    reported = base + timedelta(minutes=5)
    visible = timedelta(seconds=LABEL_VISIBLE_AFTER_SECONDS)
    auth = {"Authorization": f"Bearer {KEY}"}
    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        await client.score(tx("lab-1", merchant_id=merchant, card_id=card, timestamp=base.isoformat()))
        async with httpx.AsyncClient(base_url=stack.url, headers=auth, timeout=5) as http:
            deadline = time.monotonic() + 30
            while (await http.get("/v1/verdicts/lab-1")).status_code != 200:  # stored by the sink
                assert time.monotonic() < deadline, stack.logs()
                await asyncio.sleep(0.3)
            # No merchant or card in the label: the gateway completes them from the stored verdict.
            posted = await http.post(
                "/v1/labels",
                json={"transaction_id": "lab-1", "label": "chargeback", "reported_at": reported.isoformat()},
            )
            assert posted.status_code == 202 and posted.json()["merchant_id"] == merchant, posted.text
        deadline = time.monotonic() + 30
        while await labels_applied(stack.worker_web) < 2:  # once for the merchant, once for the card
            assert time.monotonic() < deadline, stack.logs()
            await asyncio.sleep(0.3)
        at = {
            "before": reported - timedelta(seconds=30),
            "reported": reported + visible - timedelta(seconds=1),
            "visible": reported + visible,
        }
        verdicts = {
            name: await client.score(tx(f"lab-{name}", merchant_id=merchant, card_id=card, timestamp=when.isoformat()))
            for name, when in at.items()
        }
        other = await client.score(tx("lab-other", timestamp=(reported + 2 * visible).isoformat()))
    counts = {name: (v.features or {})["merchant_fraud_count_30d"] for name, v in verdicts.items()}
    assert counts == {"before": 0, "reported": 0, "visible": 1}, counts
    rates = {name: (v.features or {})["merchant_fraud_rate_30d"] or 0.0 for name, v in verdicts.items()}
    assert rates["visible"] > rates["reported"]
    assert (other.features or {})["merchant_fraud_count_30d"] == 0, "a label counts for its own merchant only"
    cards = {name: (v.features or {})["card_fraud_count_30d"] for name, v in verdicts.items()}
    assert cards == {"before": 0, "reported": 0, "visible": 1}, cards
    assert (other.features or {})["card_fraud_count_30d"] == 0, "a label counts for its own card only"


async def test_tail_and_the_example_consumer_show_the_pipelines_verdicts(stack: Stack) -> None:
    import os
    import signal
    import subprocess
    import sys

    async with RiskstreamClient(stack.url, KEY, timeout_s=10) as client:
        sanctioned = await client.score(tx("tail-kp", country="KP"))  # an enforced decline
        approved = await client.score(tx("tail-ok"))
    assert sanctioned.decision == "decline"
    env = stack.env.environ()
    root = Path(__file__).resolve().parents[2]
    tail = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pipeline.cli", "tail", "--from-beginning", "--json", "--decision", "decline",
         "--card", "card-tail-kp", "--max", "1"],
        env=env, capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    [line] = tail.stdout.splitlines()
    assert Verdict.model_validate_json(line).transaction_id == "tail-kp"

    out = stack.env.root / "downstream.log"
    with out.open("wb") as sink:
        consumer = subprocess.Popen(
            [sys.executable, "-u", str(root / "examples" / "downstream_consumer.py"), "--bootstrap",
             stack.env.bootstrap, "--topic", stack.env.topics["VERDICTS_TOPIC"], "--group", f"example-{stack.port}"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "tail-kp" not in out.read_text():
            assert time.monotonic() < deadline and consumer.poll() is None, out.read_text()
            await asyncio.sleep(0.2)
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(15)
    cases = out.read_text().splitlines()
    [case] = [c for c in cases if "tail-kp" in c]
    assert case.startswith("case for tail-kp: decline"), case
    assert not any("tail-ok:" in c for c in cases) or approved.decision != "approve", "approvals open no case"
