"""`riskstream produce`, `replay` and `tail`: transactions in, verdicts out, from the command line.

`produce` sends a file as a payment system would (key = card_id, Java-compatible murmur2 partitioning).
`replay` sends it through the running pipeline, waits for every verdict and writes them to JSON Lines:
the tool for backtests, evaluation and demos. `tail` follows verdicts with filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from pipeline.blocking import off_loop


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
        "partitioner": "murmur2_random",  # the same partition for a key as the Java client and aiokafka
        "compression.type": "lz4",
    })  # fmt: skip


def produce_file(path: Path, *, topic: str, bootstrap: str, rate: float = 0.0, limit: int | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> tuple[int, int, list[str]]:  # fmt: skip
    """Send a transaction file; returns (delivered, failed, ids sent)."""
    from pipeline.io import iter_wire_transactions, read_transactions_file

    df = read_transactions_file(path)
    producer = _producer(bootstrap)
    failed: list[str] = []
    ids: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    started = time.monotonic()
    for i, record in enumerate(iter_wire_transactions(df)):
        if limit is not None and i >= limit:
            break
        if rate > 0:
            wait = started + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                producer.produce(topic, key=record["card_id"], value=orjson.dumps(record), headers=headers,
                                 on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        ids.append(record["transaction_id"])
    producer.flush(60)
    return len(ids) - len(failed), len(failed), ids


async def _collect(bootstrap: str, topic: str, ids: set[str], timeout_s: float, out: Any,
                   ready: asyncio.Event) -> int:  # fmt: skip
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
                                fetch_max_wait_ms=100)  # fmt: skip
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve "latest" now, before anything is produced
        ready.set()
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while not ids <= seen and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    key = m.key.decode() if m.key else ""
                    if key in ids and key not in seen:
                        seen.add(key)
                        out.write(m.value + b"\n")
        return len(seen)
    finally:
        await consumer.stop()


def register(app: typer.Typer) -> None:
    from pipeline.settings import get_settings

    @app.command("produce")
    def produce_command(
        file: Annotated[Path, typer.Argument(help="Transactions: .parquet, .jsonl or .csv.")],
        rate: Annotated[float, typer.Option(min=0, help="Transactions per second (0 = as fast as possible).")] = 0,
        limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many.")] = None,
    ) -> None:
        """Send transactions to the transactions topic without waiting for verdicts."""
        settings = get_settings()
        delivered, failed, _ = produce_file(file, topic=settings.kafka.transactions_topic,
                                            bootstrap=settings.kafka.bootstrap, rate=rate, limit=limit)  # fmt: skip
        typer.echo(f"delivered {delivered:,}, failed {failed:,} to {settings.kafka.transactions_topic}")
        if failed:
            raise typer.Exit(1)

    @app.command("replay")
    def replay_command(
        file: Annotated[Path, typer.Argument(help="Transactions: .parquet, .jsonl or .csv.")],
        out: Annotated[Path, typer.Option("--out", help="Verdicts, JSON Lines.")],
        with_features: Annotated[bool, typer.Option(help="Ask for each verdict's feature vector.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the last verdict.")] = 600,
    ) -> None:
        """Send a file through the running pipeline and write every verdict (backtests, evaluation)."""
        from pipeline.wire import EMIT_FEATURES_HEADER

        settings = get_settings()
        k = settings.kafka
        headers = [(EMIT_FEATURES_HEADER, b"1")] if with_features else None
        from pipeline.io import read_transactions_file

        ids = set(read_transactions_file(file)["transaction_id"].astype(str))

        async def main() -> tuple[int, int]:
            ready = asyncio.Event()
            with out.open("wb") as sink:
                collector = asyncio.create_task(_collect(k.bootstrap, k.verdicts_topic, ids, timeout, sink, ready))
                await ready.wait()
                _, failed, _ = await off_loop(produce_file, file, topic=k.transactions_topic,
                                                       bootstrap=k.bootstrap, headers=headers)  # fmt: skip
                return await collector, failed

        got, failed = asyncio.run(main())
        typer.echo(
            f"{got:,} of {len(ids):,} verdicts written to {out}" + (f"; {failed} not delivered" if failed else "")
        )
        if got < len(ids) or failed:
            raise typer.Exit(1)

    @app.command("tail")
    def tail_command(
        decision: Annotated[list[str] | None, typer.Option(help="Only these decisions (repeatable).")] = None,
        min_score: Annotated[float, typer.Option(help="Only verdicts with at least this score.")] = 0.0,
        card: Annotated[str | None, typer.Option(help="Only this card_id.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of pretty lines.")] = False,
        from_beginning: Annotated[bool, typer.Option(help="Start at the oldest verdict kept.")] = False,
        max_count: Annotated[int | None, typer.Option("--max", min=1, help="Stop after this many.")] = None,
    ) -> None:
        """Follow verdicts as they are decided."""
        from aiokafka import AIOKafkaConsumer
        from rich.console import Console

        settings = get_settings()
        console = Console()
        colours = {"approve": "green", "review": "yellow", "challenge": "yellow", "decline": "red"}

        async def main() -> None:
            consumer = AIOKafkaConsumer(
                settings.kafka.verdicts_topic, bootstrap_servers=settings.kafka.bootstrap, group_id=None,
                auto_offset_reset="earliest" if from_beginning else "latest", fetch_max_wait_ms=100,
            )  # fmt: skip
            await consumer.start()
            shown = 0
            try:
                async for m in consumer:
                    v = orjson.loads(m.value)
                    if decision and v.get("decision") not in decision:
                        continue
                    if v.get("score", 0) < min_score or (card and v.get("card_id") != card):
                        continue
                    if as_json:
                        sys.stdout.write(m.value.decode() + "\n")
                        sys.stdout.flush()
                    else:
                        c = colours.get(v["decision"], "white")
                        reasons = "; ".join(r["text"] for r in v.get("reasons", [])[:3])
                        when, tx_id = v["decided_at"][11:23], v["transaction_id"]
                        line = f"{when} {tx_id:<28} [{c}]{v['decision']:<9}[/{c}] {v['score']:.3f}  {reasons}"
                        console.print(line, highlight=False)
                    shown += 1
                    if max_count is not None and shown >= max_count:
                        return
            finally:
                await consumer.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
