"""The stream's features equal the offline reference: 4 partitions, 2 workers, a backlog, and a crash."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.features import FEATURE_NAMES, compute_features
from pipeline.records import Transaction, Verdict
from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key, produce_transactions

pytestmark = pytest.mark.integration

LATENESS_SECONDS = 30


def shared_entity_stream(n: int, seed: int) -> list[dict[str, Any]]:
    """Thousands of transactions over three weeks where cards share few devices, IPs and merchants.

    Arrival order is event-time order except for a few records up to LATENESS_SECONDS late, and a few
    exact duplicates (a producer retry), which must not count twice.
    """
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    cards = [f"card-{i:03d}" for i in range(60)]
    t = start
    out: list[dict[str, Any]] = []
    for i in range(n):
        t += timedelta(seconds=rng.expovariate(1 / 600))
        if rng.random() < 0.05:  # bursts: many cards on one IP within seconds
            t += timedelta(seconds=rng.randint(0, 3))
        card = rng.choice(cards)
        tx: dict[str, Any] = {
            "transaction_id": f"p-{seed}-{i:06d}",
            "timestamp": t.isoformat().replace("+00:00", "Z"),
            "amount": round(rng.lognormvariate(3, 1.2), 2),
            "currency": "EUR",
            "card_id": card,
            "merchant_id": f"m-{rng.randint(0, 7)}",
            "card_bin": f"{400000 + cards.index(card) % 9}",
            "merchant_category": rng.choice(["grocery", "fuel", "electronics"]),
            "channel": rng.choice(["pos", "ecom"]),
            "country": rng.choice(["FR", "DE", "FR", "US"]),
            "card_country": "FR",
        }
        if rng.random() < 0.8:
            tx["device_id"] = f"d-{rng.randint(0, 11)}"
        if rng.random() < 0.85:
            tx["ip"] = f"10.0.{rng.randint(0, 2)}.{rng.randint(1, 4)}"
        if rng.random() < 0.7:
            tx["lat"], tx["lon"] = rng.uniform(40, 52), rng.uniform(-5, 15)
        out.append(tx)
    # a few late arrivals: swap a record behind later ones, within the allowed lateness
    for _ in range(n // 100):
        i = rng.randrange(1, n - 3)
        late = out.pop(i)
        late_time = datetime.fromisoformat(late["timestamp"].replace("Z", "+00:00"))
        j = i
        while j < len(out) - 1 and datetime.fromisoformat(
            out[j]["timestamp"].replace("Z", "+00:00")
        ) - late_time < timedelta(seconds=LATENESS_SECONDS - 1):
            j += 1
            if rng.random() < 0.5:
                break
        out.insert(j, late)
    for i in rng.sample(range(n), n // 200):  # producer retries: the same record again, a bit later
        out.insert(min(i + 3, len(out)), dict(out[i]))
    return out


def assert_features_equal(stream: dict[str, list[dict[str, Any]]], offline: Any) -> None:
    mismatches: list[str] = []
    for verdicts in stream.values():
        for verdict in verdicts:
            Verdict.model_validate(verdict)  # every verdict the stream gives meets the contract
    for tx_id, row in offline.iterrows():
        values = stream[tx_id][0]["features"]
        for name in FEATURE_NAMES:
            a, b = values[name], row[name]
            a = math.nan if a is None else float(a)
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                mismatches.append(f"{tx_id} {name}: stream={a} offline={b}")
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:20])


def offline_reference(records: list[dict[str, Any]]) -> Any:
    txs = [Transaction.model_validate(r, strict=False) for r in records]
    return compute_features(txs).to_pandas()


async def test_two_workers_on_four_partitions_match_the_offline_reference(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    records = shared_entity_stream(3000, seed=7)
    ids = {r["transaction_id"] for r in records}
    pipeline_env.extra["RISKSTREAM_WORKER__ALLOWED_LATENESS_SECONDS"] = str(LATENESS_SECONDS)
    # A backlog first, then the workers: partitions are consumed at different speeds, the worst case
    # for cross-partition ordering.
    await produce_transactions(pipeline_env.bootstrap, pipeline_env.topics["TRANSACTIONS_TOPIC"], records)
    for name in ("worker-a", "worker-b"):
        role_processes.append(RoleProcess("worker", pipeline_env, name=name).start())
    stream = await consume_by_key(
        pipeline_env.bootstrap,
        pipeline_env.topics["VERDICTS_TOPIC"],
        ids,
        timeout_s=240,
        processes=role_processes,
    )
    assert all(p.alive() for p in role_processes), [p.log_tail() for p in role_processes]
    assert_features_equal(stream, offline_reference(records))
    duplicates = [k for k, v in stream.items() if len({str(x["features"]) for x in v}) > 1]
    assert not duplicates, f"transactions with differing feature vectors: {duplicates[:5]}"


async def test_worker_killed_mid_stream_recovers_exact_state(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    records = shared_entity_stream(2500, seed=11)
    ids = {r["transaction_id"] for r in records}
    pipeline_env.extra["RISKSTREAM_WORKER__ALLOWED_LATENESS_SECONDS"] = str(LATENESS_SECONDS)
    # The first worker must not release its held tail as "quiet" before it is killed: the second half,
    # produced after the kill, is up to LATENESS_SECONDS older than the first half's newest records.
    pipeline_env.extra["RISKSTREAM_WORKER__IDLE_RELEASE_SECONDS"] = "10"
    topic = pipeline_env.topics["TRANSACTIONS_TOPIC"]
    worker = RoleProcess("worker", pipeline_env, name="worker-1").start()
    role_processes.append(worker)
    await produce_transactions(pipeline_env.bootstrap, topic, records[:1200])
    # Wait until part of the first half is through, then kill without any chance to commit or flush.
    first = {r["transaction_id"] for r in records[:400]}
    await consume_by_key(
        pipeline_env.bootstrap,
        pipeline_env.topics["VERDICTS_TOPIC"],
        first,
        timeout_s=120,
        processes=[worker],
    )
    worker.kill()
    await produce_transactions(pipeline_env.bootstrap, topic, records[1200:])
    restarted = RoleProcess("worker", pipeline_env, name="worker-2").start()
    role_processes.append(restarted)
    stream = await consume_by_key(
        pipeline_env.bootstrap,
        pipeline_env.topics["VERDICTS_TOPIC"],
        ids,
        timeout_s=240,
        processes=[restarted],
    )
    # Re-sent partials may produce a transaction's vector twice; never two different vectors.
    differing = [k for k, v in stream.items() if len({str(x["features"]) for x in v}) > 1]
    assert not differing, f"transactions with differing feature vectors after the crash: {differing[:5]}"
    assert_features_equal(stream, offline_reference(records))
