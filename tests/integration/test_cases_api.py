"""Review cases through the gateway on a real broker and a real PostgreSQL: the queue, claim, resolve, the
label each resolution sends (once), the relay that sends a label a crash left unsent, and the errors.

Cases are written with the repository here (as the sink does); tests/e2e/test_review_cases.py drives one
through a real worker and sink.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.orm import Session

from api.case_labels import CaseLabelRelay
from api.main import create_app
from pipeline.db.cases import list_cases, resolve_case
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import save_verdicts
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.records import Reason, Verdict, parse_label
from pipeline.settings import Settings
from tests.fixtures.kafka import Broker
from tests.integration.topic_reads import read_topics

pytestmark = pytest.mark.integration

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789"
ANONYMOUS = "unnamed-key-0123456789"
PAN = "4111111111111111"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: Any
    labels_topic: str
    bootstrap: str
    sessions: Any

    def session(self) -> Session:
        s: Session = self.sessions()
        return s


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def db(database_url: str) -> Iterator[Any]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
async def gateway(kafka_broker: Broker, database_url: str, db: Any) -> AsyncIterator[Gateway]:
    suffix = uuid.uuid4().hex[:8]
    labels_topic = f"cases-api-labels-{suffix}"
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(f"cases-api-tx-{suffix}", 2), TopicSpec(labels_topic, 2)])
    settings = Settings.model_validate({
        "kafka": {"bootstrap": kafka_broker.bootstrap, "transactions_topic": f"cases-api-tx-{suffix}",
                  "labels_topic": labels_topic},
        "gateway": {"api_keys": f"alice:{ALICE}, bob:{BOB},{ANONYMOUS}", "deadline_ms": 200},
        "database": {"url": database_url},
    })  # fmt: skip
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            deadline = asyncio.get_running_loop().time() + 30
            while not (await c.get("/readyz")).json()["kafka"]:
                assert asyncio.get_running_loop().time() < deadline, "gateway never connected to Kafka"
                await asyncio.sleep(0.1)
            yield Gateway(c, app, labels_topic, kafka_broker.bootstrap, db)


def verdict(tx_id: str, decision: str = "review", **overrides: Any) -> Verdict:
    fields: dict[str, Any] = {
        "transaction_id": tx_id, "decision": decision, "score": 0.8, "model_version": "m-1", "rules_version": "r-1",
        "event_time": T0, "decided_at": T0 + timedelta(milliseconds=20), "latency_ms": 2.0, "card_id": "card-7",
        "merchant_id": "m-3", "amount": 99.0, "currency": "EUR",
        "reasons": [Reason(code="rule:card-burst", text="7 transactions on this card in 5 min", kind="rule")],
        "features": {"card_count_5m": 7.0, "amount": 99.0},
    }  # fmt: skip
    return Verdict.model_validate(fields | overrides)


def store(gw: Gateway, *verdicts: Verdict) -> dict[str, int]:
    """Store verdicts as the sink does; returns the case id per transaction."""
    with gw.session() as s:
        save_verdicts(session=s, verdicts=list(verdicts))
        page = list_cases(session=s, limit=500)
    return {c.transaction_id: c.id for c in page.items}


async def labels_on_topic(gw: Gateway) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.value) | {"_key": r.key.decode()} for r in await read_topics(gw.bootstrap, [gw.labels_topic])
    ]


async def test_claim_resolve_sends_one_label_and_resolving_again_sends_none(gateway: Gateway) -> None:
    ids = store(gateway, verdict("tx-case-1"))
    case_id = ids["tx-case-1"]

    claimed = await gateway.client.post(f"/v1/cases/{case_id}/claim", headers=auth(ALICE))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["state"] == "claimed" and claimed.json()["assignee"] == "alice"
    taken = await gateway.client.post(f"/v1/cases/{case_id}/claim", headers=auth(BOB))
    assert taken.status_code == 409 and "claimed by alice" in taken.json()["detail"]
    not_yours = await gateway.client.post(f"/v1/cases/{case_id}/resolve", headers=auth(BOB),
                                          json={"resolution": "legitimate"})  # fmt: skip
    assert not_yours.status_code == 409

    body = {"resolution": "fraud", "note": "cardholder denies the payment"}
    resolved = await gateway.client.post(f"/v1/cases/{case_id}/resolve", headers=auth(ALICE), json=body)
    assert resolved.status_code == 200, resolved.text
    case = resolved.json()
    assert (case["state"], case["resolution"], case["note"]) == ("resolved", "fraud", "cardholder denies the payment")
    assert case["label_sent_at"] is not None and case["age_seconds"] >= 0

    again = await gateway.client.post(f"/v1/cases/{case_id}/resolve", headers=auth(ALICE), json=body)
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k != "age_seconds"} == {
        k: v for k, v in case.items() if k != "age_seconds"
    }
    other = await gateway.client.post(f"/v1/cases/{case_id}/resolve", headers=auth(ALICE),
                                      json={"resolution": "legitimate"})  # fmt: skip
    assert other.status_code == 409 and "resolved as fraud" in other.json()["detail"]

    labels = await labels_on_topic(gateway)
    assert len(labels) == 1, labels
    label = labels[0]
    assert label["_key"] == "tx-case-1"
    parsed = parse_label(orjson.dumps({k: v for k, v in label.items() if k != "_key"}))  # the wire format
    assert (parsed.transaction_id, parsed.label, parsed.card_id, parsed.merchant_id, parsed.source) == (
        "tx-case-1", "confirmed_fraud", "card-7", "m-3", f"case:{case_id}:alice")  # fmt: skip
    assert parsed.reported_at == datetime.fromisoformat(case["resolved_at"])


async def test_a_label_left_unsent_by_a_crash_is_sent_by_the_relay(gateway: Gateway) -> None:
    case_id = store(gateway, verdict("tx-crash", score=0.9))["tx-crash"]
    with gateway.session() as s:  # the gateway resolved and died before producing
        resolve_case(session=s, case_id=case_id, actor="bob", resolution="legitimate")
    assert await labels_on_topic(gateway) == []

    relay = CaseLabelRelay(gateway.app.state.gateway, grace_s=0)
    assert await relay.send_pending() == 1
    assert await relay.send_pending() == 0
    labels = await labels_on_topic(gateway)
    assert [(x["_key"], x["label"]) for x in labels] == [("tx-crash", "confirmed_legitimate")]

    # A retry by the client after the crash answers the stored case and sends nothing more.
    retry = await gateway.client.post(f"/v1/cases/{case_id}/resolve", headers=auth(BOB),
                                      json={"resolution": "legitimate"})  # fmt: skip
    assert retry.status_code == 200 and retry.json()["label_sent_at"] is not None
    assert len(await labels_on_topic(gateway)) == 1


async def test_queue_filters_sorts_and_pages(gateway: Gateway) -> None:
    ids = store(
        gateway,
        verdict("q-high", score=0.95, amount=20_000.0),
        verdict("q-mid", "challenge", score=0.6, amount=500.0),
        verdict("q-low", score=0.3, amount=3.0),
        verdict("q-approve", "approve", score=0.01),
    )
    assert set(ids) == {"q-high", "q-mid", "q-low"}
    await gateway.client.post(f"/v1/cases/{ids['q-mid']}/claim", headers=auth(ANONYMOUS))

    first = await gateway.client.get("/v1/cases", params={"limit": 2}, headers=auth(BOB))
    assert first.status_code == 200, first.text
    assert [c["transaction_id"] for c in first.json()["items"]] == ["q-high", "q-mid"]
    rest = await gateway.client.get("/v1/cases", params={"limit": 2, "cursor": first.json()["next_cursor"]},
                                    headers=auth(BOB))  # fmt: skip
    assert [c["transaction_id"] for c in rest.json()["items"]] == ["q-low"] and rest.json()["next_cursor"] is None

    async def ids_for(**params: Any) -> list[str]:
        answer = await gateway.client.get("/v1/cases", params=params, headers=auth(BOB))
        assert answer.status_code == 200, answer.text
        return [c["transaction_id"] for c in answer.json()["items"]]

    assert await ids_for(state="open") == ["q-high", "q-low"]
    assert await ids_for(decision="challenge") == ["q-mid"]
    assert await ids_for(min_priority=50) == ["q-high"]
    assert await ids_for(sort="age") == ["q-high", "q-mid", "q-low"]
    anonymous = (await gateway.client.get("/v1/cases", params={"state": "claimed"}, headers=auth(BOB))).json()
    assert anonymous["items"][0]["assignee"].startswith("key-") and ANONYMOUS not in str(anonymous)

    bad = await gateway.client.get("/v1/cases", params={"cursor": "nonsense"}, headers=auth(BOB))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.cursor"
    assert (await gateway.client.get("/v1/cases", params={"state": "lost"}, headers=auth(BOB))).status_code == 422


async def test_a_case_comes_with_its_verdict_and_the_cards_recent_verdicts(gateway: Gateway) -> None:
    ids = store(gateway, verdict("d-1"), verdict("d-0", "approve", event_time=T0 - timedelta(minutes=2)))
    answer = await gateway.client.get(f"/v1/cases/{ids['d-1']}", headers=auth(ALICE))
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert detail["case"]["transaction_id"] == "d-1" and detail["case"]["priority"] == 40
    assert detail["verdict"]["reasons"][0]["code"] == "rule:card-burst"
    assert detail["verdict"]["features"]["card_count_5m"] == 7.0
    assert [v["transaction_id"] for v in detail["card_recent"]] == ["d-1", "d-0"]
    missing = await gateway.client.get("/v1/cases/999999", headers=auth(ALICE))
    assert missing.status_code == 404


async def test_resolve_refuses_bad_bodies_without_echoing_a_card_number(gateway: Gateway) -> None:
    case_id = store(gateway, verdict("b-1"))["b-1"]
    url = f"/v1/cases/{case_id}/resolve"
    for body in ({"resolution": "maybe"}, {"resolution": "fraud", "extra": 1}, {"note": "x"},
                 {"resolution": "fraud", "note": f"card {PAN}"}):  # fmt: skip
        answer = await gateway.client.post(url, headers=auth(ALICE), json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert PAN not in answer.text
    form = await gateway.client.post(url, headers=auth(ALICE) | {"Content-Type": "text/plain"},
                                     content=b'{"resolution": "fraud"}')  # fmt: skip
    assert form.status_code == 415
    assert (await gateway.client.post("/v1/cases/999999/claim", headers=auth(ALICE))).status_code == 404
    case = (await gateway.client.get(f"/v1/cases/{case_id}", headers=auth(ALICE))).json()["case"]
    assert case["state"] == "open" and await labels_on_topic(gateway) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/cases"), ("GET", "/v1/cases/1"), ("POST", "/v1/cases/1/claim"), ("POST", "/v1/cases/1/resolve")],
)
async def test_cases_need_an_api_key(gateway: Gateway, method: str, path: str) -> None:
    for headers in ({}, auth("wrong-key")):
        answer = await gateway.client.request(method, path, headers=headers, json={"resolution": "fraud"})
        assert answer.status_code == 401, answer.text


async def test_openapi_documents_the_case_endpoints(gateway: Gateway) -> None:
    paths = (await gateway.client.get("/openapi.json")).json()["paths"]
    assert {"/v1/cases", "/v1/cases/{case_id}", "/v1/cases/{case_id}/claim", "/v1/cases/{case_id}/resolve"} <= set(
        paths
    )
    assert "requestBody" in paths["/v1/cases/{case_id}/resolve"]["post"]
