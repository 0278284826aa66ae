"""Fuzzing the running gateway from its own OpenAPI document with schemathesis.

A real `riskstream worker` and `riskstream gateway` run on the session broker, with the read API on the
real PostgreSQL fixture. Every operation of the gateway's OpenAPI document gets generated requests, valid
and invalid (schemathesis' positive and negative modes), sent with a valid key. No answer may be a server
error (5xx: the database and Kafka are up, so even a 503 is a bug here), every answer must be documented
(status code, content type, body schema), and both processes must still run afterwards. Generated
transactions are also made plausible (recent time, real currency...) so that the verdict path is fuzzed
too, not only the gateway's 422s.

The operations are listed at collection time from `create_app()` itself, so a new route is fuzzed without
editing this file; the requests are generated from the document the running process serves.
(`schemathesis.pytest.from_fixture` is not used: with pytest 9 it fails on the removed `Node._nodeid`.)
"""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from pipeline.currencies import ISO_4217
from pipeline.db.migrate import upgrade_database
from pipeline.settings import Settings
from tests.fixtures.kafka import Broker, free_port
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.processes import PipelineEnv, RoleProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEY = "fuzz-key-" + secrets.token_hex(12)
AUTH = {"Authorization": f"Bearer {KEY}"}
#: The checks every response must pass. Left out: stateful ones, and `positive_data_acceptance`, which
#: assumes every schema-valid body is accepted — a fraud gateway cannot promise that (the timestamp must
#: be recent, a Luhn-valid card_id is a PAN): those answers are 422s, and 422 is checked against its schema.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 40
DEADLINE_MS = 1000


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the gateway's OpenAPI document, from the app itself."""
    app = create_app(Settings.model_validate({"gateway": {"api_keys": "collect-only"}}))
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, item in paths.items() for method in item)


OPERATIONS = documented_operations()


@dataclass
class RunningGateway:
    url: str
    worker: RoleProcess
    gateway: RoleProcess

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(40)}" for p in (self.worker, self.gateway))

    def assert_alive(self) -> None:
        assert self.gateway.alive(), "the gateway exited\n" + self.logs()
        assert self.worker.alive(), "the worker exited\n" + self.logs()


def warmup_transaction() -> dict[str, Any]:
    return {
        "transaction_id": f"fuzz-warmup-{uuid.uuid4().hex[:8]}",
        "timestamp": datetime.now(UTC).isoformat(),
        "amount": 10.0,
        "currency": "EUR",
        "card_id": "fuzz-card",
        "merchant_id": "fuzz-merchant",
    }


