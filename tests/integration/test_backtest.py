"""A backtest reports what the live pipeline does: the same per-rule hits as a worker given the same rules,
and, from PostgreSQL, the decisions the stored verdicts served."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import save_labels, save_transactions, save_verdicts
from pipeline.io import iter_wire_transactions, write_transactions
from pipeline.records import FiredRule, Label, Transaction, Verdict
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions
from tests.integration.test_label_features import produce_labels
from tests.unit.test_backtest import CANDIDATE, CURRENT, ROWS, rules_dir, write_history
from training.backtest.history import read_label_file
from training.backtest.run import BacktestConfig, run_backtest
from training.dataset import label_records
from training.generate import GeneratorConfig, generate

pytestmark = pytest.mark.integration

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
#: Rules on top of the default set, thresholds low enough to fire on a short history: features, label
#: features, transaction fields, the model score, in every state.
EXTRA = """rules:
  - id: t-card-pair
    when: card_count_5m >= 2
    action: review
    state: enforce
  - id: t-ip-cards
    when: ip_distinct_cards_1h >= 2 and not (tx.channel == 'pos')
    action: decline
    state: shadow
  - id: t-score
    when: score >= 0.2 or tx.amount * 2 > 1500
    action: challenge
    state: audit
  - id: t-merchant-fraud
    when: merchant_fraud_count_30d >= 1
    action: review
    state: audit
  - id: t-missing-device
    when: tx.device_id is missing or device_distinct_cards_24h >= 2
    action: review
    state: audit
"""


async def test_backtest_hits_per_rule_equal_the_live_pipeline_s(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess], trained_models_dir: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "candidate"
    shutil.copytree(REPO_RULES, rules)
    (rules / "extra.yaml").write_text(EXTRA)
    df = generate(GeneratorConfig(transactions=2500, days=7, seed=23)).sort_values("timestamp", kind="stable")
    history = write_history_file(df, tmp_path / "history.parquet")
    labels_path = tmp_path / "labels.jsonl"
    labels_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in label_records(df)))
    accepted, _ = read_label_file(labels_path)  # the ones the worker takes (none reported far in the future)
    kept = {e.transaction_id for e in accepted}
    records = list(iter_wire_transactions(df))
    ids = {r["transaction_id"] for r in records}

    pipeline_env.extra["RISKSTREAM_RULES__DIR"] = str(rules)
    await produce_transactions(pipeline_env.bootstrap, pipeline_env.topics["TRANSACTIONS_TOPIC"], records)
    await produce_labels(
        pipeline_env.bootstrap,
        pipeline_env.topics["LABELS_TOPIC"],
        [r for r in label_records(df) if r["transaction_id"] in kept],
    )
    role_processes.append(RoleProcess("worker", pipeline_env).start())
    stream = await consume_by_key(
        pipeline_env.bootstrap, pipeline_env.topics["VERDICTS_TOPIC"], ids, timeout_s=150, processes=role_processes
    )
    live = Counter(rule["id"] for verdicts in stream.values() for rule in verdicts[0]["rules"])

    times = pd.to_datetime(df["timestamp"], utc=True)
    summary, _ = run_backtest(
        BacktestConfig(
            rules_dir=rules,
            current_rules_dir=REPO_RULES,
            since=times.min().to_pydatetime(),
            until=times.max().to_pydatetime() + timedelta(seconds=1),
            out=tmp_path / "out",
            models_dir=trained_models_dir,
            data=history,
            labels=labels_path,
            processes=1,
        )
    )
    backtest = {r["id"]: r["hits"] for r in summary["rules"] if r["hits"]}
    assert summary["rows"] == len(ids)
    assert backtest == dict(live)
    fired = {r["id"] for r in summary["rules"] if r["hits"]}
    assert {"t-card-pair", "t-ip-cards", "t-score", "t-merchant-fraud", "t-missing-device"} <= fired, backtest


def write_history_file(df: pd.DataFrame, path: Path) -> Path:
    write_transactions(df, path)
    return path


def test_backtest_from_postgres_compares_with_the_stored_verdicts(database_url: str, tmp_path: Path) -> None:
    write_history(tmp_path / "history.parquet")  # the same seven transactions as the unit test
    start = datetime(2026, 10, 1, 23, 0, tzinfo=UTC)
    times = [start + timedelta(hours=2 if i else 0, minutes=i) for i in range(len(ROWS))]
    txs = [
        Transaction.model_validate(
            {"transaction_id": tx_id, "timestamp": t, "amount": amount, "currency": "EUR", "card_id": f"card-{i}",
             "merchant_id": "m-1", "country": country},
            strict=False,
        )
        for i, ((tx_id, amount, country, _), t) in enumerate(zip(ROWS, times, strict=True))
    ]  # fmt: skip
    # What was served: t3 declined by big-amount, t4 sent to review by the model, the rest approved.
    served = {"t3": ("decline", [FiredRule(id="big-amount", state="enforce", action="decline")]), "t4": ("review", [])}
    verdicts = [
        Verdict(transaction_id=tx.transaction_id, decision=served.get(tx.transaction_id, ("approve", []))[0],
                score=0.1, rules=served.get(tx.transaction_id, ("approve", []))[1], model_version="m",
                rules_version="r", event_time=tx.timestamp, decided_at=tx.timestamp, latency_ms=1.0,
                card_id=tx.card_id, merchant_id=tx.merchant_id, amount=tx.amount, currency="EUR")
        for tx in txs
    ]  # fmt: skip
    labels = [
        Label(transaction_id=tx_id, label="chargeback", reported_at=start + timedelta(days=3), merchant_id="m-1")
        for tx_id, _, _, fraud in ROWS
        if fraud
    ]
    upgrade_database(database_url)
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        save_verdicts(session=session, verdicts=verdicts)
        save_transactions(session=session, transactions=txs)
        save_labels(session=session, labels=labels)
    engine.dispose()

    from pipeline.settings import Settings

    summary, paths = run_backtest(
        BacktestConfig(
            rules_dir=rules_dir(tmp_path, "candidate", CANDIDATE),
            current_rules_dir=rules_dir(tmp_path, "cur", CURRENT),
            since=datetime(2026, 10, 2),
            until=datetime(2026, 10, 3),
            out=tmp_path / "out",
            model="none",
            models_dir=tmp_path / "models",
            from_db=True,
            processes=1,
        ),
        settings=Settings(database={"url": database_url}),
    )
    assert summary["served_source"] == "verdicts" and summary["source"] == "database"
    assert summary["rows"] == 6 and summary["fraud"] == {"count": 3, "amount": 770.0}
    assert summary["served"]["decisions"] == {"approve": 4, "review": 1, "challenge": 0, "decline": 1}
    assert summary["changes"] == {"approve→review": 1, "approve→decline": 2, "review→decline": 1}
    big = summary["rules"][0]
    assert (big["id"], big["hits"], big["served_hits"]) == ("big-amount", 4, 1)
    assert paths["html"].is_file()
