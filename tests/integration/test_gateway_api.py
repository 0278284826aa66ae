"""The gateway's HTTP contract on a real broker: auth, validation, body limit, health, docs, readiness.

Scoring round trips with a worker are in tests/e2e; these need only Kafka (and a database for reads).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from api.errors import install_error_handlers
from api.main import create_app
from pipeline.db.migrate import upgrade_database
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.records import TRANSACTION_ID_PATTERN, Label
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
    """The gateway connects to Kafka in the background: poll /readyz until it says Kafka is connected. No
    worker runs here, so it never says ready (`test_readiness_needs_a_verdict_within_the_deadline`)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (await c.get("/readyz")).json()["kafka"]:
        assert asyncio.get_running_loop().time() < deadline, "gateway never connected to Kafka"
        await asyncio.sleep(0.1)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


JSON = {"Content-Type": "application/json"}
LIMIT = 4096  # max_body_bytes above
PAN = "4111111111111111"


def label_body(**fields: Any) -> dict[str, Any]:
    return {"transaction_id": "t1", "label": "chargeback", "reported_at": "2026-11-01T00:00:00Z"} | fields


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
    # /readyz: 503 here, without a worker (next test), but an answer, not a 401.
    assert response.status_code == (503 if path == "/readyz" else 200), response.text


async def test_readiness_needs_a_verdict_within_the_deadline(client: httpx.AsyncClient) -> None:
    """Connected to Kafka but no worker: the probe transaction gets no verdict, so not ready, and why."""
    response = await client.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["kafka"] is True and body["status"] == "unavailable" and body["last_verdict_s"] is None
    assert "probe transaction got no verdict within the 200 ms deadline" in body["detail"], body


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
    garbage = await client.post("/v1/score", content=b"{not json", headers=auth() | JSON)
    assert garbage.status_code == 422 and "JSON" in garbage.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/score", "/v1/labels"])
async def test_a_repeated_field_name_is_422_and_no_pan_is_echoed(client: httpx.AsyncClient, path: str) -> None:
    """The validator kept the last of two `card_id`s while the raw body, first one included, went on to Kafka."""
    if path == "/v1/score":
        fields = orjson.dumps(make_transaction_dict(card_id="tok-1"))[1:-1]
        first = b'"card_id":"4111111111111111",'
    else:
        fields = b'"transaction_id":"t-1","label":"chargeback","reported_at":"2026-12-01T10:00:00Z","source":"x"'
        first = b'"source":"4111111111111111",'
    response = await client.post(path, content=b"{" + first + fields + b"}", headers=auth() | JSON)
    assert response.status_code == 422, response.text
    assert "duplicate field name" in response.json()["detail"]
    assert "4111111111111111" not in response.text


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


# --- bodies: bounded before they are read, JSON only ----------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/score", "/v1/labels"])
async def test_a_body_over_the_limit_is_413_declared_or_chunked(client: httpx.AsyncClient, path: str) -> None:
    body = orjson.dumps(label_body(source="x" * 60) | {"pad": "x" * (2 * LIMIT)})
    declared = await client.post(path, content=body, headers=auth() | JSON)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    chunked = await client.post(path, content=chunks(), headers=auth() | JSON)
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "payload_too_large" and str(LIMIT) in response.json()["detail"]


