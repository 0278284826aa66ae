"""A review verdict becomes a case an analyst resolves, and the resolution comes back as a label, through
the real worker and sink processes and the gateway: transaction -> review verdict -> case in PostgreSQL ->
claim -> resolve -> label on `labels` -> stored by the sink as training reads it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from api.main import create_app
from pipeline.cases import CasePage
from pipeline.db.cases import list_cases
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.orm import LabelRow
from pipeline.settings import Settings
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions

pytestmark = pytest.mark.integration

PROJECT_RULES = Path(__file__).resolve().parents[2] / "rules"
KEY = "analyst-key-0123456789"
REVIEW_RULE = """rules:
  - id: case-merchant
    description: test merchant whose payments always go to review
    when: tx.merchant_id == 'm-case'
    action: review
    state: enforce
    reason: merchant under watch
"""


def _cases(url: str) -> CasePage:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return list_cases(session=s)
    finally:
        engine.dispose()


def _labels(url: str) -> list[tuple[str, str, bool, str | None]]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            rows = s.execute(select(LabelRow.transaction_id, LabelRow.label, LabelRow.is_fraud, LabelRow.card_id))
            return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


@pytest.fixture
async def gateway(pipeline_env: PipelineEnv, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    topics = pipeline_env.topics
    settings = Settings.model_validate({
        "kafka": {"bootstrap": pipeline_env.bootstrap, "transactions_topic": topics["TRANSACTIONS_TOPIC"],
                  "labels_topic": topics["LABELS_TOPIC"], "verdicts_topic": topics["VERDICTS_TOPIC"]},
        "gateway": {"api_keys": f"dana:{KEY}"},
        "database": {"url": database_url},
    })  # fmt: skip
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://gw") as c,
    ):
        yield c


async def test_a_review_verdict_opens_a_case_whose_resolution_returns_as_a_label(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], database_url: str, tmp_path: Path,
    gateway: httpx.AsyncClient,
) -> None:  # fmt: skip
    upgrade_database(database_url)
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_RULES, rules)
    (rules / "case.yaml").write_text(REVIEW_RULE)
    pipeline_env.extra |= {"RISKSTREAM_DATABASE__URL": database_url, "RISKSTREAM_RULES__DIR": str(rules)}
    topics = pipeline_env.topics
    now = datetime.now(UTC) - timedelta(minutes=5)
    txs: list[dict[str, Any]] = [
        {"transaction_id": "case-tx-1", "timestamp": now.isoformat(), "amount": 35.0, "currency": "EUR",
         "card_id": "card-case", "merchant_id": "m-case"},
        {"transaction_id": "plain-tx-1", "timestamp": (now + timedelta(seconds=1)).isoformat(), "amount": 12.0,
         "currency": "EUR", "card_id": "card-plain", "merchant_id": "m-plain"},
    ]  # fmt: skip
    await produce_transactions(pipeline_env.bootstrap, topics["TRANSACTIONS_TOPIC"], txs)
    worker = RoleProcess("worker", pipeline_env).start()
    sink = RoleProcess("sink", pipeline_env, args=["--metrics-port", "0"]).start()
    role_processes.extend([worker, sink])
    verdicts = await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], {"case-tx-1", "plain-tx-1"},
                                    timeout_s=120, processes=[worker, sink])  # fmt: skip
    assert verdicts["case-tx-1"][0]["decision"] == "review", verdicts

    deadline = asyncio.get_running_loop().time() + 60
    while not (page := await asyncio.to_thread(_cases, database_url)).items:
        assert asyncio.get_running_loop().time() < deadline, sink.log_tail()
        await asyncio.sleep(0.2)
    [case] = page.items  # the approved transaction opened none
    assert (case.transaction_id, case.state, case.decision, case.card_id) == ("case-tx-1", "open", "review",
                                                                              "card-case")  # fmt: skip

    headers = {"Authorization": f"Bearer {KEY}"}
    detail = (await gateway.get(f"/v1/cases/{case.id}", headers=headers)).json()
    assert any(r["code"] == "rule:case-merchant" for r in detail["verdict"]["reasons"]), detail
    assert detail["transaction"]["merchant_id"] == "m-case"
    assert (await gateway.post(f"/v1/cases/{case.id}/claim", headers=headers)).json()["assignee"] == "dana"
    resolved = await gateway.post(f"/v1/cases/{case.id}/resolve", headers=headers,
                                  json={"resolution": "fraud", "note": "confirmed with the cardholder"})  # fmt: skip
    assert resolved.status_code == 200 and resolved.json()["label_sent_at"] is not None, resolved.text

    labels = await consume_by_key(pipeline_env.bootstrap, topics["LABELS_TOPIC"], {"case-tx-1"}, timeout_s=30)
    [label] = labels["case-tx-1"]
    assert (label["label"], label["card_id"], label["merchant_id"]) == ("confirmed_fraud", "card-case", "m-case")

    # The sink stores it as every label: `train --from-db` reads it as this transaction's fraud label.
    deadline = asyncio.get_running_loop().time() + 30
    while not (stored := await asyncio.to_thread(_labels, database_url)):
        assert asyncio.get_running_loop().time() < deadline, sink.log_tail()
        await asyncio.sleep(0.2)
    assert stored == [("case-tx-1", "confirmed_fraud", True, "card-case")]
