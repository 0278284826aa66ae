"""Rules as a service through the gateway and the CLI, on a real broker and a real PostgreSQL: push, promote,
roll back, the versions and audit rows each change leaves, the release on the rules topic, refusals that
leave the serving version alone, the backtest a promotion to enforce may require, and model activations.

tests/integration/test_rules_workers.py shows running workers following the releases.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner

from api.main import create_app
from pipeline.cli import app as cli
from pipeline.db.audit import list_audit_entries
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.registry import current_version
from pipeline.rules.changes import record_backtest
from pipeline.rules.service import decode_release, promoted
from pipeline.settings import Settings
from tests.fixtures.kafka import Broker
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789"
RULES = """\
rules:
  - id: odd-merchant
    description: A merchant we watch
    when: tx.merchant_id == "m-odd"
    action: decline
    state: enforce
    reason: watched merchant
  - id: big-amount
    when: tx.amount > 5000
    action: review
    state: shadow
"""


@dataclass
class Gateway:
    client: httpx.AsyncClient
    settings: Settings
    sessions: Any

    async def post(self, path: str, body: dict[str, Any], key: str = ALICE) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    async def get(self, path: str, key: str = ALICE, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})

    def audit(self, kind: str | None = None) -> list[Any]:
        with self.sessions() as s:
            return list_audit_entries(session=s, kind=kind)

    async def releases(self) -> list[Any]:
        records = await read_topics(self.settings.kafka.bootstrap, [self.settings.kafka.rules_topic])
        return [decode_release(r.value) for r in records]


@pytest.fixture
def db(database_url: str) -> Iterator[Any]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def gateway_settings(bootstrap: str, database_url: str, **rules: Any) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    ensure_topics(bootstrap, [TopicSpec(f"rules-api-tx-{suffix}", 2)])
    return Settings.model_validate({
        "kafka": {"bootstrap": bootstrap, "transactions_topic": f"rules-api-tx-{suffix}",
                  "rules_topic": f"rules-api-{suffix}"},
        "gateway": {"api_keys": f"alice:{ALICE}, bob:{BOB}"},
        "database": {"url": database_url},
        "rules": rules,
    })  # fmt: skip


@pytest.fixture
async def make_gateway(kafka_broker: Broker, database_url: str, db: Any) -> AsyncIterator[Any]:
    managers: list[LifespanManager] = []

    async def start(**rules: Any) -> Gateway:
        settings = gateway_settings(kafka_broker.bootstrap, database_url, **rules)
        manager = await LifespanManager(create_app(settings)).__aenter__()
        managers.append(manager)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://gateway")
        return Gateway(client, settings, db)

    yield start
    for manager in managers:
        await manager.__aexit__(None, None, None)


async def test_push_promote_rollback_store_versions_audit_rows_and_releases(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway()
    broken = {"main.yaml": RULES.replace("action: review", "action: maybe")}
    refused = await gw.post("/v1/rules/versions", {"files": broken, "reason": "first"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid_rules" and "main.yaml:8 (rule big-amount)" in refused.json()["detail"]
    assert (await gw.get("/v1/rules/versions")).json() == []

    checked = await gw.post("/v1/rules/validate", {"files": {"main.yaml": RULES}})
    assert checked.status_code == 200 and [r["state"] for r in checked.json()["rules"]] == ["enforce", "shadow"]

    pushed = await gw.post("/v1/rules/versions", {"files": {"main.yaml": RULES}, "reason": "watch m-odd"})
    assert pushed.status_code == 201, pushed.text
    v1 = pushed.json()
    assert v1["version"] == 1 and v1["created_by"] == "alice" and v1["serving"] and v1["parent"] is None
    assert "state: audit" in v1["files"]["main.yaml"] and "enforce" not in v1["files"]["main.yaml"]

    too_far = await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "enforce", "reason": "now"})
    assert too_far.status_code == 409 and "one step at a time" in too_far.json()["detail"]
    unknown = await gw.post("/v1/rules/promote", {"rule_id": "nope", "to": "shadow", "reason": "x"})
    assert unknown.status_code == 404
    v2 = (
        await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "shadow", "reason": "watch"}, BOB)
    ).json()
    v3 = (await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "enforce", "reason": "act"})).json()
    assert (v2["version"], v2["parent"], v3["version"], v3["parent"]) == (2, 1, 3, 2)
    assert v3["files"]["main.yaml"] == v2["files"]["main.yaml"].replace("state: shadow", "state: enforce", 1)

    still = await gw.post("/v1/rules/versions", {"files": broken, "reason": "oops"})
    assert still.status_code == 422
    rolled = await gw.post("/v1/rules/rollback", {"version": 1, "reason": "too many declines"})
    assert rolled.status_code == 201, rolled.text
    v4 = rolled.json()
    assert v4["version"] == 4 and v4["files"] == v1["files"] and v4["content_hash"] == v1["content_hash"]
    assert (await gw.post("/v1/rules/rollback", {"version": 99, "reason": "x"})).status_code == 404
    assert (await gw.post("/v1/rules/rollback", {"version": 1, "reason": ""})).status_code == 422

    listed = (await gw.get("/v1/rules/versions")).json()
    assert [(v["version"], v["serving"]) for v in listed] == [(4, True), (3, False), (2, False), (1, False)]
    assert (await gw.get("/v1/rules/versions/3")).json()["served_as"] == f"v3-{v3['content_hash'][:12]}"

    entries = [(e.kind, e.actor, e.subject, e.from_version, e.to_version, e.reason) for e in gw.audit()]
    assert entries == [
        ("rules.push", "alice", "v1", None, "1", "watch m-odd"),
        ("rules.promote", "bob", "odd-merchant", "1", "2", "watch"),
        ("rules.promote", "alice", "odd-merchant", "2", "3", "act"),
        ("rules.rollback", "alice", "v1", "3", "4", "too many declines"),
    ]
    assert gw.audit("rules.promote")[1].details["to_state"] == "enforce"
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    through_api = (await gw.get("/v1/audit", kind="rules.rollback", since=since)).json()
    assert [e["to_version"] for e in through_api] == ["4"]
    assert (await gw.client.get("/v1/audit")).status_code == 401

    releases = await gw.releases()
    assert [r.version for r in releases] == [1, 2, 3, 4] and releases[-1].files == v1["files"]


async def test_promotion_to_enforce_waits_for_a_recorded_backtest_when_required(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(require_backtest_days=7)
    await gw.post("/v1/rules/versions", {"files": {"main.yaml": RULES}, "reason": "r", "keep_states": True})
    await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "audit", "reason": "start over"})
    await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "shadow", "reason": "watch"})
    refused = await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "enforce", "reason": "act"})
    assert refused.status_code == 409 and "--rules-version 3 --enforce odd-merchant" in refused.json()["detail"]

    serving = (await gw.get("/v1/rules/versions/3")).json()["files"]
    until = datetime.now(UTC)
    with gw.sessions() as s:  # a backtest too short, then one of the candidate over 7 days
        candidate = promoted(serving, "odd-merchant", "enforce")
        record_backtest(session=s, files=candidate, since=until - timedelta(days=2), until=until, actor="carol",
                        summary={"rows": 10, "changed": 1})  # fmt: skip
    assert (
        await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "enforce", "reason": "a"})
    ).status_code == 409
    with gw.sessions() as s:
        record_backtest(session=s, files=candidate, since=until - timedelta(days=7), until=until, actor="carol",
                        summary={"rows": 10, "changed": 1}, rules_version=3)  # fmt: skip
    done = await gw.post("/v1/rules/promote", {"rule_id": "odd-merchant", "to": "enforce", "reason": "backtested"})
    assert done.status_code == 201, done.text
    assert done.json()["files"] == candidate
    assert [e.actor for e in gw.audit("rules.backtest")] == ["carol", "carol"]


async def test_the_cli_changes_lists_diffs_and_audits(
    make_gateway: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw: Gateway = await make_gateway()
    for key, value in {"DATABASE__URL": database_url, "KAFKA__BOOTSTRAP": gw.settings.kafka.bootstrap,
                       "KAFKA__RULES_TOPIC": gw.settings.kafka.rules_topic}.items():  # fmt: skip
        monkeypatch.setenv(f"RISKSTREAM_{key}", value)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "main.yaml").write_text(RULES.replace("tx.amount > 5000", "tx.amount >"))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    bad = run("rules", "validate", str(folder))
    assert bad.exit_code == 2 and "main.yaml:9 (rule big-amount)" in bad.output
    assert run("rules", "push", str(folder), "--reason", "x", "--actor", "dave").exit_code == 2
    (folder / "main.yaml").write_text(RULES)
    assert run("rules", "validate", str(folder)).exit_code == 0
    pushed = await asyncio.to_thread(run, "rules", "push", str(folder), "--reason", "cli push", "--actor", "dave")
    assert pushed.exit_code == 0, pushed.output
    promoted_out = await asyncio.to_thread(run, "rules", "promote", "big-amount", "--to", "shadow", "--reason", "w")
    assert promoted_out.exit_code == 0 and "rules v2" in promoted_out.output
    listing = run("rules", "list")
    assert listing.exit_code == 0 and "cli push" in listing.output
    diff = run("rules", "diff", "1", "2")
    assert "big-amount: state 'audit' -> 'shadow'" in diff.output and "+    state: shadow" in diff.output
    shown = run("rules", "show", "2", "--export", str(tmp_path / "v2"))
    assert "big-amount" in shown.output and (tmp_path / "v2" / "main.yaml").read_text().count("shadow") == 1
    audit = run("audit", "--kind", "rules.", "--json")
    assert [line.count('"dave"') for line in audit.output.splitlines()] == [1, 0]


def test_a_model_activation_is_audited_and_never_fails_for_the_database(
    trained_models_dir: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = current_version(trained_models_dir)
    assert version is not None
    upgrade_database(sqlite_url)
    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", sqlite_url)
    args = ["models", "activate", version, "--models-dir", str(trained_models_dir), "--reason", "same again",
            "--actor", "erin"]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as s:
        [entry] = list_audit_entries(session=s, kind="model.activate")
    engine.dispose()
    assert (entry.actor, entry.subject, entry.from_version, entry.to_version) == ("erin", version, version, version)

    monkeypatch.setenv("RISKSTREAM_DATABASE__URL", "postgresql://nobody@127.0.0.1:9/none")
    from pipeline.settings import get_settings

    get_settings.cache_clear()
    down = CliRunner().invoke(cli, args)
    assert down.exit_code == 0 and "not recorded in the audit trail" in down.output
