"""Two running workers follow the rules topic: a rule pushed through the gateway and promoted to enforce is
enforced by both, on the partitions each owns, without a restart, with the new `rules_version` on every verdict.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from api.main import create_app
from pipeline import wire
from pipeline.db.migrate import upgrade_database
from pipeline.rules.engine import read_rule_files
from pipeline.rules.service import content_hash
from pipeline.settings import Settings
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions

pytestmark = pytest.mark.integration

KEY = "ops-key-0123456789"
FILE_RULES = """\
rules:
  - id: huge-amount
    when: tx.amount > 90000
    action: review
    state: audit
"""
WATCH = """\
rules:
  - id: watched-merchant
    description: A merchant under investigation
    when: tx.merchant_id == "m-watched"
    action: decline
    state: enforce
    reason: merchant under investigation
"""


def transactions(prefix: str, n: int, merchant: str, start: datetime) -> list[dict[str, Any]]:
    return [
        {"transaction_id": f"{prefix}-{i:03d}", "timestamp": (start + timedelta(seconds=i)).isoformat(),
         "amount": 25.0 + i, "currency": "EUR", "card_id": f"card-{prefix}-{i % 16}", "merchant_id": merchant,
         "country": "FR", "card_country": "FR", "channel": "ecom"}
        for i in range(n)
    ]  # fmt: skip


def join_owners(bootstrap: str, group: str, topic: str) -> dict[int, str]:
    """Partition of `topic` -> the consumer-group member that owns it (empty while the group is not stable)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        described = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    except (KafkaException, TimeoutError):  # the group coordinator is not there yet
        return {}
    if described.state != ConsumerGroupState.STABLE:
        return {}
    return {
        tp.partition: member.member_id
        for member in described.members
        for tp in (member.assignment.topic_partitions if member.assignment else [])
        if tp.topic == topic
    }


@pytest.fixture
async def gateway(pipeline_env: PipelineEnv, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    upgrade_database(database_url)
    settings = Settings.model_validate({
        "kafka": {"bootstrap": pipeline_env.bootstrap, "transactions_topic": pipeline_env.topics["TRANSACTIONS_TOPIC"],
                  "rules_topic": pipeline_env.topics["RULES_TOPIC"]},
        "gateway": {"api_keys": f"ops:{KEY}"},
        "database": {"url": database_url},
    })  # fmt: skip
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:  # fmt: skip
            yield client


async def test_a_rule_promoted_to_enforce_is_enforced_by_two_running_workers(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], gateway: httpx.AsyncClient, tmp_path: Any
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "local.yaml").write_text(FILE_RULES)
    pipeline_env.extra["RISKSTREAM_RULES__DIR"] = str(rules_dir)
    workers = [RoleProcess("worker", pipeline_env, name=f"worker-{n}").start() for n in ("a", "b")]
    role_processes.extend(workers)
    env = pipeline_env.topics
    group = f"riskstream-test-{pipeline_env.suffix}"
    deadline = time.monotonic() + 60
    while (
        len(set((owners := join_owners(pipeline_env.bootstrap, group, env["PARTIALS_TOPIC"])).values())) < 2
        or len(owners) < pipeline_env.partitions
    ):
        assert time.monotonic() < deadline, "\n".join(w.log_tail() for w in workers)
        assert all(w.alive() for w in workers), "\n".join(w.log_tail() for w in workers)
        await asyncio.sleep(1)

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    before = transactions(f"pre-{uuid.uuid4().hex[:6]}", 16, "m-watched", start)
    await produce_transactions(pipeline_env.bootstrap, env["TRANSACTIONS_TOPIC"], before)
    seen = await consume_by_key(pipeline_env.bootstrap, env["VERDICTS_TOPIC"], {t["transaction_id"] for t in before},
                                timeout_s=60, processes=workers)  # fmt: skip
    file_version = content_hash(read_rule_files(rules_dir))[:12]
    assert {seen[t["transaction_id"]][0]["rules_version"] for t in before} == {file_version}

    pushed = await gateway.post("/v1/rules/versions", json={"files": {"watch.yaml": WATCH}, "reason": "investigation"})
    assert pushed.status_code == 201, pushed.text
    for to in ("shadow", "enforce"):
        step = await gateway.post("/v1/rules/promote", json={"rule_id": "watched-merchant", "to": to, "reason": to})
        assert step.status_code == 201, step.text
    enforced = step.json()["served_as"]
    deadline = time.monotonic() + 30
    while not all(f"rules version {enforced} loaded" in w.log_tail(400) for w in workers):
        assert time.monotonic() < deadline, "\n".join(w.log_tail() for w in workers)
        await asyncio.sleep(0.5)

    after = transactions(f"post-{uuid.uuid4().hex[:6]}", 40, "m-watched", start + timedelta(minutes=1))
    await produce_transactions(pipeline_env.bootstrap, env["TRANSACTIONS_TOPIC"], after)
    verdicts = await consume_by_key(pipeline_env.bootstrap, env["VERDICTS_TOPIC"],
                                    {t["transaction_id"] for t in after}, timeout_s=60, processes=workers)  # fmt: skip
    owners = join_owners(pipeline_env.bootstrap, group, env["PARTIALS_TOPIC"])
    by_worker: dict[str, set[str]] = {}
    for tx_id in (t["transaction_id"] for t in after):
        verdict = verdicts[tx_id][0]
        assert verdict["rules_version"] == enforced, verdict
        assert verdict["decision"] == "decline", verdict
        assert {"id": "watched-merchant", "state": "enforce", "action": "decline"} in verdict["rules"]
        by_worker.setdefault(owners[wire.partition_for(tx_id.encode(), pipeline_env.partitions)], set()).add(tx_id)
    assert len(by_worker) == 2, "the verdicts did not come from both workers' partitions"
    assert all(w.alive() for w in workers)
