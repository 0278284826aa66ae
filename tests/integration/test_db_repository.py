"""The repository on a real PostgreSQL and on SQLite: idempotent batch writes, reads, training history."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.orm import LabelRow, ModelVersionRow, RuleVersionRow, TransactionRow, VerdictRow
from pipeline.db.repository import (
    TRANSACTION_FIELDS,
    get_verdict,
    iter_verdicts,
    labelled_history,
    latest_labels,
    list_verdicts,
    record_model_version,
    record_rules_version,
    save_decisions,
    save_labels,
    save_transactions,
    save_verdicts,
)
from pipeline.records import ChallengerVerdict, FiredRule, Label, Reason, Transaction, Verdict

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of each kind; PostgreSQL starts only when a test of this module runs."""
    url: str = request.getfixturevalue("database_url" if request.param == "postgresql" else "sqlite_url")
    upgrade_database(url)
    return url


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            yield s
    finally:
        engine.dispose()


def make_verdict(transaction_id: str, **overrides: Any) -> Verdict:
    fields: dict[str, Any] = {
        "transaction_id": transaction_id,
        "decision": "approve",
        "score": 0.12,
        "model_version": "m-2026-11-01",
        "rules_version": "r-7",
        "event_time": T0,
        "decided_at": T0 + timedelta(milliseconds=40),
        "latency_ms": 3.5,
        "card_id": "card-0001",
        "merchant_id": "merchant-0001",
        "amount": 42.5,
        "currency": "EUR",
    }
    fields.update(overrides)
    return Verdict.model_validate(fields)


def make_label(transaction_id: str, label: str, reported_at: datetime, **overrides: Any) -> Label:
    return Label.model_validate(
        {"transaction_id": transaction_id, "label": label, "reported_at": reported_at, **overrides},
        strict=False,
    )


def count(session: Session, entity: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(entity)) or 0


# --- verdicts -------------------------------------------------------------------------------------------


def test_saving_the_same_verdicts_twice_stores_each_once(session: Session) -> None:
    batch = [make_verdict(f"tx-{i}") for i in range(3)]
    assert save_verdicts(session=session, verdicts=batch) == 3
    assert save_verdicts(session=session, verdicts=batch) == 0
    assert count(session, VerdictRow) == 3


def test_replayed_mixed_batch_inserts_only_the_new_verdicts_and_keeps_the_first(session: Session) -> None:
    assert save_verdicts(session=session, verdicts=[make_verdict("tx-a"), make_verdict("tx-b")]) == 2
    replay = [
        make_verdict("tx-b", decision="decline", score=0.99),
        make_verdict("tx-c"),
        make_verdict("tx-a"),
    ]
    assert save_verdicts(session=session, verdicts=replay) == 1
    assert count(session, VerdictRow) == 3
    kept = get_verdict(session=session, transaction_id="tx-b")
    assert kept is not None
    assert (kept.decision, kept.score) == ("approve", 0.12)


def test_duplicates_inside_one_batch_keep_the_first(session: Session) -> None:
    batch = [make_verdict("tx-d", decision="review"), make_verdict("tx-d", decision="decline")]
    assert save_verdicts(session=session, verdicts=batch) == 1
    kept = get_verdict(session=session, transaction_id="tx-d")
    assert kept is not None and kept.decision == "review"


def test_empty_batches_write_nothing(session: Session) -> None:
    assert save_verdicts(session=session, verdicts=[]) == 0
    assert save_transactions(session=session, transactions=[]) == 0
    assert save_labels(session=session, labels=[]) == 0


def test_a_large_batch_is_stored_whole(session: Session) -> None:
    """More rows than one multi-row INSERT holds: the driver pages them, the count still adds up."""
    batch = [make_verdict(f"tx-{i:05d}", features={"amount_1h": float(i)}) for i in range(2500)]
    assert save_verdicts(session=session, verdicts=batch) == 2500
    assert save_verdicts(session=session, verdicts=[*batch[-10:], make_verdict("tx-new")]) == 1


