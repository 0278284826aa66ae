"""The console's reads on PostgreSQL and SQLite alike: the decision overview (buckets, rates, percentiles,
top rules from the JSON rule lists), the open-case count, a case's neighbours in the queue, releasing a claim."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.cases import CaseConflict
from pipeline.db.cases import adjacent_cases, claim_case, count_cases, list_cases, release_case, resolve_case
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.overview import decision_overview
from pipeline.db.repository import save_verdicts
from pipeline.records import FiredRule, Verdict

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request: pytest.FixtureRequest) -> Iterator[Any]:
    url = request.getfixturevalue("database_url" if request.param == "postgresql" else "sqlite_url")
    upgrade_database(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def verdict(i: int, decision: str, minute: int, rules: tuple[str, ...] = (), score: float = 0.5) -> Verdict:
    at = T0 + timedelta(minutes=minute, seconds=i % 50)
    return Verdict(
        transaction_id=f"tx-{i}", decision=decision, score=score, model_version="m", rules_version="r",  # type: ignore[arg-type]
        event_time=at, decided_at=at + timedelta(milliseconds=10), latency_ms=float(i + 1), card_id=f"card-{i % 3}",
        merchant_id="m-1", amount=100.0, currency="EUR",
        rules=[FiredRule(id=r, state="enforce", action="review") for r in rules],
    )  # fmt: skip


def test_the_overview_counts_buckets_percentiles_and_top_rules(sessions: Any) -> None:
    verdicts = [verdict(i, "approve", minute=i % 3) for i in range(12)]
    verdicts += [verdict(12, "review", 0, ("card-burst", "card-testing-ip")), verdict(13, "review", 1, ("card-burst",)),
                 verdict(14, "decline", 2, ("deny-listed-card",)), verdict(15, "approve", 90)]  # fmt: skip
    with sessions() as s:
        save_verdicts(session=s, verdicts=verdicts)
        overview = decision_overview(session=s, since=T0, until=T0 + timedelta(minutes=60))
    assert overview.total == 15 and overview.by_decision == {"approve": 12, "review": 2, "decline": 1}
    assert overview.flagged == 3 and overview.flag_rate == pytest.approx(0.2) and overview.degraded == 0
    assert [(b.start, b.verdicts, b.flagged) for b in overview.buckets] == [
        (T0, 5, 1), (T0 + timedelta(minutes=1), 5, 1), (T0 + timedelta(minutes=2), 5, 1),
    ]  # fmt: skip
    assert overview.latency_ms == {50: 8.0, 95: 15.0, 99: 15.0}  # nearest rank of 1..15 ms
    assert overview.top_rules == [("card-burst", 2), ("card-testing-ip", 1), ("deny-listed-card", 1)]
    assert overview.per_minute == pytest.approx(15 / 60)


def test_an_empty_window_is_all_zeros(sessions: Any) -> None:
    with sessions() as s:
        overview = decision_overview(session=s, since=T0, until=T0 + timedelta(minutes=5))
    assert (overview.total, overview.flag_rate, overview.latency_ms, overview.top_rules, overview.buckets) == (
        0, None, {}, [], [],
    )  # fmt: skip


def test_open_count_neighbours_and_release(sessions: Any) -> None:
    with sessions() as s:
        save_verdicts(session=s, verdicts=[verdict(i, "review", i, score=0.9 - 0.1 * i) for i in range(4)])
        ids = [c.id for c in list_cases(session=s).items]  # highest priority first
        cases = {c.id: c for c in list_cases(session=s).items}
        assert count_cases(session=s, state="open") == 4 and count_cases(session=s) == 4
        assert adjacent_cases(session=s, case=cases[ids[0]]) == (None, ids[1])
        assert adjacent_cases(session=s, case=cases[ids[2]]) == (ids[1], ids[3])

        claim_case(session=s, case_id=ids[1], actor="alice")
        resolve_case(session=s, case_id=ids[2], actor="alice", resolution="legitimate")
        assert count_cases(session=s, state="open") == 2
        assert adjacent_cases(session=s, case=cases[ids[1]]) == (ids[0], ids[3])  # claimed: still in the queue
        assert adjacent_cases(session=s, case=cases[ids[3]]) == (ids[1], None)  # the resolved one is skipped

        released = release_case(session=s, case_id=ids[1])
        assert (released.state, released.assignee, released.claimed_at) == ("open", None, None)
        assert release_case(session=s, case_id=ids[1]).state == "open"  # again: nothing changes
        with pytest.raises(CaseConflict, match="resolved"):
            release_case(session=s, case_id=ids[2])
