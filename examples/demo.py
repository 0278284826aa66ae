"""The `make run` demo: a normal customer, then a card-testing burst, scored through the gateway.

Shows a newcomer verdicts with reasons in the first minute, using the same typed client as the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def demo_transactions(now: datetime | None = None) -> list[dict[str, Any]]:
    """A few ordinary purchases on one card, then small charges on many cards from one IP and device."""
    now = now or datetime.now(UTC)
    run = uuid.uuid4().hex[:6]
    txs: list[dict[str, Any]] = []
    for i, (amount, merchant) in enumerate(((23.4, "grocer"), (61.0, "fuel"), (12.9, "cafe"))):
        txs.append({
            "transaction_id": f"demo-{run}-ok-{i}",
            "timestamp": (now - timedelta(minutes=30 - 10 * i)).isoformat(),
            "amount": amount, "currency": "EUR", "card_id": f"demo-card-{run}", "merchant_id": f"demo-{merchant}",
            "merchant_category": "grocery", "channel": "pos", "country": "FR", "card_country": "FR",
            "device_id": f"demo-phone-{run}", "lat": 48.85, "lon": 2.35,
        })  # fmt: skip
    for i in range(12):
        txs.append({
            "transaction_id": f"demo-{run}-test-{i}",
            "timestamp": (now - timedelta(seconds=60 - 4 * i)).isoformat(),
            "amount": 1.0 + i % 3, "currency": "USD", "card_id": f"demo-stolen-{run}-{i}",
            "card_bin": f"4{i:05d}", "merchant_id": "demo-webshop", "merchant_category": "digital_goods",
            "channel": "ecom", "ip": "203.0.113.7", "device_id": f"demo-bot-{run}", "country": "US",
            "card_country": "GB",
        })  # fmt: skip
    return txs


async def run_demo(url: str, api_key: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from api.client import RiskstreamClient

    table = Table(title="demo verdicts")
    for column in ("transaction", "decision", "score", "ms", "reasons"):
        table.add_column(column)
    colours = {"approve": "green", "review": "yellow", "challenge": "yellow", "decline": "red"}
    async with RiskstreamClient(url, api_key) as client:
        for tx in demo_transactions():
            verdict = await client.score(tx)
            reasons = "; ".join(r.text for r in verdict.reasons[:3])
            colour = colours[verdict.decision]
            table.add_row(
                verdict.transaction_id, f"[{colour}]{verdict.decision}[/{colour}]", f"{verdict.score:.3f}",
                f"{verdict.latency_ms:.1f}", reasons + (" (degraded)" if verdict.degraded else ""),
            )  # fmt: skip
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    asyncio.run(run_demo(args.url, args.api_key))


if __name__ == "__main__":
    main()
