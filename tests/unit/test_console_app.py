"""The console in the gateway app, in process on a SQLite database (no Kafka: no test here resolves a case;
tests/e2e/test_console_browser.py does, on the real stack): sign-in, cookie flags, refusals before any work
(no session, a forged one, a POST without its CSRF token, an analyst at an admin action), and escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.console.sessions import LOGIN_COOKIE, SESSION_COOKIE, Signer
from api.deps import GatewayState
from api.main import create_app
from pipeline.db.cases import claim_case, get_case, list_cases, resolve_case
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.settings import Settings
from tests.e2e.console_data import seed_cases

ALICE = "alice-key-0123456789"
ROOT = "root-key-0123456789"
SECRET = "console-test-secret-" + "x" * 20


def settings(db_url: str, **gateway: Any) -> Settings:
    return Settings.model_validate(
        {"gateway": {"api_keys": f"alice:{ALICE},root:{ROOT}", "admin_keys": "root", "session_secret": SECRET}
         | gateway, "database": {"url": db_url}}
    )  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as s:
        seed_cases(s)
    yield url, sessions
    engine.dispose()


@pytest.fixture
async def client(db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan (no Kafka): the database is wired in as the lifespan would."""
    url, sessions = db
    s = settings(url)
    app = create_app(s)
    app.state.gateway = GatewayState(settings=s, bridge=None, api_keys=None, deadline=None, readiness=None,  # type: ignore[arg-type]
                                     sessions=sessions)  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token as the pages carry it."""
    form = await client.get("/console/login")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and nonce is not None
    answer = await client.post("/console/login", data={"api_key": key, "csrf_token": nonce.group(1)})
    assert answer.status_code == 303, answer.text
    queue = await client.get("/console/queue")
    assert queue.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', queue.text)
    assert token is not None
    return token.group(1)


def first_case(db: Any) -> int:
    with db[1]() as s:
        return list_cases(session=s, limit=1).items[0].id


async def test_signing_in_sets_an_httponly_strict_cookie_and_shows_the_queue(client: httpx.AsyncClient) -> None:
    form = await client.get("/console/login")
    assert "Content-Security-Policy" in form.headers and form.headers["cache-control"] == "no-store"
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert nonce is not None
    answer = await client.post("/console/login", data={"api_key": ALICE, "csrf_token": nonce.group(1),
                                                       "next": "/console/overview"})  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/console/overview"
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= flags and "secure" not in flags
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert ALICE not in cookie
    queue = await client.get("/console/queue")
    assert queue.status_code == 200 and "tok-card-4821" in queue.text and ">8</strong> open" in queue.text
    assert ALICE not in queue.text
    count = await client.get("/console/queue/count")
    assert count.json() == {"open": 8}


async def test_secure_cookies_when_configured(db: Any) -> None:
    app = create_app(settings(db[0], secure_cookies=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as c:
        form = await c.get("/console/login")
        assert "secure" in form.headers["set-cookie"].lower()


async def test_a_wrong_key_or_a_login_post_without_its_form_nonce_is_refused(client: httpx.AsyncClient) -> None:
    form = await client.get("/console/login")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert nonce is not None
    wrong = await client.post("/console/login", data={"api_key": "nope-0123456789", "csrf_token": nonce.group(1)})
    assert wrong.status_code == 401 and "Unknown API key" in wrong.text and SESSION_COOKIE not in wrong.cookies
    client.cookies.delete(LOGIN_COOKIE, path="/console/login")
    forged = await client.post("/console/login", data={"api_key": ALICE, "csrf_token": nonce.group(1)})
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.cookies


@pytest.mark.parametrize("path", ["/console", "/console/queue", "/console/cases/1", "/console/overview",
                                  "/console/drift", "/console/queue/count"])  # fmt: skip
async def test_pages_without_a_session_go_to_the_login_even_with_a_bearer_key(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path, headers={"Authorization": f"Bearer {ALICE}"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=")


async def test_a_forged_session_cookie_is_refused(client: httpx.AsyncClient) -> None:
    other, _ = Signer(b"another-secret-" + b"y" * 20, ttl_seconds=3600).issue("root")
    client.cookies.set(SESSION_COOKIE, other, path="/console")
    assert (await client.get("/console/queue")).status_code == 303
    claim = await client.post("/console/cases/1/claim", data={"csrf_token": "anything"})
    assert claim.status_code == 401


async def test_a_session_whose_key_was_removed_is_refused(db: Any) -> None:
    cookie, _ = Signer(SECRET.encode(), ttl_seconds=3600).issue("carol")  # signed right, but no key "carol"
    app = create_app(settings(db[0]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        c.cookies.set(SESSION_COOKIE, cookie, path="/console")
        assert (await c.get("/console/queue")).status_code == 303


async def test_a_post_without_the_csrf_token_is_refused(client: httpx.AsyncClient, db: Any) -> None:
    token = await sign_in(client, ALICE)
    case_id = first_case(db)
    for data, headers in (({}, {}), ({"csrf_token": token[:-1] + "x"}, {}), ({}, {"X-CSRF-Token": "forged"})):
        answer = await client.post(f"/console/cases/{case_id}/claim", data=data, headers=headers)
        assert answer.status_code == 403 and "security token" in answer.text
    with db[1]() as s:
        assert get_case(session=s, case_id=case_id).state == "open"  # type: ignore[union-attr]
    ok = await client.post(f"/console/cases/{case_id}/claim", data={"csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"] == f"/console/cases/{case_id}"
    with db[1]() as s:
        assert get_case(session=s, case_id=case_id).assignee == "alice"  # type: ignore[union-attr]
    logout = await client.post("/console/logout")
    assert logout.status_code == 403  # signing out takes the token too


async def test_an_analyst_cannot_release_a_claim_and_an_admin_can(client: httpx.AsyncClient, db: Any) -> None:
    case_id = first_case(db)
    with db[1]() as s:
        claim_case(session=s, case_id=case_id, actor="alice")
    token = await sign_in(client, ALICE)
    page = await client.get(f"/console/cases/{case_id}")
    assert "release-form" not in page.text  # the button is not offered
    refused = await client.post(f"/console/cases/{case_id}/release", data={"csrf_token": token})
    assert refused.status_code == 403 and "admins" in refused.text
    with db[1]() as s:
        assert get_case(session=s, case_id=case_id).state == "claimed"  # type: ignore[union-attr]

    client.cookies.clear()
    admin_token = await sign_in(client, ROOT)
    assert "release-form" in (await client.get(f"/console/cases/{case_id}")).text
    no_token = await client.post(f"/console/cases/{case_id}/release")
    assert no_token.status_code == 403
    released = await client.post(f"/console/cases/{case_id}/release", data={"csrf_token": admin_token})
    assert released.status_code == 303
    with db[1]() as s:
        case = get_case(session=s, case_id=case_id)
    assert case is not None and (case.state, case.assignee) == ("open", None)


async def test_every_text_is_escaped_on_the_case_page(client: httpx.AsyncClient, db: Any) -> None:
    case_id = first_case(db)
    with db[1]() as s:
        resolve_case(session=s, case_id=case_id, actor="alice", resolution="fraud",
                     note='<script>alert("x")</script> & <b>bold</b>')  # fmt: skip
    await sign_in(client, ALICE)
    page = await client.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    assert (
        "<script>alert" not in page.text
        and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in page.text
    )
    assert "Resolved as <strong>fraud</strong>" in page.text


async def test_the_case_page_shows_reasons_features_and_history(client: httpx.AsyncClient, db: Any) -> None:
    await sign_in(client, ALICE)
    case_id = first_case(db)
    page = await client.get(f"/console/cases/{case_id}")
    text = page.text
    assert "7 transactions on this card in 5 min" in text and "card-burst" in text
    assert "Velocity at decision time" in text and "device_distinct_cards_1h" in text
    assert text.count("(this case)") == 1 and "tx-7f3a91-h1" in text
    assert 'data-next="/console/cases/' in text
    missing = await client.get("/console/cases/999999")
    assert missing.status_code == 404


async def test_the_overview_sums_the_window(client: httpx.AsyncClient) -> None:
    await sign_in(client, ALICE)
    page = await client.get("/console/overview", params={"window": "24h"})
    assert page.status_code == 200
    assert re.search(r'id="total">40<', page.text), "8 flagged and 32 approved verdicts in the last day"
    assert "<svg" in page.text and "card-burst" in page.text
    assert (await client.get("/console/overview", params={"window": "1y"})).status_code == 422