def test_verdict_round_trips_every_field_with_times_in_utc(session: Session) -> None:
    plus_two = timezone(timedelta(hours=2))
    verdict = make_verdict(
        "tx-full",
        decision="decline",
        score=0.93,
        reasons=[
            Reason(code="velocity_card_1h", text="12 payments in an hour", kind="rule", value=12.0),
            Reason(code="model", text="model score 0.93", kind="model"),
        ],
        rules=[FiredRule(id="card_velocity", state="enforce", action="decline")],
        event_time=datetime(2026, 11, 2, 14, 0, 0, 123456, tzinfo=plus_two),
        decided_at=datetime(2026, 11, 2, 12, 0, 0, 170000, tzinfo=UTC),
        degraded=True,
        features={"amount_1h": 512.25, "seconds_since_last": None},
    )
    save_verdicts(session=session, verdicts=[verdict])
    session.expunge_all()

    stored = get_verdict(session=session, transaction_id="tx-full")
    assert stored == verdict
    assert stored is not None
    assert stored.event_time == datetime(2026, 11, 2, 12, 0, 0, 123456, tzinfo=UTC)
    assert stored.event_time.tzinfo == UTC and stored.decided_at.tzinfo == UTC


def test_the_challengers_call_round_trips_and_is_null_without_one(session: Session) -> None:
    challenger = ChallengerVerdict(version="m-2", score=0.05, decision="approve")
    challenged = make_verdict("tx-ch", decision="review", score=0.61, challenger=challenger)
    save_verdicts(session=session, verdicts=[challenged, make_verdict("tx-alone")])
    session.expunge_all()

    assert get_verdict(session=session, transaction_id="tx-ch") == challenged
    alone = get_verdict(session=session, transaction_id="tx-alone")
    assert alone is not None and alone.challenger is None
    # typed columns, so SQL can aggregate the challenger's calls
    row = session.execute(
        select(VerdictRow.challenger_version, VerdictRow.challenger_score, VerdictRow.challenger_decision).where(
            VerdictRow.transaction_id == "tx-ch"
        )
    ).one()
    assert tuple(row) == ("m-2", 0.05, "approve")
    assert session.scalar(select(func.count()).where(VerdictRow.challenger_version.is_(None))) == 1


def test_iter_verdicts_reads_a_time_window_oldest_first_in_batches(session: Session) -> None:
    verdicts = [
        make_verdict(f"tx-{i}", event_time=T0 + timedelta(minutes=i),
                     challenger=ChallengerVerdict(version="m-2", score=0.5, decision="review") if i % 2 else None)
        for i in (3, 0, 5, 1, 4, 2)
    ]  # fmt: skip
    save_verdicts(session=session, verdicts=verdicts)
    window = list(
        iter_verdicts(session=session, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=5), batch_size=2)
    )
    assert [v.transaction_id for v in window] == ["tx-1", "tx-2", "tx-3", "tx-4"]  # since inclusive, until not
    assert [v.challenger is not None for v in window] == [True, False, True, False]
    assert [v.transaction_id for v in iter_verdicts(session=session, since=T0 + timedelta(minutes=4))] == [
        "tx-4",
        "tx-5",
    ]


def test_unknown_transaction_has_no_verdict(session: Session) -> None:
    assert get_verdict(session=session, transaction_id="tx-never") is None


def test_non_finite_numbers_are_stored_as_null(session: Session) -> None:
    """JSON has no NaN: PostgreSQL would refuse the whole batch for one missing feature written as NaN."""
    verdict = make_verdict(
        "tx-nan",
        features={"a": math.nan, "b": math.inf, "c": 1.5},
        reasons=[Reason(code="model", text="model", kind="model", value=math.nan)],
    )
    assert save_verdicts(session=session, verdicts=[verdict]) == 1
    stored = get_verdict(session=session, transaction_id="tx-nan")
    assert stored is not None
    assert stored.features == {"a": None, "b": None, "c": 1.5}
    assert stored.reasons[0].value is None


def test_verdicts_without_features_store_null_not_json_null(session: Session) -> None:
    save_verdicts(session=session, verdicts=[make_verdict("tx-nofeat")])
    assert session.scalar(select(VerdictRow.id).where(VerdictRow.features.is_(None))) is not None