async def test_the_body_is_not_read_past_the_limit(client: httpx.AsyncClient) -> None:
    """At the ASGI level: a 50 MB chunked body is answered 413 after at most the limit plus one chunk read."""
    app = client._transport.app  # type: ignore[attr-defined]  # the app behind the ASGI transport
    chunk = b"x" * 65536
    total = 50 * 1024 * 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/labels", "raw_path": b"/v1/labels", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"gateway"), (b"authorization", f"Bearer {KEY}".encode()),
                    (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1234), "server": ("gateway", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= LIMIT + len(chunk), f"{pulled} bytes read for a limit of {LIMIT}"


@pytest.mark.parametrize("path", ["/v1/score", "/v1/labels"])
async def test_json_endpoints_take_json_and_nothing_else(client: httpx.AsyncClient, path: str) -> None:
    body = orjson.dumps(make_transaction_dict() if path == "/v1/score" else label_body())
    for refused in (None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"):
        headers = auth() | ({"Content-Type": refused} if refused else {})
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 415, (refused, response.text)
        assert response.json()["error"] == "unsupported_media_type"
    for accepted in ("application/json; charset=utf-8", "Application/JSON", "application/json"):
        response = await client.post(path, content=body, headers=auth() | {"Content-Type": accepted})
        assert response.status_code in (200, 202), (accepted, response.text)


async def test_the_labels_body_and_the_new_answers_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    labels = document["paths"]["/v1/labels"]["post"]
    schema = labels["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == set(Label.model_fields) and set(schema["required"]) == {
        "transaction_id", "label", "reported_at"
    }  # fmt: skip
    assert schema["properties"]["transaction_id"]["pattern"] == TRANSACTION_ID_PATTERN
    for path in ("/v1/score", "/v1/labels"):
        assert {"413", "415", "422"} <= set(document["paths"][path]["post"]["responses"]), path


# --- transaction ids round-trip through the URL ---------------------------------------------------------


async def test_a_transaction_id_must_be_readable_back_through_the_url(client: httpx.AsyncClient) -> None:
    """An id with "/" could be scored but never read back (GET /v1/verdicts/{id}): refused. Every character
    still allowed reaches the read route (404 from the handler, not a routing 404 or a 422)."""
    for transaction_id in ("a/b", "tx/2026/1"):
        tx = make_transaction_dict(transaction_id=transaction_id)
        scored = await client.post("/v1/score", json=tx, headers=auth())
        labelled = await client.post("/v1/labels", json=label_body(transaction_id=transaction_id), headers=auth())
        for response in (scored, labelled):
            assert response.status_code == 422 and "transaction_id" in response.json()["detail"], response.text
    transaction_id = "Az09._:@+=-x"
    scored = await client.post("/v1/score", json=make_transaction_dict(transaction_id=transaction_id), headers=auth())
    assert scored.status_code == 200, scored.text
    read = await client.get(f"/v1/verdicts/{transaction_id}", headers=auth())
    assert read.status_code == 404 and "no verdict stored" in read.json()["detail"], read.text


# --- no card number in any answer -----------------------------------------------------------------------

GROUPED = ["4111/1111/1111/1111", "4111:1111:1111:1111", "4111+1111+1111+1111", "4111=1111=1111=1111",
           "4111_1111_1111_1111", "4111/1111:1111_1111"]  # fmt: skip


def echoes_pan(text: str) -> bool:
    return re.search(r"4111[\s./:+=_-]{0,3}1111[\s./:+=_-]{0,3}1111[\s./:+=_-]{0,3}1111", text) is not None


@pytest.mark.parametrize("name", [PAN, *GROUPED])
async def test_a_pan_as_a_field_name_is_refused_and_not_echoed(client: httpx.AsyncClient, name: str) -> None:
    scored = await client.post("/v1/score", json=make_transaction_dict() | {name: 1}, headers=auth())
    labelled = await client.post("/v1/labels", json=label_body() | {name: 1}, headers=auth())
    for response in (scored, labelled):
        assert response.status_code == 422, response.text
        assert not echoes_pan(response.text) and "411111******1111" in response.text, response.text


@pytest.mark.parametrize("pan", GROUPED)
async def test_a_pan_grouped_with_any_separator_is_refused(client: httpx.AsyncClient, pan: str) -> None:
    scored = await client.post("/v1/score", json=make_transaction_dict(card_id=pan), headers=auth())
    labelled = await client.post("/v1/labels", json=label_body(card_id=f"c-{pan}"), headers=auth())
    for response in (scored, labelled):
        assert response.status_code == 422 and "card number" in response.text, response.text
        assert not echoes_pan(response.text), response.text


async def test_a_pan_in_the_path_is_not_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/verdicts/{PAN}", headers=auth())
    assert response.status_code == 404 and not echoes_pan(response.text), response.text


async def test_validation_errors_go_through_the_card_number_mask() -> None:
    """The handler for FastAPI's own validation errors masks field names and messages (no Kafka needed)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/probe")
    async def probe() -> None:
        raise RequestValidationError([{"loc": ("body", PAN), "msg": f"bad {GROUPED[0]}", "type": "value_error"}])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/probe")
    assert response.status_code == 422 and not echoes_pan(response.text), response.text
    assert response.json()["detail"][0]["field"] == "411111******1111"


async def test_stored_verdicts_are_read_without_the_challenger(client: httpx.AsyncClient, sqlite_url: str) -> None:
    """The database keeps the challenger's call for `models compare`; the API shows the champion's verdict only."""
    from datetime import UTC, datetime

    from pipeline.db.engine import make_engine, session_factory
    from pipeline.db.repository import save_verdicts
    from pipeline.records import ChallengerVerdict, Verdict

    when = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    verdict = Verdict(transaction_id="tx-ch", decision="review", score=0.7, model_version="m1", rules_version="r",
                      event_time=when, decided_at=when, latency_ms=1.0, card_id="card-ch",
                      challenger=ChallengerVerdict(version="m2", score=0.1, decision="approve"))  # fmt: skip
    engine = make_engine(sqlite_url)
    try:
        with session_factory(engine)() as session:
            save_verdicts(session=session, verdicts=[verdict])
    finally:
        engine.dispose()
    one = await client.get("/v1/verdicts/tx-ch", headers=auth())
    listed = await client.get("/v1/verdicts", params={"card_id": "card-ch"}, headers=auth())
    cases = await client.get("/v1/cases", headers=auth())
    assert one.status_code == listed.status_code == cases.status_code == 200, (one.text, listed.text, cases.text)
    detail = await client.get(f"/v1/cases/{cases.json()['items'][0]['id']}", headers=auth())
    assert detail.status_code == 200, detail.text
    for body in (one.json(), listed.json()[0], detail.json()["verdict"], detail.json()["card_recent"][0]):
        assert body["transaction_id"] == "tx-ch" and body.get("challenger") is None, body
