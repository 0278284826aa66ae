"""Console sessions, CSRF tokens, roles and the pieces the pages are made of: signed cookies that refuse
forgery, tampering and expiry; login nonces that are not sessions; view models and SVG charts that escape."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from api.console.charts import Series, horizontal_bars, stacked_bars
from api.console.sessions import Signer, csrf_matches, parse_admin_names, role_of, safe_next
from api.console.views import case_view, format_age, format_number
from pipeline.cases import Case, CaseDetail
from pipeline.records import FiredRule, Reason, Verdict

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def signer(secret: bytes = SECRET, ttl: int = 3600) -> Signer:
    return Signer(secret, ttl_seconds=ttl)


def test_a_session_reads_back_with_its_name_token_and_expiry() -> None:
    cookie, issued = signer().issue("alice", now=NOW)
    read = signer().read(cookie, now=NOW + 10)
    assert read == issued and read is not None
    assert (read.name, read.expires_at, read.role) == ("alice", int(NOW) + 3600, "analyst")
    assert len(read.csrf_token) >= 32
    assert signer().issue("alice", now=NOW)[1].csrf_token != issued.csrf_token  # a token per session


def forged(cookie: str, **changes: object) -> str:
    payload, _, mac = cookie.partition(".")
    document = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) | changes
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=") + "." + mac


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda c: signer(b"t" * 32).issue("alice", now=NOW)[0], id="signed with another secret"),
        pytest.param(lambda c: forged(c, n="root"), id="name changed"),
        pytest.param(lambda c: forged(c, e=int(NOW) + 10**9), id="expiry pushed back"),
        pytest.param(lambda c: c.partition(".")[0] + ".", id="signature removed"),
        pytest.param(lambda c: c.partition(".")[0], id="no signature"),
        pytest.param(lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"), id="signature altered"),
        pytest.param(lambda c: "", id="empty"),
        pytest.param(lambda c: "not-base64!.x", id="garbage"),
    ],
)
def test_a_forged_or_tampered_session_is_refused(make: object) -> None:
    cookie, _ = signer().issue("alice", now=NOW)
    assert signer().read(make(cookie), now=NOW + 1) is None  # type: ignore[operator]


def test_an_expired_session_is_refused() -> None:
    cookie, _ = signer(ttl=60).issue("alice", now=NOW)
    assert signer(ttl=60).read(cookie, now=NOW + 59) is not None
    assert signer(ttl=60).read(cookie, now=NOW + 60) is None


def test_a_login_nonce_is_not_a_session_and_a_session_is_not_a_nonce() -> None:
    s = signer()
    nonce, cookie = s.login_nonce(now=NOW)
    assert s.check_login_nonce(cookie, nonce, now=NOW + 1)
    assert not s.check_login_nonce(cookie, nonce + "x", now=NOW + 1)
    assert not s.check_login_nonce(cookie, nonce, now=NOW + 601)  # ten minutes to post the form
    assert not s.check_login_nonce(None, nonce, now=NOW)
    assert s.read(cookie, now=NOW + 1) is None
    session_cookie, session = s.issue("alice", now=NOW)
    assert not s.check_login_nonce(session_cookie, session.csrf_token, now=NOW + 1)


def test_csrf_tokens_must_match_the_session() -> None:
    _, session = signer().issue("alice", now=NOW)
    assert csrf_matches(session, session.csrf_token)
    for wrong in (
        None,
        "",
        session.csrf_token[:-1],
        session.csrf_token + "x",
        signer().issue("a", now=NOW)[1].csrf_token,
    ):
        assert not csrf_matches(session, wrong)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Signer(b"short", ttl_seconds=60)


def test_roles_come_from_the_admin_key_names() -> None:
    admins = parse_admin_names(" root, ops-lead ,,")
    assert admins == {"root", "ops-lead"}
    assert role_of("root", admins) == "admin" and role_of("alice", admins) == "analyst"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/cases/4", "/console/cases/4"),
        ("/console/queue?state=open", "/console/queue?state=open"),
        ("https://evil.example/console/", "/console/queue"),
        ("//evil.example/console/", "/console/queue"),
        ("/v1/cases", "/console/queue"),
        ("/console\\@evil.example", "/console/queue"),
        ("", "/console/queue"),
        (None, "/console/queue"),
    ],
)
def test_after_login_only_console_paths_are_followed(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(7.0, "7"), (1712.4, "1,712"), (0.031, "0.031"), (None, "—"), (float("nan"), "—"), (2.345, "2.35")],
)
def test_feature_values_read_as_an_analyst_expects(value: float | None, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (125, "2 min"), (3 * 3600 + 300, "3 h 5 min"), (90000, "1 d 1 h")]
)
def test_ages(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def detail(features: dict[str, float | None] | None) -> CaseDetail:
    t0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
    verdict = Verdict(
        transaction_id="tx-1", decision="review", score=0.9, model_version="m", rules_version="r", event_time=t0,
        decided_at=t0 + timedelta(milliseconds=20), latency_ms=20.0, card_id="tok-1", merchant_id="m-1", amount=99.0,
        currency="EUR", features=features,
        reasons=[Reason(code="rule:device-many-cards", text="6 cards on this device in 1 h", kind="rule"),
                 Reason(code="model:device_distinct_cards_1h", text="6 cards on this device", kind="model", value=6.0)],
        rules=[FiredRule(id="device-many-cards", state="enforce", action="review")],
    )  # fmt: skip
    case = Case(
        id=3, transaction_id="tx-1", decision="review", priority=45, state="open", created_at=t0, age_seconds=30.0,
        score=0.9, amount=99.0, currency="EUR", card_id="tok-1", merchant_id="m-1", event_time=t0,
    )  # fmt: skip
    return CaseDetail(case=case, verdict=verdict, card_recent=[verdict])


def test_a_model_reason_shows_its_feature_value_and_the_features_group_by_entity() -> None:
    view = case_view(detail({"device_distinct_cards_1h": 6.0, "ip_count_1m": 2.0, "card_count_5m": 1.0}), next_id=4)
    rule, model = view.reasons
    assert (rule.feature, rule.feature_value) == (None, None)
    assert (model.feature, model.feature_value) == ("device_distinct_cards_1h", 6.0)
    assert view.feature_groups is not None
    groups = {g.entity: {r.name: (r.value, r.cited) for r in g.rows} for g in view.feature_groups}
    assert groups == {
        "Device": {"device_distinct_cards_1h": (6.0, True)},
        "IP address": {"ip_count_1m": (2.0, False)},
        "Card": {"card_count_5m": (1.0, False)},
    }
    assert view.recent[0].current and view.next_id == 4


def test_a_verdict_stored_without_features_says_so() -> None:
    view = case_view(detail(None))
    assert view.feature_groups is None
    assert view.reasons[1].feature_value is None and view.reasons[1].value == 6.0


def test_charts_escape_every_text() -> None:
    evil = '<script>alert("x")</script>'
    bars = stacked_bars(["10:00", evil], [Series(evil, "#000", [1.0, 2.0])], title=evil)
    hbars = horizontal_bars([(evil, 3.0)], title=evil)
    for svg in (bars, hbars):
        assert "<script>" not in svg and "&lt;script&gt;" in svg
        assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_an_empty_window_draws_a_message_not_an_error() -> None:
    assert "no verdicts in this window" in stacked_bars([], [Series("a", "#000", [])], title="t")
    assert "no rule fired" in horizontal_bars([], title="t")
