"""The `make run` demo: a normal customer, then a card-testing burst, scored through the gateway.

Shows a newcomer verdicts with reasons in the first minute, using the same typed client as the tests. It
first waits until the pipeline answers within the deadline (the gateway's `/readyz`: a probe transaction's
verdict came back in time, see api/readiness.py), saying what it waits for: scored any earlier, on a busy
machine, every demo transaction got the fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import time
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


async def wait_until_ready(url: str, *, worker_url: str | None, timeout_s: float) -> bool:
    """Poll the gateway's /readyz until it is ready, printing what it waits for whenever that changes."""
    import httpx

    started = time.monotonic()
    said = ""
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                response = await http.get(f"{url}/readyz")
                ready, waiting = response.status_code == 200, response.json()["detail"]
            except (httpx.HTTPError, ValueError, KeyError):
                ready, waiting = False, f"the gateway to accept connections at {url}"
            if not ready and worker_url is not None:
                waiting += f"; worker: {await _worker_state(http, worker_url)}"
            line = f"ready: {waiting}" if ready else f"waiting: {waiting}"
            if line != said and (said or not ready):  # ready at once: nothing to say
                print(f"  [{time.monotonic() - started:5.1f} s] {line}", flush=True)
                said = line
            if ready:
                return True
            if time.monotonic() - started > timeout_s:
                return False
            await asyncio.sleep(0.5)


async def _worker_state(http: Any, worker_url: str) -> str:
    """What the worker's own /readyz says (pipeline/health.py), in a few words."""
    try:
        response = await http.get(f"{worker_url}/readyz")
        body = response.json()
    except Exception:
        return "not answering yet (starting: loading the model, joining its group)"
    if response.status_code == 200:
        return "ready"
    problems = body.get("problems") or ["not ready"]
    return "; ".join(str(p) for p in problems)


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
    parser.add_argument("--worker-url", help="the worker's web port, to say what it waits for")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long to wait for readiness")
    parser.add_argument("--wait-only", action="store_true", help="wait for readiness, score nothing")
    args = parser.parse_args()
    if not asyncio.run(wait_until_ready(args.url, worker_url=args.worker_url, timeout_s=args.wait_s)):
        raise SystemExit(f"the pipeline did not answer within the deadline in {args.wait_s:.0f} s")
    if not args.wait_only:
        asyncio.run(run_demo(args.url, args.api_key))


if __name__ == "__main__":
    main()
