"""The analyst console in a real browser: Debian's headless chromium (through chromium-driver and Selenium)
against a real gateway process, a real broker and a real PostgreSQL.

Cases are stored with the repository as the sink stores them (tests/e2e/console_data.py: verdicts with their
reasons, rules and features, and each card's history). The analyst signs in with a named key, opens the
queue, moves down it and opens a case with the keyboard, claims it with `c`, resolves it as fraud with `f`,
and the label is read back from the labels topic; the overview and the drift page (against a model whose
metadata carries a drift reference, over approved traffic two days old with three features shifted) follow.
Each page is saved as a PNG in the test's folder, and also in `RISKSTREAM_SCREENSHOTS_DIR` when set (how
docs/console-*.png are made).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.db.cases import get_case, list_cases
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from tests.e2e.console_data import DRIFTED, drift_model, seed_cases, seed_drift
from tests.fixtures.kafka import Broker, free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)",
    ),
]

ANALYST_KEY = "alice-console-" + secrets.token_hex(12)
ADMIN_KEY = "root-console-" + secrets.token_hex(12)
#: Wide enough for the queue's columns, short enough for a small PNG.
WINDOW = (1280, 860)


@dataclass
class Console:
    url: str
    env: PipelineEnv
    gateway: RoleProcess
    sessions: Any
    shots: list[Path]

    def screenshot(self, driver: Any, name: str) -> None:
        """Save the page as console-<name>.png here and in RISKSTREAM_SCREENSHOTS_DIR if set."""
        for folder in (self.env.root / "screenshots", os.environ.get("RISKSTREAM_SCREENSHOTS_DIR")):
            if folder:
                path = Path(folder) / f"console-{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
                self.shots.append(path)


@pytest.fixture
def console(kafka_broker: Broker, database_url: str, tmp_path: Path) -> Iterator[Console]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions() as s:
        seed_cases(s)
        seed_drift(s, n=300)
        s.commit()
    drift_model(tmp_path / "models")
    port = free_port()
    env = PipelineEnv(bootstrap=kafka_broker.bootstrap, partitions=2, root=tmp_path)
    env.extra.update({
        "RISKSTREAM_DATABASE__URL": database_url, "RISKSTREAM_GATEWAY__PORT": str(port),
        "RISKSTREAM_GATEWAY__API_KEYS": f"alice:{ANALYST_KEY},root:{ADMIN_KEY}",
        "RISKSTREAM_GATEWAY__ADMIN_KEYS": "root", "RISKSTREAM_GATEWAY__SESSION_SECRET": secrets.token_urlsafe(32),
        "RISKSTREAM_GATEWAY__INSTANCE_ID": f"console-{env.suffix}", "RISKSTREAM_MODEL__DIR": str(tmp_path / "models"),
        "RISKSTREAM_WORKER__DRIFT_MIN_TRANSACTIONS": "200",
    })  # fmt: skip
    env.create_topics()
    gateway = RoleProcess("gateway", env).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert gateway.alive(), "gateway exited\n" + gateway.log_tail()
        assert time.monotonic() < deadline, "gateway never answered\n" + gateway.log_tail()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    try:
        yield Console(url, env, gateway, sessions, [])
    finally:
        gateway.stop()
        engine.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-GB"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Any, what: str, timeout_s: float = 15.0) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):  # the page is being replaced
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def press(driver: Any, key: str) -> None:
    """A key pressed on the page itself (not in a form field), as an analyst does."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


async def test_an_analyst_signs_in_opens_a_case_and_resolves_it_with_the_keyboard(
    console: Console, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    with console.sessions() as s:
        queue_order = [c.id for c in list_cases(session=s, state="open", limit=50).items]
    second = queue_order[1]

    # Signed out, the queue sends the browser to the sign-in form.
    browser.get(f"{console.url}/console/queue")
    wait_for(lambda: "/console/login" in browser.current_url, "the sign-in form")
    console.screenshot(browser, "login")
    browser.find_element(By.ID, "api_key").send_keys(ANALYST_KEY)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit].primary").click()

    # The queue: highest priority first, the live count of open cases, the analyst's name.
    wait_for(lambda: browser.current_url.endswith("/console/queue"), "the queue after signing in")
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert [r.get_attribute("data-href") for r in rows] == [f"/console/cases/{i}" for i in queue_order]
    assert browser.find_element(By.ID, "open-count").text == str(len(queue_order))
    assert "alice" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    assert ANALYST_KEY not in browser.page_source
    console.screenshot(browser, "queue")

    # j moves the selection to the second case, Enter opens it.
    press(browser, "j")
    wait_for(lambda: "selected" in (rows[1].get_attribute("class") or ""), "the second row selected")
    press(browser, "\ue007")  # Enter
    wait_for(lambda: browser.current_url.endswith(f"/console/cases/{second}"), "the second case's page")
    assert browser.find_elements(By.CSS_SELECTOR, "#reasons tbody tr"), "the verdict's reasons"
    assert "Velocity at decision time" in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "#recent tr.current"), "the card's history marks this case"
    console.screenshot(browser, "case")

    # c claims it, f resolves it as fraud.
    press(browser, "c")
    wait_for(lambda: "claimed" in browser.find_element(By.ID, "case-state").text, "the case claimed")
    browser.find_element(By.ID, "note").send_keys("cardholder denies the payment")
    browser.find_element(By.TAG_NAME, "h1").click()  # leave the note field: keys act on the page again
    press(browser, "f")
    wait_for(lambda: "resolved: fraud" in browser.find_element(By.ID, "case-state").text, "the case resolved")
    assert "Label sent at" in browser.page_source

    with console.sessions() as s:
        case = get_case(session=s, case_id=second)
    assert case is not None
    assert (case.state, case.resolution, case.assignee, case.note) == (
        "resolved", "fraud", "alice", "cardholder denies the payment",
    )  # fmt: skip
    labels_topic = console.env.topics["LABELS_TOPIC"]
    labels = await consume_by_key(
        console.env.bootstrap, labels_topic, {case.transaction_id}, timeout_s=30, processes=[console.gateway]
    )
    [label] = labels[case.transaction_id]
    assert label["label"] == "confirmed_fraud" and label["source"] == f"case:{second}:alice"

    # The overview over the last day, then sign out.
    browser.get(f"{console.url}/console/overview?window=24h")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.chart"), "the overview's charts")
    assert browser.find_element(By.ID, "total").text == "40"
    console.screenshot(browser, "overview")

    # d: the drift page, then its week: the shifted features first, highlighted, with their charts.
    press(browser, "d")
    wait_for(lambda: browser.current_url.endswith("/console/drift"), "the drift page")
    browser.find_element(By.LINK_TEXT, "7d").click()
    wait_for(lambda: browser.current_url.endswith("/console/drift?window=7d"), "the drift page over 7 days")
    rows = browser.find_elements(By.CSS_SELECTOR, "#drift-features tbody tr[data-feature]")
    assert [r.get_attribute("data-feature") for r in rows[: len(DRIFTED)]] == list(DRIFTED)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#drift-features tbody td.psi-high")) >= len(DRIFTED)
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 5
    console.screenshot(browser, "drift")
    browser.find_element(By.CSS_SELECTOR, "header .who button").click()
    wait_for(lambda: "/console/login" in browser.current_url, "the sign-in form after signing out")
    browser.get(f"{console.url}/console/queue")
    wait_for(lambda: "/console/login" in browser.current_url, "the queue refused after signing out")

    for shot in console.shots:
        assert shot.stat().st_size > 5_000, f"{shot} looks empty"