def test_list_verdicts_filters_by_card_and_time_newest_first(session: Session) -> None:
    verdicts = [
        make_verdict(f"tx-{i}", card_id="card-A" if i % 2 == 0 else "card-B", event_time=T0 + timedelta(minutes=i))
        for i in range(6)
    ]
    save_verdicts(session=session, verdicts=verdicts)

    card_a = list_verdicts(session=session, card_id="card-A", since=None, limit=100)
    assert [v.transaction_id for v in card_a] == ["tx-4", "tx-2", "tx-0"]

    recent = list_verdicts(session=session, card_id=None, since=T0 + timedelta(minutes=3), limit=100)
    assert [v.transaction_id for v in recent] == ["tx-5", "tx-4", "tx-3"]  # since is inclusive

    since_other_zone = (T0 + timedelta(minutes=3)).astimezone(timezone(timedelta(hours=-5)))
    assert list_verdicts(session=session, card_id="card-B", since=since_other_zone, limit=100) == [
        verdicts[5],
        verdicts[3],
    ]
    assert [v.transaction_id for v in list_verdicts(session=session, card_id=None, since=None, limit=2)] == [
        "tx-5",
        "tx-4",
    ]
    assert list_verdicts(session=session, card_id="card-none", since=None, limit=10) == []


def test_list_verdicts_refuses_a_non_positive_limit(session: Session) -> None:
    with pytest.raises(ValueError, match="limit"):
        list_verdicts(session=session, card_id=None, since=None, limit=0)


# --- transactions and labels ----------------------------------------------------------------------------


def test_transactions_are_stored_once(session: Session, transaction_factory: Callable[..., Transaction]) -> None:
    batch = [transaction_factory(), transaction_factory()]
    assert save_transactions(session=session, transactions=batch) == 2
    assert save_transactions(session=session, transactions=[*batch, transaction_factory()]) == 1
    assert count(session, TransactionRow) == 3


def test_a_transaction_is_stored_only_beside_a_verdict_that_decides_it(
    session: Session, transaction_factory: Callable[..., Transaction]
) -> None:
    decided = transaction_factory(transaction_id="t-1", timestamp=T0, amount=42.5, card_id="card-0001",
                                  merchant_id="merchant-0001", currency="EUR")  # fmt: skip
    other = transaction_factory(transaction_id="t-1", timestamp=T0, amount=99.0, card_id="card-0001",
                                merchant_id="merchant-0001", currency="EUR")  # fmt: skip
    orphan = transaction_factory(transaction_id="t-2")
    # In one batch: the verdict with its transaction; another copy of the id and an unscored one are refused.
    assert save_decisions(session=session, verdicts=[make_verdict("t-1")], transactions=[other, orphan]) == (1, 0, 2)
    assert save_decisions(session=session, verdicts=[make_verdict("t-1")], transactions=[decided]) == (0, 1, 0)
    assert save_decisions(session=session, verdicts=[], transactions=[decided]) == (0, 0, 0)  # a replay
    [row] = session.scalars(select(TransactionRow)).all()
    assert (row.transaction_id, row.amount) == ("t-1", 42.5)
    assert count(session, VerdictRow) == 1


def test_replayed_labels_are_stored_once(session: Session) -> None:
    chargeback = make_label("tx-1", "chargeback", T0 + timedelta(days=20), source="issuer-feed")
    assert save_labels(session=session, labels=[chargeback, make_label("tx-2", "confirmed_fraud", T0)]) == 2
    assert save_labels(session=session, labels=[chargeback]) == 0
    # the same transaction may get more labels: a later confirmation is new information
    confirmation = make_label("tx-1", "confirmed_legitimate", T0 + timedelta(days=25))
    assert save_labels(session=session, labels=[chargeback, confirmation]) == 1
    assert count(session, LabelRow) == 3
    rows = session.scalars(select(LabelRow).where(LabelRow.transaction_id == "tx-1").order_by(LabelRow.id)).all()
    assert [(r.label, r.is_fraud, r.source) for r in rows] == [
        ("chargeback", True, "issuer-feed"),
        ("confirmed_legitimate", False, None),
    ]
    assert rows[0].reported_at == T0 + timedelta(days=20)


