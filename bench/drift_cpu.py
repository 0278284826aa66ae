"""Drift monitoring's cost: worker CPU per transaction with `RISKSTREAM_WORKER__DRIFT` on and off, and the
pure per-batch cost of counting a batch into the sliding windows (pipeline.drift).

The worker figure: one worker process works through a backlog of generated transactions on the local broker;
its CPU (bench/procstat.py) from its 1000th verdict to its last, divided by the verdicts in between (start-up
and model loading are left out). /metrics is read once a second for the verdict count, so the scrape's PSI
computation is in the drift-on figure. Runs alternate off/on to spread the shared machine's noise.

Usage: python -m bench.drift_cpu [--transactions 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.procstat import cpu_seconds
from pipeline.features import FEATURE_NAMES

START_AT = 1000


def per_batch_us(model_dir: Path) -> dict[int, float]:
    """Microseconds per transaction of `DriftWatch.observe` by batch size."""
    from pipeline.drift import DriftWatch
    from pipeline.registry import load_model

    model = load_model(model_dir)
    watch = DriftWatch()
    rng = np.random.default_rng(0)
    out = {}
    for size in (1, 10, 100, 500):
        vectors = rng.lognormal(size=(size, len(FEATURE_NAMES))).tolist()
        scores = rng.uniform(size=size).tolist()
        n = max(20_000 // size, 20)

        def observe(v: list[list[float]] = vectors, s: list[float] = scores) -> None:
            watch.observe(model.version, model.metadata, v, s, time.time())

        seconds = timeit.timeit(observe, number=n)
        out[size] = 1e6 * seconds / (n * size)
    return out


async def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, orjson.dumps(r), key=r["card_id"].encode()) for r in records]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def one_run(
    records: list[dict[str, Any]], models: Path, drift: bool, bootstrap: str, port: int, app_id: str = "drift-bench"
) -> float:
    """Worker CPU seconds per transaction from its START_AT-th verdict to its last."""
    from pipeline.kafka.admin import TopicSpec, ensure_topics

    suffix = uuid.uuid4().hex[:8]
    topics = {
        "TRANSACTIONS_TOPIC": f"transactions-{suffix}", "VERDICTS_TOPIC": f"verdicts-{suffix}",
        "LABELS_TOPIC": f"labels-{suffix}", "DLQ_TOPIC": f"transactions-{suffix}.dlq",
        "ENTITY_TOPIC": f"by-entity-{suffix}", "PARTIALS_TOPIC": f"partials-{suffix}",
    }  # fmt: skip
    ensure_topics(bootstrap, [TopicSpec(name=t, partitions=4) for t in topics.values()])
    await produce(bootstrap, topics["TRANSACTIONS_TOPIC"], records)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_")}
    env |= {f"RISKSTREAM_KAFKA__{k}": v for k, v in topics.items()}
    env |= {
        "RISKSTREAM_ENVIRONMENT": "test", "RISKSTREAM_KAFKA__BOOTSTRAP": bootstrap, "RISKSTREAM_KAFKA__PARTITIONS": "4",
        "RISKSTREAM_WORKER__APP_ID": f"{app_id}-{suffix}", "RISKSTREAM_WORKER__WEB_PORT": str(port),
        "RISKSTREAM_WORKER__DATA_DIR": tempfile.mkdtemp(prefix="drift-bench-"), "RISKSTREAM_MODEL__DIR": str(models),
        "RISKSTREAM_WORKER__DRIFT": "true" if drift else "false",
    }  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first: tuple[float, float] | None = None
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    text = ""
                verdicts = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("riskstream_worker_verdicts_total{")
                )
                if first is None and verdicts >= START_AT:
                    first = (verdicts, cpu_seconds(worker.pid))
                if first is not None and verdicts >= len(records):
                    return (cpu_seconds(worker.pid) - first[1]) / (verdicts - first[0])
                await asyncio.sleep(1.0)
        raise TimeoutError("the worker did not finish the backlog in 600 s")
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--port", type=int, default=6199)
    args = parser.parse_args()
    from training.generate import GeneratorConfig, generate
    from training.train import TrainConfig, train

    root = Path(tempfile.mkdtemp(prefix="drift-bench-models-"))
    train(TrainConfig(models_dir=root, transactions=120_000, days=40, seed=7, num_boost_round=80))
    print("per-batch observe, us per transaction:", {k: round(v, 2) for k, v in per_batch_us(root).items()})
    frame = generate(GeneratorConfig(transactions=args.transactions, days=3, seed=11))
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records = [{k: v for k, v in r.items() if v is not None and v == v} for r in frame.to_dict("records")]
    wire = ("transaction_id", "timestamp", "amount", "currency", "card_id", "merchant_id", "card_bin", "device_id",
            "ip", "merchant_category", "channel", "country", "card_country", "lat", "lon")  # fmt: skip
    records = [{k: r[k] for k in wire if k in r} for r in records]
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for drift in (False, True):
            value = asyncio.run(one_run(records, root, drift, args.bootstrap, args.port))
            results[drift].append(value)
            print(f"drift {'on ' if drift else 'off'}: {1e6 * value:.0f} us CPU per transaction")
    for drift, values in results.items():
        print(f"drift {'on ' if drift else 'off'}: median {1e6 * float(np.median(values)):.0f} us/tx over {values}")


if __name__ == "__main__":
    main()