def wait_for_real_verdict(gw: RunningGateway, timeout_s: float = 120.0) -> None:
    """Ready, then a non-degraded verdict: the worker has joined its group and loaded the model."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=gw.url, timeout=5, headers=AUTH) as http:
        while True:
            gw.assert_alive()
            assert time.monotonic() < deadline, "the stack never gave a real verdict\n" + gw.logs()
            try:
                if http.get("/readyz").status_code == 200:
                    answer = http.post("/v1/score", json=warmup_transaction())
                    if answer.status_code == 200 and not answer.json()["degraded"]:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.2)


@pytest.fixture(scope="module")
def running_gateway(
    kafka_broker: Broker,
    trained_models_dir: Path,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """One worker + gateway for the whole module (starting them takes most of the time)."""
    database = f"fuzz_{uuid.uuid4().hex[:12]}"
    postgres_server.start()
    postgres_server.create_database(database)
    database_url = postgres_server.url_for(database)
    upgrade_database(database_url)
    env = PipelineEnv(bootstrap=kafka_broker.bootstrap, partitions=2, root=tmp_path_factory.mktemp("fuzz"))
    port = free_port()
    env.extra.update(
        {
            "RISKSTREAM_MODEL__DIR": str(trained_models_dir),
            "RISKSTREAM_DATABASE__URL": database_url,
            "RISKSTREAM_GATEWAY__API_KEYS": KEY,
            "RISKSTREAM_GATEWAY__PORT": str(port),
            "RISKSTREAM_GATEWAY__DEADLINE_MS": str(DEADLINE_MS),
        }
    )
    env.create_topics()
    gw = RunningGateway(f"http://127.0.0.1:{port}", RoleProcess("worker", env), RoleProcess("gateway", env))
    gw.worker.start()
    gw.gateway.start()
    try:
        wait_for_real_verdict(gw)
        yield gw
    finally:
        gw.gateway.stop(timeout=15)
        gw.worker.stop(timeout=15)
        postgres_server.start()
        postgres_server.drop_database(database)


@pytest.fixture(scope="module")
def served_document(running_gateway: RunningGateway) -> dict[str, Any]:
    """The OpenAPI document as the running process serves it."""
    response = httpx.get(f"{running_gateway.url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def served_schema(served_document: dict[str, Any]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(copy.deepcopy(served_document))


BODYLESS_POSTS = {"/v1/cases/{case_id}/claim"}


def test_the_served_document_lists_every_operation_of_the_app(
    served_schema: schemathesis.BaseSchema, served_document: dict[str, Any]
) -> None:
    served, unreadable = [], []
    for result in served_schema.get_all_operations():
        if isinstance(result, Ok):
            served.append((result.ok().method.upper(), result.ok().path))
        else:
            unreadable.append(result.err())
    assert not unreadable, f"operations schemathesis cannot read: {unreadable}"
    assert sorted(served) == OPERATIONS
    assert ("POST", "/v1/score") in served
    # Every body is documented (so fuzzed as served): none is read raw behind the document's back. Claiming a
    # case is an action on the path alone: it takes no body.
    for method, path in served:
        if method == "POST" and path not in BODYLESS_POSTS:
            operation = served_document["paths"][path]["post"]
            assert "application/json" in operation.get("requestBody", {}).get("content", {}), path


SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_get_no_server_error_and_only_documented_answers(
    served_schema: schemathesis.BaseSchema,
    running_gateway: RunningGateway,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = served_schema[path][method]
    sent = 0

    @given(case=operation.as_strategy(mode))
    @SETTINGS
    def fuzz(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=running_gateway.url, headers=AUTH, checks=CHECKS, timeout=10)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE and not sent:
            pytest.skip(f"{method} {path} has no input that can be made invalid")
        raise
    running_gateway.assert_alive()


def make_plausible(body: dict[str, Any], currency: str) -> None:
    """What the schema cannot say: a time within 24 h of now, an ISO 4217 code, an IP address, lat with lon.

    A generated transaction almost never meets all of these, so without this nearly every one is refused
    with 422 and the worker is never reached.
    """
    body["timestamp"] = datetime.now(UTC).isoformat()
    body["currency"] = currency
    if body.get("ip") is not None:
        body["ip"] = "203.0.113.7"
    if (body.get("lat") is None) != (body.get("lon") is None):
        body.pop("lat", None)
        body.pop("lon", None)


def test_generated_plausible_transactions_are_scored_with_documented_answers(
    served_schema: schemathesis.BaseSchema, running_gateway: RunningGateway
) -> None:
    """Schema-valid transactions made plausible reach the worker: the verdict path is fuzzed, not only 422."""
    statuses: Counter[int] = Counter()

    @given(
        case=served_schema["/v1/score"]["POST"].as_strategy(GenerationMode.POSITIVE),
        currency=st.sampled_from(sorted(ISO_4217)),
    )
    @SETTINGS
    def fuzz(case: schemathesis.Case, currency: str) -> None:
        assert isinstance(case.body, dict)
        make_plausible(case.body, currency)
        response = case.call_and_validate(base_url=running_gateway.url, headers=AUTH, checks=CHECKS, timeout=10)
        statuses[response.status_code] += 1

    fuzz()
    assert statuses[200] >= MAX_EXAMPLES // 2, f"most plausible transactions must be scored: {dict(statuses)}"
    running_gateway.assert_alive()