def test_labelled_history_joins_each_transaction_with_its_latest_label(
    session: Session, transaction_factory: Callable[..., Transaction]
) -> None:
    unlabelled = transaction_factory(timestamp="2026-11-02T12:00:00Z")
    fraud = transaction_factory(
        timestamp="2026-11-02T12:01:00.250Z",
        card_bin="412345",
        device_id="dev-1",
        ip="203.0.113.7",
        channel="ecom",
        country="DE",
        card_country="FR",
        lat=48.1,
        lon=11.5,
        merchant_category="electronics",
        customer_id="cust-1",
    )
    cleared = transaction_factory(timestamp="2026-11-02T12:02:00Z")
    save_transactions(session=session, transactions=[cleared, fraud, unlabelled])
    fraud_time = T0 + timedelta(days=3)
    save_labels(
        session=session,
        labels=[
            make_label(fraud.transaction_id, "confirmed_fraud", fraud_time),
            make_label(cleared.transaction_id, "chargeback", T0 + timedelta(days=10)),
            make_label(cleared.transaction_id, "confirmed_legitimate", T0 + timedelta(days=12)),
            make_label("tx-not-stored", "chargeback", T0),  # a label for a transaction we never saw
        ],
    )

    history = labelled_history(session=session)

    assert list(history.columns) == [*TRANSACTION_FIELDS, "is_fraud", "label_time"]
    assert list(history["transaction_id"]) == [
        unlabelled.transaction_id,
        fraud.transaction_id,
        cleared.transaction_id,
    ]
    assert list(history["is_fraud"]) == [False, True, False]
    assert history["is_fraud"].dtype == bool
    assert pd.isna(history["label_time"].iloc[0])
    assert history["label_time"].iloc[1] == pd.Timestamp(fraud_time)
    assert history["label_time"].iloc[2] == pd.Timestamp(T0 + timedelta(days=12))
    assert str(history["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert history["timestamp"].iloc[1] == pd.Timestamp("2026-11-02T12:01:00.250Z")
    row = history.iloc[1]
    assert (row["card_bin"], row["device_id"], row["ip"], row["channel"]) == (
        "412345",
        "dev-1",
        "203.0.113.7",
        "ecom",
    )
    assert (row["amount"], row["lat"], row["lon"]) == (42.5, 48.1, 11.5)
    assert history["lat"].dtype == "float64" and pd.isna(history["lat"].iloc[0])
    assert pd.isna(history["device_id"].iloc[0])


def test_latest_labels_keep_each_transactions_last_report(session: Session) -> None:
    save_labels(
        session=session,
        labels=[
            make_label("tx-1", "chargeback", T0 + timedelta(days=10)),
            make_label("tx-1", "confirmed_legitimate", T0 + timedelta(days=12)),
            make_label("tx-2", "confirmed_fraud", T0),
        ],
    )
    assert latest_labels(session=session) == {"tx-1": False, "tx-2": True}


def test_labelled_history_of_an_empty_database_has_the_columns(session: Session) -> None:
    history = labelled_history(session=session)
    assert history.empty
    assert list(history.columns) == [*TRANSACTION_FIELDS, "is_fraud", "label_time"]


# --- versions -------------------------------------------------------------------------------------------


def test_model_and_rule_versions_are_recorded_once(session: Session) -> None:
    activated = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    assert record_model_version(session=session, version="m-1", activated_at=activated, metadata={"auc": 0.91})
    assert not record_model_version(session=session, version="m-1", metadata={"auc": 0.5})
    model = session.get(ModelVersionRow, "m-1")
    assert model is not None
    assert (model.activated_at, model.metadata_) == (activated, {"auc": 0.91})

    assert record_rules_version(session=session, version="r-7", rule_ids=["card_velocity", "ip_fanout"])
    assert not record_rules_version(session=session, version="r-7", rule_ids=[])
    rules = session.get(RuleVersionRow, "r-7")
    assert rules is not None
    assert rules.rule_ids == ["card_velocity", "ip_fanout"]
    assert rules.first_seen_at.tzinfo == UTC
