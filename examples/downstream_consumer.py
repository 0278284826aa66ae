"""A downstream service reading the `verdicts` topic with confluent-kafka, as the contract says to.

Key = transaction_id, value = JSON per schemas/verdict.v1.json. Delivery is at least once, so the handler is
idempotent by transaction_id; offsets are committed after handling, so a crash replays rather than skips.
Verdicts of the gateways' readiness probes (card `riskstream-probe`, api/readiness.py) are not business
traffic: skipped.

    python examples/downstream_consumer.py --bootstrap 127.0.0.1:9092 --group case-management
"""

from __future__ import annotations

import argparse
import json
import signal
from typing import Any

from confluent_kafka import Consumer, KafkaError

from api.readiness import is_probe


def handle(verdict: dict[str, Any], seen: set[str]) -> None:
    """Open a case for declines and reviews, once per transaction."""
    tx_id = verdict["transaction_id"]
    if tx_id in seen or is_probe(verdict):  # a re-delivered verdict, or a gateway's readiness probe
        return
    seen.add(tx_id)
    if verdict["decision"] in ("decline", "review"):
        reasons = "; ".join(r["text"] for r in verdict.get("reasons", []))
        print(f"case for {tx_id}: {verdict['decision']} (score {verdict['score']:.3f}) {reasons}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="verdicts")
    parser.add_argument("--group", default="downstream-example")
    args = parser.parse_args()
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([args.topic])
    running = True

    def stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    seen: set[str] = set()  # a real service keeps this in its database (a unique key on transaction_id)
    try:
        while running:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    print(f"consumer error: {error}")
                continue
            value = message.value()
            if value is not None:  # every verdict has a value; a tombstone would have nothing to handle
                handle(json.loads(value), seen)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
