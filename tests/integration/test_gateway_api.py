"""The gateway's HTTP contract on a real broker: auth, validation, body limit, health, docs, readiness.

Scoring round trips with a worker are in tests/e2e; these need only Kafka (and a database for reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.main import create_app
from pipeline.db.migrate import upgrade_database
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.settings import Settings
from tests.fixtures.factories import make_transaction_dict
from tests.fixtures.kafka import Broker

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"


@pytest.fixture
async def client(kafka_broker: Broker, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    upgrade_database(sqlite_url)
    ensure_topics(kafka_broker.bootstrap, [TopicSpec("gw-api-transactions", 2), TopicSpec("gw-api-labels", 2)])
    settings = Settings.model_validate({
        "kafka": {"bootstrap": kafka_broker.bootstrap, "transactions_topic": "gw-api-transactions",
                  "labels_topic": "gw-api-labels"},
        "gateway": {"api_keys": f"{KEY},second-key-abcdef", "deadline_ms": 200, "max_body_bytes": 4096},
        "database": {"url": sqlite_url},
    })  # fmt: skip
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            await wait_ready(c)
            yield c


async def wait_ready(c: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    """The gateway connects to Kafka in the background, as an orchestrator would see: poll /readyz."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await c.get("/readyz")).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, "gateway never became ready"
        await asyncio.sleep(0.1)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/score", make_transaction_dict()),
        ("GET", "/v1/verdicts/tx-1", None),
        ("GET", "/v1/verdicts?card_id=c1", None),
        (
            "POST",
            "/v1/labels",
            {"transaction_id": "t1", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"},
        ),
    ],
)
@pytest.mark.parametrize(
    "headers", [{}, auth("wrong-key"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}]
)
async def test_every_business_endpoint_refuses_a_missing_or_wrong_key(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
async def test_health_metrics_and_docs_need_no_key(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text


async def test_any_configured_key_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/verdicts/unknown-tx", headers=auth("second-key-abcdef"))
    assert response.status_code == 404
    assert "unknown-tx" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"card_id": "4111 1111 1111 1111"}, "card_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_transactions_get_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/score", json={**make_transaction_dict(), **change}, headers=auth())
    assert response.status_code == 422
    assert field in response.json()["detail"]


async def test_missing_field_and_non_json_are_422(client: httpx.AsyncClient) -> None:
    tx = make_transaction_dict()
    del tx["merchant_id"]
    missing = await client.post("/v1/score", json=tx, headers=auth())
    assert missing.status_code == 422 and "merchant_id" in missing.json()["detail"]
    garbage = await client.post("/v1/score", content=b"{not json", headers=auth())
    assert garbage.status_code == 422 and "JSON" in garbage.json()["detail"]


async def test_a_since_before_year_one_in_utc_is_422_not_503(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/verdicts", params={"since": "0001-01-01T00:00:00+01:00"}, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "query.since"


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    tx = {**make_transaction_dict(), "merchant_category": "x" * 10_000}
    response = await client.post("/v1/score", json=tx, headers=auth())
    assert response.status_code == 413


async def test_timeout_answers_the_fallback_within_the_deadline(client: httpx.AsyncClient) -> None:
    """No worker runs here: the verdict never comes, so the configured fallback answers, flagged degraded."""
    response = await client.post("/v1/score", json=make_transaction_dict(), headers=auth())
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True and body["decision"] == "review"
    assert body["reasons"][0]["code"] == "timeout"
    assert body["latency_ms"] < 1000


async def test_labels_are_accepted_and_validated(client: httpx.AsyncClient) -> None:
    ok = await client.post(
        "/v1/labels",
        json={"transaction_id": "t1", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"},
        headers=auth(),
    )
    assert ok.status_code == 202
    bad = await client.post("/v1/labels", json={"transaction_id": "t1", "label": "maybe"}, headers=auth())
    assert bad.status_code == 422 and "label" in bad.json()["detail"]


async def test_readiness_fails_fast_when_kafka_is_gone(sqlite_url: str) -> None:
    from tests.fixtures.kafka import free_port

    upgrade_database(sqlite_url)
    settings = Settings.model_validate({
        "kafka": {"bootstrap": f"127.0.0.1:{free_port()}"},
        "gateway": {"api_keys": KEY, "deadline_ms": 200},
        "database": {"url": sqlite_url},
    })  # fmt: skip
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=5) as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            score = await c.post("/v1/score", json=make_transaction_dict(), headers=auth())
            assert score.status_code == 503
            assert "unavailable" in score.json()["detail"]
