"""Labels in the stream are exact, and `train --from-db` trains on the stored, labelled history."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.migrate import upgrade_database
from pipeline.db.repository import save_labels, save_transactions
from pipeline.features import LabelEvent, compute_features
from pipeline.records import Label, Transaction, epoch_ms
from pipeline.registry import current_version, read_metadata
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions
from tests.integration.test_feature_parity import LATENESS_SECONDS, assert_features_equal, shared_entity_stream
from training.generate import GeneratorConfig, generate

pytestmark = pytest.mark.integration


def labels_for(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Chargebacks for some transactions hours to days later, some confirmed again (the same fraud),
    some withdrawn as legitimate, some naming no merchant or no card; in report-time order, as a feed
    sends them."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for r in rng.sample(records, len(records) // 8):
        at = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        reported = at + timedelta(seconds=rng.randint(600, 4 * 86400))
        base = {
            "transaction_id": r["transaction_id"],
            "merchant_id": r["merchant_id"],
            "card_id": r["card_id"],
            "source": "issuer",
        }
        out.append(base | {"label": "chargeback", "reported_at": reported})
        roll = rng.random()
        if roll < 0.2:
            out.append(base | {"label": "confirmed_fraud", "reported_at": reported + timedelta(hours=5)})
        elif roll < 0.3:
            out.append(base | {"label": "confirmed_legitimate", "reported_at": reported + timedelta(days=2)})
        elif roll < 0.35:
            out.append({"transaction_id": r["transaction_id"], "label": "chargeback", "reported_at": reported})
        elif roll < 0.45:
            out.append(base | {"card_id": None, "label": "chargeback", "reported_at": reported})
        elif roll < 0.55:
            out.append(base | {"merchant_id": None, "label": "chargeback", "reported_at": reported})
    out.sort(key=lambda label: label["reported_at"])
    return [
        {k: v for k, v in label.items() if v is not None} | {"reported_at": label["reported_at"].isoformat()}
        for label in out
    ]


async def produce_labels(bootstrap: str, topic: str, labels: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic, orjson.dumps(v), key=v["transaction_id"].encode()) for v in labels]
        for fut in sent:
            await fut
    finally:
        await producer.stop()


def label_events(labels: list[dict[str, Any]]) -> list[LabelEvent]:
    events = []
    for raw in labels:
        label = Label.model_validate_json(orjson.dumps(raw))
        events.append(
            LabelEvent(label.transaction_id, label.merchant_id, label.reported_at_ms, label.is_fraud, label.card_id)
        )
    return events


async def test_labels_in_the_stream_give_the_offline_reference_on_four_partitions_and_two_workers(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    records = shared_entity_stream(2500, seed=21)
    labels = labels_for(records, seed=21)
    ids = {r["transaction_id"] for r in records}
    pipeline_env.extra["RISKSTREAM_WORKER__ALLOWED_LATENESS_SECONDS"] = str(LATENESS_SECONDS)
    # A backlog of both: every partition of both topics lags, so the merge must order labels among the
    # transactions by report time, whatever the speed at which each partition is read.
    await produce_transactions(pipeline_env.bootstrap, pipeline_env.topics["TRANSACTIONS_TOPIC"], records)
    await produce_labels(pipeline_env.bootstrap, pipeline_env.topics["LABELS_TOPIC"], labels)
    for name in ("worker-a", "worker-b"):
        role_processes.append(RoleProcess("worker", pipeline_env, name=name).start())
    stream = await consume_by_key(
        pipeline_env.bootstrap, pipeline_env.topics["VERDICTS_TOPIC"], ids, timeout_s=300, processes=role_processes
    )
    txs = [Transaction.model_validate(r, strict=False) for r in records]
    offline = compute_features(txs, label_events(labels)).to_pandas()
    assert offline["merchant_fraud_count_30d"].max() >= 3, "the data must exercise the label features"
    assert (offline["merchant_fraud_count_30d"] == 0).any()
    assert offline["card_fraud_count_30d"].max() >= 1 and (offline["card_fraud_count_30d"] == 0).any()
    assert_features_equal(stream, offline)


def test_train_from_db_trains_on_the_stored_labelled_history(database_url: str, tmp_path: Path) -> None:
    df = generate(GeneratorConfig(transactions=30000, days=40, seed=9))
    upgrade_database(database_url)
    engine = make_engine(database_url)
    fields = list(Transaction.model_fields)
    txs, labels = [], []
    now = datetime.now(UTC)
    for row in df.to_dict("records"):
        values = {k: row[k] for k in fields if k in row and row[k] == row[k] and row[k] is not None}
        values["timestamp"] = row["timestamp"].to_pydatetime()
        txs.append(Transaction.model_validate(values, strict=False))
        reported = row["label_time"].to_pydatetime() if row["is_fraud"] else None
        if reported is not None and reported < now:  # a chargeback not due yet is not in the database yet
            labels.append(
                Label(transaction_id=row["transaction_id"], label="chargeback", reported_at=reported,
                      merchant_id=row["merchant_id"])
            )  # fmt: skip
    with session_factory(engine)() as session:
        save_transactions(session=session, transactions=txs)
        save_labels(session=session, labels=labels)
    engine.dispose()
    assert labels and all(epoch_ms(lb.reported_at) > 0 for lb in labels)

    models = tmp_path / "models"
    result = CliRunner().invoke(
        app,
        ["train", "--from-db", "--models-dir", str(models)],
        env={"RISKSTREAM_DATABASE__URL": database_url},
    )
    assert result.exit_code == 0, result.output
    version = current_version(models)
    assert version is not None
    meta = read_metadata(models / version)
    assert meta.params["data_source"] == "database" and meta.params["label_features"] is True
    test = meta.metrics["test"]
    assert test["average_precision"] > 10 * test["fraud_rate"], test


def test_train_from_db_on_an_empty_database_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    upgrade_database(database_url)
    result = CliRunner().invoke(
        app,
        ["train", "--from-db", "--models-dir", str(tmp_path / "m")],
        env={"RISKSTREAM_DATABASE__URL": database_url},
    )
    assert result.exit_code == 2
    assert "no transactions" in result.output
