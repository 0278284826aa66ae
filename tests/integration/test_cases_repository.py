"""Review cases on a real PostgreSQL and on SQLite: opened with their verdicts, claimed, resolved, listed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.cases import CaseConflict, CaseNotFound
from pipeline.db.cases import (
    claim_case,
    get_case,
    get_case_detail,
    list_cases,
    mark_label_sent,
    resolve_case,
    unsent_case_labels,
)
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.orm import CaseRow
from pipeline.db.repository import save_decisions, save_verdicts
from pipeline.records import Reason, Transaction, Verdict

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    url: str = request.getfixturevalue("database_url" if request.param == "postgresql" else "sqlite_url")
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            yield s
    finally:
        engine.dispose()


def make_verdict(transaction_id: str, decision: str = "review", **overrides: Any) -> Verdict:
    fields: dict[str, Any] = {
        "transaction_id": transaction_id, "decision": decision, "score": 0.8, "model_version": "m-1",
        "rules_version": "r-1", "event_time": T0, "decided_at": T0 + timedelta(milliseconds=30), "latency_ms": 3.0,
        "card_id": "card-0001", "merchant_id": "merchant-0001", "amount": 99.0, "currency": "EUR",
        "reasons": [Reason(code="model:amount", text="amount far above usual", kind="model")],
    }  # fmt: skip
    fields.update(overrides)
    return Verdict.model_validate(fields)


def case_id_of(session: Session, transaction_id: str) -> int:
    found = session.scalars(select(CaseRow.id).where(CaseRow.transaction_id == transaction_id)).one()
    return int(found)


def test_review_and_challenge_verdicts_open_one_case_each_and_a_replay_opens_none(session: Session) -> None:
    verdicts = [make_verdict("t-r"), make_verdict("t-c", "challenge"), make_verdict("t-a", "approve"),
                make_verdict("t-d", "decline")]  # fmt: skip
    assert save_verdicts(session=session, verdicts=verdicts) == 4
    assert save_verdicts(session=session, verdicts=verdicts) == 0
    rows = session.execute(select(CaseRow.transaction_id, CaseRow.state, CaseRow.priority)).all()
    assert sorted(tuple(r) for r in rows) == [("t-c", "open", 40), ("t-r", "open", 40)]


def test_a_case_follows_the_stored_verdict_not_a_later_copy(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("t-1", "approve")])
    save_verdicts(session=session, verdicts=[make_verdict("t-1", "review")])  # another copy: the first one won
    assert session.scalar(select(func.count()).select_from(CaseRow)) == 0


def test_case_and_its_verdict_are_written_together(session: Session, transaction_factory: Any) -> None:
    tx: Transaction = transaction_factory(transaction_id="t-1", timestamp=T0, amount=99.0, device_id="phone-1")
    save_decisions(session=session, verdicts=[make_verdict("t-1")], transactions=[tx])
    case_id = case_id_of(session, "t-1")
    detail = get_case_detail(session=session, case_id=case_id, now=T0)
    assert detail is not None
    assert detail.case.transaction_id == "t-1" and detail.case.state == "open" and detail.case.priority == 40
    assert detail.verdict.reasons[0].code == "model:amount"
    assert detail.transaction is not None and detail.transaction.device_id == "phone-1"
    assert [v.transaction_id for v in detail.card_recent] == ["t-1"]
    assert get_case_detail(session=session, case_id=case_id + 1000) is None


def test_claim_then_resolve_then_resolve_again(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("t-1")])
    case_id = case_id_of(session, "t-1")
    opened = get_case(session=session, case_id=case_id)
    assert opened is not None
    at = opened.created_at + timedelta(minutes=1)
    claimed = claim_case(session=session, case_id=case_id, actor="alice", now=at)
    assert (claimed.state, claimed.assignee, claimed.claimed_at, claimed.age_seconds) == ("claimed", "alice", at, 60)
    assert claim_case(session=session, case_id=case_id, actor="alice", now=at) == claimed
    with pytest.raises(CaseConflict, match="claimed by alice"):
        claim_case(session=session, case_id=case_id, actor="bob")
    with pytest.raises(CaseConflict, match="claimed by alice"):
        resolve_case(session=session, case_id=case_id, actor="bob", resolution="fraud")

    resolved_at = opened.created_at + timedelta(minutes=3)
    case, label = resolve_case(session=session, case_id=case_id, actor="alice", resolution="fraud",
                               note="customer denies it", now=resolved_at)  # fmt: skip
    assert (case.state, case.resolution, case.note, case.resolved_at) == ("resolved", "fraud", "customer denies it",
                                                                          resolved_at)  # fmt: skip
    assert case.age_seconds == 180.0
    assert label is not None
    assert (label.transaction_id, label.label, label.reported_at, label.card_id, label.merchant_id) == (
        "t-1", "confirmed_fraud", resolved_at, "card-0001", "merchant-0001")  # fmt: skip

    # The same resolution again (even by someone else): the same case, the same label until it is sent.
    again, same_label = resolve_case(session=session, case_id=case_id, actor="bob", resolution="fraud", note="x")
    assert again == case.model_copy(update={"age_seconds": again.age_seconds}) and same_label == label
    assert mark_label_sent(session=session, case_id=case_id) is True
    assert mark_label_sent(session=session, case_id=case_id) is False
    sent, no_label = resolve_case(session=session, case_id=case_id, actor="alice", resolution="fraud")
    assert no_label is None and sent.label_sent_at is not None and sent.note == "customer denies it"

    with pytest.raises(CaseConflict, match="resolved as fraud"):
        resolve_case(session=session, case_id=case_id, actor="alice", resolution="legitimate")
    with pytest.raises(CaseConflict, match="resolved"):
        claim_case(session=session, case_id=case_id, actor="alice")


def test_an_open_case_is_resolved_directly_by_whoever_resolves_it(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("t-1")])
    case, label = resolve_case(session=session, case_id=case_id_of(session, "t-1"), actor="carol",
                               resolution="legitimate", now=T0)  # fmt: skip
    assert (case.assignee, case.claimed_at, case.resolution) == ("carol", T0, "legitimate")
    assert label is not None and label.label == "confirmed_legitimate" and not label.is_fraud


def test_unknown_case(session: Session) -> None:
    with pytest.raises(CaseNotFound):
        claim_case(session=session, case_id=404, actor="alice")
    with pytest.raises(CaseNotFound):
        resolve_case(session=session, case_id=404, actor="alice", resolution="fraud")
    assert get_case(session=session, case_id=404) is None


def test_a_note_with_a_card_number_is_refused_and_nothing_changes(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("t-1")])
    case_id = case_id_of(session, "t-1")
    with pytest.raises(ValueError, match="PAN"):
        resolve_case(session=session, case_id=case_id, actor="alice", resolution="fraud", note="4111 1111 1111 1111")
    case = get_case(session=session, case_id=case_id)
    assert case is not None and case.state == "open"


def test_unsent_labels_are_found_again_until_marked(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("t-1"), make_verdict("t-2")])
    first, label = resolve_case(session=session, case_id=case_id_of(session, "t-1"), actor="a", resolution="fraud",
                                now=T0)  # fmt: skip
    assert unsent_case_labels(session=session, resolved_before=T0) == []
    assert unsent_case_labels(session=session, resolved_before=T0 + timedelta(seconds=1)) == [(first.id, label)]
    mark_label_sent(session=session, case_id=first.id)
    assert unsent_case_labels(session=session, resolved_before=T0 + timedelta(seconds=1)) == []


def _ids(page: Any) -> list[str]:
    return [c.transaction_id for c in page.items]


def test_filters_sorts_and_pages_without_repeating_or_skipping(session: Session) -> None:
    # priority: score x amount weight; opened in order t-0 (oldest) .. t-6.
    specs = [("t-0", "review", 0.9, 10_000.0), ("t-1", "challenge", 0.5, 99.0), ("t-2", "review", 0.9, 10_000.0),
             ("t-3", "review", 0.2, 5.0), ("t-4", "challenge", 0.95, 500.0), ("t-5", "review", 0.6, 99.0),
             ("t-6", "review", 0.9, 10_000.0)]  # fmt: skip
    for i, (tx_id, decision, score, amount) in enumerate(specs):
        save_verdicts(session=session, verdicts=[make_verdict(tx_id, decision, score=score, amount=amount,
                                                              card_id=f"card-{i % 2}")])  # fmt: skip
    by_priority = list_cases(session=session, limit=100)
    assert _ids(by_priority) == ["t-0", "t-2", "t-6", "t-4", "t-5", "t-1", "t-3"]
    assert [c.priority for c in by_priority.items] == [90, 90, 90, 64, 30, 25, 5]
    assert by_priority.next_cursor is None
    assert _ids(list_cases(session=session, sort="age", limit=100)) == [s[0] for s in specs]

    for sort in ("priority", "age"):
        pages, cursor = [], None
        while True:
            page = list_cases(session=session, sort=sort, limit=2, cursor=cursor)  # type: ignore[arg-type]
            pages.append(_ids(page))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [i for p in pages for i in p] == _ids(list_cases(session=session, sort=sort, limit=100))  # type: ignore[arg-type]
        assert len(pages) == 4

    claim_case(session=session, case_id=case_id_of(session, "t-2"), actor="alice")
    resolve_case(session=session, case_id=case_id_of(session, "t-5"), actor="bob", resolution="legitimate")
    assert _ids(list_cases(session=session, state="open")) == ["t-0", "t-6", "t-4", "t-1", "t-3"]
    assert _ids(list_cases(session=session, state="claimed")) == ["t-2"]
    assert _ids(list_cases(session=session, assignee="bob")) == ["t-5"]
    assert _ids(list_cases(session=session, decision="challenge")) == ["t-4", "t-1"]
    assert _ids(list_cases(session=session, min_priority=64)) == ["t-0", "t-2", "t-6", "t-4"]
    assert _ids(list_cases(session=session, card_id="card-1", state="open")) == ["t-1", "t-3"]


def test_a_bad_cursor_is_a_value_error(session: Session) -> None:
    for cursor in ("not-base64!", "W10", "WzEsMiwzXQ"):
        with pytest.raises(ValueError, match="invalid cursor"):
            list_cases(session=session, cursor=cursor)
