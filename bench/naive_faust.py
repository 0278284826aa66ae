"""Baseline (b): the naive Faust agent — windowed tables updated and one `send` awaited per event.

What a first Faust version of this pipeline looks like (a hopping 1 h / 10 min and a tumbling 1 h table per
card, one awaited send per verdict), kept to measure what micro-batching and compact state buy.
Run as `python -m bench.naive_faust worker`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust
import orjson

from pipeline.settings import get_settings

settings = get_settings()
app = faust.App(
    settings.worker.app_id + "-naive",
    broker=f"kafka://{settings.kafka.bootstrap}",
    store="memory://",
    topic_partitions=settings.kafka.partitions,
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    datadir=str(settings.worker.data_dir),
    producer_linger=0.0,
)
transactions = app.topic(settings.kafka.transactions_topic)
verdicts = app.topic(settings.kafka.verdicts_topic)
hopping = app.Table("naive-hopping", default=int).hopping(
    timedelta(hours=1), timedelta(minutes=10), expires=timedelta(days=1)
)
tumbling = app.Table("naive-tumbling", default=float).tumbling(timedelta(hours=1), expires=timedelta(days=1))


@app.agent(transactions)
async def score(stream: Any) -> None:
    async for event in stream.events():
        tx = orjson.loads(event.value)
        card = tx["card_id"]
        hopping[card] += 1
        tumbling[card] += float(tx["amount"])
        out = {"transaction_id": tx["transaction_id"], "decision": "approve", "count_1h": hopping[card].now()}
        await verdicts.send(key=tx["transaction_id"].encode(), value=orjson.dumps(out))


if __name__ == "__main__":
    app.main()
