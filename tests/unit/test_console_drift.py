"""The console's drift page in the gateway app, in process on a SQLite database: worst features first with
their PSI per window, the drifted ones highlighted, the reference-against-current charts, and what it says
without a model, without a reference or with too few verdicts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.console.drift import DriftCache, bin_labels
from api.deps import GatewayState
from api.main import create_app
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.drift import PSI_ALERT
from pipeline.settings import Settings
from tests.e2e.console_data import DRIFT_MODEL, DRIFTED, drift_model, seed_drift
from tests.unit.test_console_app import ALICE, ROOT, SECRET, sign_in

Client = Callable[..., Any]


@pytest.fixture
def sessions(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    yield url, session_factory(engine)
    engine.dispose()


@pytest.fixture
async def app_client(sessions: Any, tmp_path: Path) -> AsyncIterator[Client]:
    """Opens a client on the app with these settings' model folder and minimum count (no lifespan: no Kafka)."""
    url, factory = sessions
    clients: list[httpx.AsyncClient] = []

    async def open_client(min_count: int = 100, ttl: float = 0.0) -> httpx.AsyncClient:
        s = Settings.model_validate({
            "gateway": {"api_keys": f"alice:{ALICE},root:{ROOT}", "admin_keys": "root", "session_secret": SECRET},
            "database": {"url": url}, "model": {"dir": str(tmp_path / "models")},
            "worker": {"drift_min_transactions": min_count},
        })  # fmt: skip
        app = create_app(s)
        app.state.gateway = GatewayState(settings=s, bridge=None, api_keys=None, deadline=None, readiness=None,  # type: ignore[arg-type]
                                         sessions=factory)  # fmt: skip
        app.state.console_drift = DriftCache(ttl=ttl)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        clients.append(client)
        await sign_in(client, ALICE)
        return client

    yield open_client
    for c in clients:
        await c.aclose()


def feature_rows(html: str) -> list[tuple[str, str]]:
    """(feature, the row's first PSI cell with its class) in page order."""
    return re.findall(r'<tr data-feature="([^"]+)"><td>[^<]*</td><td class="([^"]*)">', html)


async def test_the_drift_page_needs_a_session(app_client: Client) -> None:
    client = await app_client()
    client.cookies.clear()
    answer = await client.get("/console/drift")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=%2Fconsole%2Fdrift")


async def test_worst_features_first_with_the_drifted_ones_highlighted(
    app_client: Client, sessions: Any, tmp_path: Path
) -> None:
    drift_model(tmp_path / "models")
    with sessions[1]() as s:
        seed_drift(s, n=300, ago=timedelta(hours=2))
        s.commit()
    client = await app_client()
    page = await client.get("/console/drift", params={"window": "24h"})
    assert page.status_code == 200 and 'aria-current="page">Drift<' in page.text
    text = page.text
    assert re.search(r'id="drift-count">300<', text)
    rows = feature_rows(text)
    assert [name for name, _ in rows[: len(DRIFTED)]] == list(DRIFTED)
    assert all("psi-high" in cls for _, cls in rows[: len(DRIFTED)])
    assert not any("psi-high" in cls for _, cls in rows[len(DRIFTED) :]), f"only the shifted ones above {PSI_ALERT}"
    assert '<th class="num">PSI 24h</th>' in text and '<th class="num">PSI 1h</th>' in text
    assert 'class="value psi-high" id="score-psi"' in text
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 5, "four worst features and the score"
    assert "amount (PSI" in text and DRIFT_MODEL in text
    assert "Too few transactions" not in text
    # By event time: the traffic two hours ago is not in the last hour.
    hour = await client.get("/console/drift", params={"window": "1h"})
    assert re.search(r'id="drift-count">0<', hour.text) and "Too few transactions" in hour.text
    assert (await client.get("/console/drift", params={"window": "30d"})).status_code == 422


async def test_too_few_verdicts_give_no_psi(app_client: Client, sessions: Any, tmp_path: Path) -> None:
    drift_model(tmp_path / "models")
    with sessions[1]() as s:
        seed_drift(s, n=50)
        s.commit()
    page = await (await app_client(min_count=500)).get("/console/drift", params={"window": "7d"})
    assert page.status_code == 200
    assert "Too few transactions" in page.text and "PSI needs 500" in page.text
    assert "psi-high" not in page.text and "<svg" not in page.text


async def test_a_model_without_a_reference_or_no_model_is_said(app_client: Client, tmp_path: Path) -> None:
    client = await app_client()
    none = await client.get("/console/drift")
    assert none.status_code == 200 and "No model to compare with" in none.text
    drift_model(tmp_path / "models", reference=False)
    old = await client.get("/console/drift")
    assert old.status_code == 200 and f"Model {DRIFT_MODEL} has no drift reference" in old.text


async def test_a_report_is_kept_for_the_cache_time(app_client: Client, sessions: Any, tmp_path: Path) -> None:
    drift_model(tmp_path / "models")
    client = await app_client(ttl=3600)
    first = await client.get("/console/drift", params={"window": "7d"})
    with sessions[1]() as s:
        seed_drift(s, n=120)
        s.commit()
    again = await client.get("/console/drift", params={"window": "7d"})
    assert re.search(r'id="drift-count">0<', first.text) and re.search(r'id="drift-count">0<', again.text)
    fresh = await (await app_client(ttl=0)).get("/console/drift", params={"window": "7d"})
    assert re.search(r'id="drift-count">120<', fresh.text)


def test_bins_are_named_by_their_lower_edge() -> None:
    assert bin_labels((1.0, 2.5, 1234.5)) == ["<1", "≥1", "≥2.5", "≥1.23e+03", "n/a"]
    assert bin_labels(()) == ["all", "n/a"]
