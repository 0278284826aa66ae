"""Security of the running stack: keys on every route, no PAN stored or logged, no secret logged, rules inert.

worker + sink + gateway run as real processes on the session broker and on the real PostgreSQL fixture,
as a dedicated database role whose password is distinctive (and needs URL quoting); the gateway has a
distinctive API key. Then:

- every route of the app but health, readiness, metrics and docs refuses a missing or wrong key (routes
  are read from `create_app()`, so a new one is covered without editing this file), and an unauthenticated
  request produces nothing to Kafka;
- transactions carrying a card number (as card_id, as merchant_id, inside other text fields) are refused,
  and after a valid one is stored, a `pg_dump` of the database and every process log hold no PAN digits;
- the API key and the database password appear in no log and no answer, even when the database is down;
- rule files with Python in them are refused with file, line and reason while the previous rules serve.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from psycopg import sql
from starlette.routing import BaseRoute, Mount, Route

from api.main import create_app
from pipeline.db.migrate import upgrade_database
from pipeline.settings import Settings
from tests.fixtures.factories import luhn_complete
from tests.fixtures.kafka import Broker, free_port
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.processes import PipelineEnv, RoleProcess, produce_transactions

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

API_KEY = "sec-key-" + secrets.token_hex(16)
#: Characters that must be quoted in a URL: a redaction that only knows the quoted or the raw form shows.
DB_PASSWORD = f"pw-{secrets.token_hex(10)}@/:%?#"
PROJECT_RULES = Path(__file__).resolve().parents[2] / "rules"
#: Routes open without a key (README: health, readiness, metrics and docs).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def new_pan() -> str:
    """A Visa-like card number no other test uses, so a hit can only come from the test that sent it."""
    return luhn_complete("4" + "".join(secrets.choice("0123456789") for _ in range(14)))


def pan_pattern(pan: str) -> re.Pattern[str]:
    """The PAN's digits with any separators a person uses between them (space . - / : + = _, mixed)."""
    return re.compile(r"[\s./:+=_-]{0,3}".join(pan))


def grouped(pan: str, *separators: str) -> str:
    """The PAN in four groups of four, the separators used in turn."""
    groups = [pan[i : i + 4] for i in range(0, 16, 4)]
    return groups[0] + "".join(separators[i % len(separators)] + g for i, g in enumerate(groups[1:]))


PAN = new_pan()
PAN_PATTERN = pan_pattern(PAN)


def walk_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(METHOD, path) of every route, through included routers and mounts; an unknown kind fails loudly."""
    for route in routes:
        if (router := getattr(route, "original_router", None)) is not None:  # an included APIRouter
            yield from walk_routes(router.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Mount):
            yield from walk_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield from ((method, prefix + route.path) for method in route.methods or () if method != "HEAD")
        else:
            raise TypeError(f"a kind of route this test cannot probe: {route!r}")


def app_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every route the gateway app serves, documented or not (e.g. /metrics)."""
    app = create_app(Settings.model_validate({"gateway": {"api_keys": "collect-only"}}))
    return sorted(set(walk_routes(app.routes)))


ROUTES = app_routes()
#: The analyst console signs in with a key through its form and then uses a session cookie, never a bearer key
#: (tests/unit/test_console_app.py); only its sign-in form is open.
CONSOLE_OPEN = frozenset({"/console/login"})
PROTECTED = [(m, p) for m, p in ROUTES if p not in OPEN_PATHS and not p.startswith("/console")]
CONSOLE = [(m, p) for m, p in ROUTES if p.startswith("/console") and p not in CONSOLE_OPEN]


def tx(transaction_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "transaction_id": transaction_id, "timestamp": datetime.now(UTC).isoformat(), "amount": 25.0,
        "currency": "EUR", "card_id": f"tok-{transaction_id}", "merchant_id": "m-sec", "channel": "ecom",
        "country": "FR", "card_country": "FR", "merchant_category": "grocery",
    }  # fmt: skip
    return base | fields


def label(transaction_id: str, **fields: Any) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "label": "chargeback", "reported_at": datetime.now(UTC).isoformat()} | (
        fields
    )


# --- the stack --------------------------------------------------------------------------------------------


@dataclass
class SecureDatabase:
    server: PostgresServer
    name: str
    role: str

    @property
    def url(self) -> str:
        return (
            f"postgresql+psycopg://{self.role}:{quote(DB_PASSWORD, safe='')}@127.0.0.1:{self.server.port}/{self.name}"
        )

    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.server.port, user=self.role, password=DB_PASSWORD, dbname=self.name
        )

    def dump(self) -> str:
        """Everything in the database, schema and data, as `pg_dump` writes it."""
        result = subprocess.run(
            [str(self.server.bindir / "pg_dump"), "--dbname", self.conninfo(), "--no-password"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@dataclass
class Stack:
    url: str
    env: PipelineEnv
    db: SecureDatabase
    rules: Path
    worker: RoleProcess
    sink: RoleProcess
    gateway: RoleProcess

    @property
    def processes(self) -> tuple[RoleProcess, ...]:
        return (self.worker, self.sink, self.gateway)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(40)}" for p in self.processes)


async def wait_for_real_verdict(stack: Stack, timeout_s: float = 120.0) -> dict[str, Any]:
    """Ready, then a non-degraded verdict: the worker has joined its group and loaded the model."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=stack.url, timeout=5, headers=auth()) as http:
        while True:
            dead = [p.name for p in stack.processes if not p.alive()]
            assert not dead, f"{dead} exited\n" + stack.logs()
            assert time.monotonic() < deadline, "no real verdict\n" + stack.logs()
            try:
                if (await http.get("/readyz")).status_code == 200:
                    answer = await http.post("/v1/score", json=tx(f"warmup-{uuid.uuid4().hex[:8]}"))
                    if answer.status_code == 200 and not answer.json()["degraded"]:
                        verdict: dict[str, Any] = answer.json()
                        return verdict
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def secure_db(postgres_server: PostgresServer) -> Iterator[SecureDatabase]:
    """A database owned by its own role (not the superuser), with the distinctive password, migrated."""
    suffix = uuid.uuid4().hex[:10]
    db = SecureDatabase(postgres_server, f"sec_{suffix}", f"riskstream_{suffix}")
    postgres_server.start()
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(db.role), sql.Literal(DB_PASSWORD))
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.name), sql.Identifier(db.role)))
    upgrade_database(db.url)
    yield db
    postgres_server.start()
    postgres_server.drop_database(db.name)
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.role)))


@pytest.fixture(scope="module")
async def stack(
    kafka_broker: Broker, trained_models_dir: Path, secure_db: SecureDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("security")
    rules = root / "rules"
    shutil.copytree(PROJECT_RULES, rules)
    env = PipelineEnv(bootstrap=kafka_broker.bootstrap, partitions=2, root=root)
    port = free_port()
    env.extra.update(
        {
            "RISKSTREAM_MODEL__DIR": str(trained_models_dir),
            "RISKSTREAM_RULES__DIR": str(rules),
            "RISKSTREAM_DATABASE__URL": secure_db.url,
            "RISKSTREAM_GATEWAY__API_KEYS": API_KEY,
            "RISKSTREAM_GATEWAY__PORT": str(port),
            "RISKSTREAM_GATEWAY__DEADLINE_MS": "2000",
            "RISKSTREAM_LOG_LEVEL": "DEBUG",  # the most a process ever writes: secrets must stay out even so
        }
    )
    env.create_topics()
    s = Stack(
        url=f"http://127.0.0.1:{port}",
        env=env,
        db=secure_db,
        rules=rules,
        worker=RoleProcess("worker", env),
        sink=RoleProcess("sink", env, args=["--metrics-port", "0"]),
        gateway=RoleProcess("gateway", env),
    )
    for p in s.processes:
        p.start()
    try:
        await wait_for_real_verdict(s)
        yield s
    finally:
        for p in reversed(s.processes):
            p.stop(timeout=15)


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def all_logs(*processes: RoleProcess, extra: tuple[Path, ...] = ()) -> dict[str, str]:
    logs = {p.name: p.log_path.read_text(errors="replace") for p in processes if p.log_path.exists()}
    logs.update({path.name: path.read_text(errors="replace") for path in extra if path.exists()})
    return logs


# --- keys ----------------------------------------------------------------------------------------------------

WRONG_CREDENTIALS: dict[str, dict[str, str]] = {
    "no header": {},
    "a bearer with no key": {"Authorization": "Bearer"},
    "another key": {"Authorization": "Bearer " + secrets.token_hex(20)},
    "the key with one character changed": {"Authorization": "Bearer " + API_KEY[:-1] + chr(ord(API_KEY[-1]) ^ 1)},
    "a prefix of the key": {"Authorization": "Bearer " + API_KEY[:-4]},
    "the key plus a suffix": {"Authorization": "Bearer " + API_KEY + "x"},
    "the key in upper case": {"Authorization": "Bearer " + API_KEY.upper()},
    "the key as Basic": {"Authorization": "Basic " + API_KEY},
    "the key with no scheme": {"Authorization": API_KEY},
    "the key in X-API-Key": {"X-API-Key": API_KEY},
}  # fmt: skip


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "probe-id", path)


def test_the_open_routes_are_exactly_health_readiness_metrics_and_docs() -> None:
    """A new route is protected unless it is added here on purpose."""
    assert {p for _, p in ROUTES} - {p for _, p in PROTECTED} - {p for _, p in CONSOLE} <= OPEN_PATHS | CONSOLE_OPEN
    assert ("POST", "/v1/score") in PROTECTED and ("GET", "/metrics") in ROUTES
    assert ("GET", "/console/queue") in CONSOLE and ("POST", "/console/cases/{case_id}/resolve") in CONSOLE


@pytest.mark.parametrize(("method", "path"), CONSOLE, ids=[f"{m} {p}" for m, p in CONSOLE])
async def test_every_console_route_refuses_a_request_without_a_session_even_with_the_key(
    method: str, path: str
) -> None:
    """Pages send the browser to the sign-in form, actions are refused; the right bearer key opens nothing."""
    app = create_app(Settings.model_validate({"gateway": {"api_keys": API_KEY}}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        for headers in ({}, auth()):
            response = await http.request(method, concrete(path).replace("probe-id", "1"), headers=headers)
            if method == "GET":
                assert response.status_code == 303, f"{method} {path}: {response.status_code}"
                assert response.headers["location"].startswith("/console/login?next=")
            else:
                assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert API_KEY not in response.text


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_every_protected_route_refuses_a_missing_or_wrong_key(stack: Stack, method: str, path: str) -> None:
    body = tx(f"unauth-{uuid.uuid4().hex[:8]}") if method in ("POST", "PUT", "PATCH") else None
    async with httpx.AsyncClient(base_url=stack.url, timeout=5) as http:
        for what, headers in WRONG_CREDENTIALS.items():
            response = await http.request(
                method, concrete(path), json=body, headers=headers, params={"api_key": API_KEY}
            )
            assert response.status_code == 401, f"{method} {path} with {what}: {response.status_code} {response.text}"
            assert response.headers.get("www-authenticate") == "Bearer"
            assert API_KEY not in response.text
        # The right key is accepted (any answer but 401), so the refusals above are about the key.
        accepted = await http.request(method, concrete(path), json=body, headers=auth())
        assert accepted.status_code != 401, accepted.text


@pytest.mark.parametrize("path", sorted({p for _, p in ROUTES if p in OPEN_PATHS}))
async def test_health_readiness_metrics_and_docs_answer_without_a_key(stack: Stack, path: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=5) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text


async def read_ids(bootstrap: str, topic: str, until: str, timeout_s: float = 30.0) -> set[str]:
    """Every transaction_id on `topic` from the start, read until `until` shows up."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    ids: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while until not in ids:
            assert time.monotonic() < deadline, f"{until} never reached {topic}"
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    try:
                        ids.add(str(orjson.loads(m.value)["transaction_id"]))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
    finally:
        await consumer.stop()
    return ids


async def test_requests_without_a_valid_key_produce_nothing_to_kafka(stack: Stack) -> None:
    probe = f"unauth-kafka-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.url, timeout=5) as http:
        for headers in WRONG_CREDENTIALS.values():
            assert (await http.post("/v1/score", json=tx(probe), headers=headers)).status_code == 401
            assert (await http.post("/v1/labels", json=label(probe), headers=headers)).status_code == 401
        marker = f"authorized-{uuid.uuid4().hex[:8]}"
        assert (await http.post("/v1/score", json=tx(marker), headers=auth())).status_code == 200
        assert (await http.post("/v1/labels", json=label(marker), headers=auth())).status_code == 202
    topics = stack.env.topics
    for topic in (topics["TRANSACTIONS_TOPIC"], topics["LABELS_TOPIC"]):
        ids = await read_ids(stack.env.bootstrap, topic, until=marker)
        assert probe not in ids, f"an unauthenticated request reached {topic}"


# --- no PAN anywhere -----------------------------------------------------------------------------------

PAN_CARRIERS: dict[str, dict[str, str]] = {
    "card_id is the PAN": {"card_id": PAN},
    "merchant_id is the PAN": {"merchant_id": PAN},
    "card_id is the PAN with spaces": {"card_id": " ".join(PAN[i : i + 4] for i in range(0, 16, 4))},
    "customer_id is the PAN with dashes": {"customer_id": "-".join(PAN[i : i + 4] for i in range(0, 16, 4))},
    "merchant_id contains the PAN": {"merchant_id": f"m-{PAN}"},
    "card_id starts with the PAN": {"card_id": f"{PAN}-x"},
    "device_id contains the PAN": {"device_id": f"dev:{PAN}"},
    "merchant_category is the PAN": {"merchant_category": PAN},
    "transaction_id contains the PAN": {"transaction_id": f"tx-{PAN}"},
    **{f"card_id is the PAN grouped with {s!r}": {"card_id": grouped(PAN, s)} for s in "/:+=_"},
    "customer_id is the PAN with mixed separators": {"customer_id": grouped(PAN, "/", ":", "_")},
    "device_id contains the PAN grouped with slashes": {"device_id": f"dev:{grouped(PAN, '/')}"},
    "a field named with the PAN": {PAN: "x"},
    "a field named with the grouped PAN": {grouped(PAN, "/", ":"): 1},
}


async def wait_stored(
    db: SecureDatabase, transaction_ids: set[str], tables: tuple[str, ...] = ("transactions", "verdicts")
) -> None:
    """Until the sink has stored every id in every one of `tables`."""
    deadline = time.monotonic() + 60
    query = sql.SQL("SELECT transaction_id FROM {}")
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        while True:
            stored = {t: {row[0] for row in conn.execute(query.format(sql.Identifier(t)))} for t in tables}
            missing = {t: transaction_ids - ids for t, ids in stored.items() if transaction_ids - ids}
            if not missing:
                return
            assert time.monotonic() < deadline, f"never stored: {missing}"
            await asyncio.sleep(0.3)


def where_the_pan_is(stack: Stack, pattern: re.Pattern[str], stored_id: str) -> dict[str, list[str]]:
    """Database rows (all of `pg_dump`) and log lines (every process, PostgreSQL's too) matching `pattern`."""
    dump = stack.db.dump()
    assert stored_id in dump, "the dump holds what the sink stored (so the search can hit)"
    texts = {"database": dump} | all_logs(*stack.processes, extra=(stack.db.server.log_file,))
    found = {where: [ln[:200] for ln in text.splitlines() if pattern.search(ln)] for where, text in texts.items()}
    return {where: lines[:5] for where, lines in found.items() if lines}


async def test_no_card_number_reaches_the_database_or_any_log(stack: Stack) -> None:
    answers: dict[str, int] = {}
    echoed: list[str] = []
    accepted: set[str] = set()
    token_id = f"sec-token-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10, headers=auth()) as http:
        for i, (what, fields) in enumerate(PAN_CARRIERS.items()):
            body = tx(f"sec-pan-{i}-{uuid.uuid4().hex[:6]}") | fields
            response = await http.post("/v1/score", json=body)
            answers[what] = response.status_code
            if PAN_PATTERN.search(response.text):
                echoed.append(what)
            if response.status_code == 200:
                accepted.add(body["transaction_id"])
        good = await http.post("/v1/score", json=tx(token_id, card_id="tok_4f9a0c2e"))
        assert good.status_code == 200 and not good.json()["degraded"], good.text
        assert (await http.post("/v1/labels", json=label(token_id, source="issuer"), headers=auth())).status_code == 202
    await wait_stored(stack.db, accepted | {token_id})
    await wait_stored(stack.db, {token_id}, tables=("labels",))

    found = where_the_pan_is(stack, PAN_PATTERN, token_id)
    assert not found, f"a card number is stored or logged: {found}"
    assert not echoed, f"answers carry the PAN: {echoed}"
    assert all(status == 422 for status in answers.values()), f"a PAN must be refused at the door: {answers}"


async def read_dead_letters(bootstrap: str, topic: str, ids: set[str], timeout_s: float = 60.0) -> list[Any]:
    """The dead letters whose source record carried one of `ids` (as transaction_id), read from the start."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while set(found) != ids:
            assert time.monotonic() < deadline, f"dead letters missing: {sorted(ids - set(found))}"
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    found.update({i: m for i in ids if i.encode() in (m.value or b"")})
    finally:
        await consumer.stop()
    return list(found.values())


async def test_transactions_produced_to_kafka_with_a_card_number_inside_a_field_are_not_stored(stack: Stack) -> None:
    pan = new_pan()
    records = [tx(f"sec-kafka-pan-{i}-{uuid.uuid4().hex[:6]}") | fields for i, fields in enumerate(
        [{"merchant_id": f"m-{pan}"}, {"card_id": f"{pan}-x"}, {"device_id": f"dev:{pan}"}, {"merchant_category": pan},
         {"card_id": grouped(pan, "/")}, {"card_id": grouped(pan, ":")}, {"customer_id": grouped(pan, "+", "=", "_")},
         {pan: 1}, {grouped(pan, "/"): 1}, {grouped(pan, "_", ":"): 1}]
    )]  # fmt: skip
    marker = tx(f"sec-kafka-token-{uuid.uuid4().hex[:6]}")
    await produce_transactions(stack.env.bootstrap, stack.env.topics["TRANSACTIONS_TOPIC"], [*records, marker])
    await wait_stored(stack.db, {marker["transaction_id"]})
    await asyncio.sleep(1.0)  # the records before the marker are in the same or an earlier sink batch
    found = where_the_pan_is(stack, pan_pattern(pan), marker["transaction_id"])
    assert not found, f"a card number is stored or logged: {found}"
    # Each refused record is in the dead-letter topic, its reason naming the problem, with no PAN anywhere:
    # not in the kept bytes, the key, or the headers (a field *named* with a PAN is echoed by the reason).
    dead = await read_dead_letters(
        stack.env.bootstrap, stack.env.topics["DLQ_TOPIC"], {r["transaction_id"] for r in records}
    )
    pattern = pan_pattern(pan)
    for m in dead:
        headers = {k: v.decode() for k, v in m.headers}
        assert headers["riskstream-error"], headers
        texts = [m.value.decode("latin-1"), (m.key or b"").decode("latin-1"), *headers.values()]
        assert not any(pattern.search(t) for t in texts), f"a card number in a dead letter: {headers} {m.value!r}"


async def test_labels_carrying_a_card_number_are_refused_and_not_stored(stack: Stack) -> None:
    pan = new_pan()
    carriers = {
        "transaction_id is the PAN": {"transaction_id": pan},
        "source contains the PAN": {"source": f"issuer, card {pan}"},
        "card_id contains the PAN": {"card_id": f"c-{pan}"},
    }
    marker = f"sec-label-token-{uuid.uuid4().hex[:6]}"
    answers = {}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10, headers=auth()) as http:
        for what, fields in carriers.items():
            answers[what] = (
                await http.post("/v1/labels", json=label(f"sec-label-{uuid.uuid4().hex[:6]}") | fields)
            ).status_code
        assert (await http.post("/v1/labels", json=label(marker))).status_code == 202
    await wait_stored(stack.db, {marker}, tables=("labels",))
    found = where_the_pan_is(stack, pan_pattern(pan), marker)
    assert not found, f"a card number is stored or logged: {found}"
    assert all(status == 422 for status in answers.values()), answers


# --- no secret in any log or answer --------------------------------------------------------------------------

SECRETS = {"API key": API_KEY, "database password": DB_PASSWORD, "quoted password": quote(DB_PASSWORD, safe="")}


def assert_no_secret(texts: dict[str, str]) -> None:
    leaks = [(what, where) for where, text in texts.items() for what, secret in SECRETS.items() if secret in text]
    assert not leaks, f"secrets leaked: {leaks}"


async def test_the_api_key_and_database_password_appear_in_no_log_or_answer(
    stack: Stack, kafka_broker: Broker, tmp_path: Path
) -> None:
    answers: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        for path in ("/metrics", "/readyz", "/healthz", "/openapi.json"):
            answers[path] = (await http.get(path)).text
        answers["401"] = (await http.get("/v1/verdicts/x", headers=auth("wrong"))).text
        answers["404"] = (await http.get("/v1/verdicts/none", headers=auth())).text
        answers["422"] = (await http.post("/v1/score", content=b"{", headers=auth())).text
        answers["verdicts"] = (await http.get("/v1/verdicts", params={"card_id": "tok-x"}, headers=auth())).text

    # The same secrets against a database that is not there: the error paths log the most.
    env = PipelineEnv(bootstrap=kafka_broker.bootstrap, partitions=1, root=tmp_path)
    port = free_port()
    unreachable = stack.db.url.replace(f"@127.0.0.1:{stack.db.server.port}/", f"@127.0.0.1:{free_port()}/")
    env.extra.update(
        {
            "RISKSTREAM_DATABASE__URL": unreachable,
            "RISKSTREAM_GATEWAY__API_KEYS": API_KEY,
            "RISKSTREAM_GATEWAY__PORT": str(port),
            "RISKSTREAM_LOG_LEVEL": "DEBUG",
        }
    )
    env.create_topics()
    sink = RoleProcess("sink", env, name="sink-no-db", args=["--metrics-port", "0"]).start()
    gateway = RoleProcess("gateway", env, name="gateway-no-db").start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
            deadline = time.monotonic() + 60
            while True:
                try:  # connected to Kafka; never ready: no worker answers its probe transactions
                    if (await http.get("/readyz")).json()["kafka"]:
                        break
                except httpx.TransportError:
                    pass
                assert gateway.alive() and time.monotonic() < deadline, gateway.log_tail()
                await asyncio.sleep(0.2)
            down = await http.get("/v1/verdicts/x", headers=auth())
            assert down.status_code == 503, down.text
            answers["503"] = down.text
        assert sink.proc is not None
        assert sink.proc.wait(60) != 0, "the sink cannot read the schema revision: it exits with an error"
    finally:
        sink.stop(timeout=10)
        gateway.stop(timeout=10)
    logs = all_logs(*stack.processes, sink, gateway, extra=(stack.db.server.log_file,))
    assert "127.0.0.1" in logs["sink-no-db"], "the sink logged its failure (so the search is meaningful)"
    assert_no_secret(logs | {f"answer {k}": v for k, v in answers.items()})


# --- rule text cannot run code -----------------------------------------------------------------------------

RULE_PAYLOADS = {
    "an import call": "__import__('os').system('touch {marker}')",
    "attribute access to dunders": "tx.__class__.__bases__[0].__subclasses__() != []",
    "a lambda": "(lambda: __import__('os').system('touch {marker}'))()",
    "a builtin call": "amount > 1 and open('{marker}', 'w')",
    "a method call": "tx.card_id.upper() == 'X'",
    "a dunder name": "__builtins__ == 1",
}


def rule_file(rule_id: str, when: str) -> str:
    quoted = when.replace("'", "''")
    return (
        f"rules:\n  - id: {rule_id}\n    description: test\n    when: '{quoted}'\n"
        "    action: decline\n    state: enforce\n"
    )


async def wait_for_log(process: RoleProcess, text: str, count: int, timeout_s: float = 10.0) -> str:
    """The log once `text` appears in it `count` times."""
    deadline = time.monotonic() + timeout_s
    while (log := process.log_path.read_text(errors="replace")).count(text) < count:
        assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times:\n{process.log_tail()}"
        await asyncio.sleep(0.2)
    return log


async def test_rules_with_python_in_them_are_refused_and_the_previous_rules_keep_serving(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "rule-code-ran"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10, headers=auth()) as http:
        before = (await http.post("/v1/score", json=tx(f"rules-before-{uuid.uuid4().hex[:6]}"))).json()
        refusals = stack.worker.log_path.read_text(errors="replace").count("rules refused")
        try:
            for i, (what, payload) in enumerate(RULE_PAYLOADS.items()):
                (stack.rules / "evil.yaml").write_text(rule_file(f"evil-{i}", payload.format(marker=marker)))
                refusals += 1
                log = await wait_for_log(stack.worker, "rules refused", refusals)
                line = [ln for ln in log.splitlines() if "rules refused" in ln][-1]
                assert "evil.yaml:4" in line and f"rule evil-{i}" in line, f"{what}: {line}"
                after = (await http.post("/v1/score", json=tx(f"rules-{i}-{uuid.uuid4().hex[:6]}"))).json()
                assert not after["degraded"], f"{what}: {after}"
                assert after["rules_version"] == before["rules_version"], f"{what}: the refused rules serve"
                assert not marker.exists(), f"{what}: rule text ran code"
        finally:
            (stack.rules / "evil.yaml").unlink(missing_ok=True)
    assert stack.worker.alive()


async def test_a_rules_file_with_a_python_yaml_tag_is_refused_and_the_worker_keeps_serving(
    stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "yaml-tag-ran"
    evil = (
        "rules:\n  - id: yaml-tag\n    description: test\n"
        f'    when: !!python/object/apply:os.system ["touch {marker}"]\n    action: decline\n    state: enforce\n'
    )
    async with httpx.AsyncClient(base_url=stack.url, timeout=10, headers=auth()) as http:
        before = (await http.post("/v1/score", json=tx(f"tag-before-{uuid.uuid4().hex[:6]}"))).json()
        refusals = stack.worker.log_path.read_text(errors="replace").count("rules refused")
        try:
            (stack.rules / "evil.yaml").write_text(evil)
            log = await wait_for_log(stack.worker, "rules refused", refusals + 1)
            assert "evil.yaml:4" in [ln for ln in log.splitlines() if "rules refused" in ln][-1]
            after = (await http.post("/v1/score", json=tx(f"tag-after-{uuid.uuid4().hex[:6]}"))).json()
            assert not after["degraded"] and after["rules_version"] == before["rules_version"]
        finally:
            (stack.rules / "evil.yaml").unlink(missing_ok=True)
            assert not marker.exists(), "a YAML tag ran code"
            if not stack.worker.alive():  # leave a serving worker for whatever runs next
                stack.worker.start()
                await wait_for_real_verdict(stack)
    assert stack.worker.alive()


# --- bodies are bounded before they are read --------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def post_raw(url: str, head: bytes, body_chunks: Iterator[bytes], timeout_s: float = 30.0) -> tuple[bytes, int, float]:
    """Send a request head then body chunks while reading the answer; stops sending when the server answers
    or closes. Returns (the answer's first bytes, body bytes sent, seconds until the answer)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    answered = threading.Event()
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head)

        def sender() -> None:
            nonlocal sent
            try:
                for chunk in body_chunks:
                    if answered.is_set():
                        return
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the server answered and closed: what is expected of it
                return

        started = time.monotonic()
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
        elapsed = time.monotonic() - started
        answered.set()
        thread.join(timeout_s)
    return answer, sent, elapsed


def chunked(total: int, size: int = 65536) -> Iterator[bytes]:
    piece = b"%x\r\n" % size + b"x" * size + b"\r\n"
    for _ in range(total // size):
        yield piece
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("path", ["/v1/labels", "/v1/score"])
async def test_a_50_mb_chunked_body_is_refused_early_and_costs_the_gateway_no_memory(stack: Stack, path: str) -> None:
    assert stack.gateway.proc is not None
    pid = stack.gateway.proc.pid
    before = rss_kib(pid)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer, sent, elapsed = await asyncio.to_thread(post_raw, stack.url, head, chunked(50 * 1024 * 1024))
    grown = rss_kib(pid) - before
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer or b"content-length" in answer.lower()
    assert elapsed < 5, f"413 after {elapsed:.1f} s"
    assert sent < 20 * 1024 * 1024, f"{sent} bytes were taken before the refusal"
    assert grown < 20 * 1024, f"the gateway grew by {grown} KiB"
    assert stack.gateway.alive()


async def test_a_declared_300_mb_body_is_refused_before_a_byte_of_it_is_sent(stack: Stack) -> None:
    head = (
        f"POST /v1/labels HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {300 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer, _, elapsed = await asyncio.to_thread(post_raw, stack.url, head, iter(()))
    assert answer.startswith(b"HTTP/1.1 413") and elapsed < 2, (answer[:200], elapsed)
