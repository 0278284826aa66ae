"""Gateway latency under open-loop load: requests leave on a fixed schedule whatever the answers do.

Latency is measured from each request's scheduled time, so a slow answer delays nothing and queueing shows
up in the percentiles (no coordinated omission). The same load runs against the gateway in front of the
pipeline, in front of a bare Kafka echo, and against in-process scoring (FastAPI + XGBoost, no Kafka), in
the same run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench import loadgen
from bench.common import BenchEnv, Role, stop_all
from pipeline.kafka.local import free_port

KEY = "bench-key-0123456789abcdef"


async def open_loop(
    url: str, rate: float, seconds: float, templates: Sequence[dict[str, Any]], start: int = 0
) -> dict[str, Any]:
    """Replay generated traffic from `templates[start]` on, in event-time order, at a fixed arrival rate.

    The transactions keep their generated event times, so the features (and the share of flagged
    verdicts, a few %) are those of realistic traffic. The load once was made-up transactions stamped
    "now", two thirds of them flagged: the worker computed exact contributions (about 1 ms each) for most
    requests, a cost real traffic does not have. Re-stamping generated ones "now" is no better: 30 days of
    a card's history squeezed into seconds flags more than half of them.
    """
    headers = {"Authorization": f"Bearer {KEY}"}
    run_id = uuid.uuid4().hex[:8]

    def make_request(i: int) -> bytes:
        tx = dict(templates[(start + i) % len(templates)])
        tx["transaction_id"] = f"{tx['transaction_id']}-{run_id}"
        return loadgen.post_request(url, "/v1/score", orjson.dumps(tx), headers)

    outcome = await loadgen.open_loop(url, make_request, rate, seconds, timeout_s=10.0)
    ok = [(latency, body) for status, latency, body in outcome.answers if status == 200]
    errors = outcome.failures + len(outcome.answers) - len(ok)
    shed = sum(1 for status, _, _ in outcome.answers if status in (429, 503))
    verdicts = [orjson.loads(body) for _, body in ok]
    timeouts = sum(1 for v in verdicts if v.get("degraded"))
    flagged = sum(1 for v in verdicts if not v.get("degraded") and v.get("decision") != "approve")
    # The worker's own share: from the transaction's arrival at the card stage to its verdict.
    inside = [float(v["latency_ms"]) for v in verdicts if not v.get("degraded") and v.get("latency_ms")]
    arr = np.asarray([latency for latency, _ in ok]) if ok else np.asarray([np.nan])
    return {
        "rate": rate,
        "sent": int(rate * seconds),
        "ok": len(ok),
        "errors": errors,
        "shed_429_503": shed,
        "timeouts": timeouts,
        "flagged": flagged,
        "p50_ms": float(np.percentile(arr, 50)),
        "p95_ms": float(np.percentile(arr, 95)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(np.max(arr)),
        "worker_p50_ms": float(np.percentile(inside, 50)) if inside else float("nan"),
    }


async def wait_ready(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    # A real (not degraded) answer proves the path behind the gateway is up.
                    tx = {
                        "transaction_id": f"warm-{uuid.uuid4().hex[:8]}",
                        "timestamp": datetime.now(UTC).isoformat(),
                        "amount": 1.0,
                        "currency": "EUR",
                        "card_id": "warm",
                        "merchant_id": "warm",
                    }
                    response = await client.post("/v1/score", json=tx)
                    if response.status_code == 200 and not response.json().get("degraded"):
                        return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never answered a real verdict")
            await asyncio.sleep(0.5)


BACKENDS: dict[str, list[str]] = {
    "echo": ["-m", "bench.echo"],
    "pipeline": ["-m", "pipeline.cli", "worker"],
    # No gateway and no Kafka: the process that answers HTTP scores the transaction itself.
    "inprocess": ["-m", "bench.inprocess"],
}


def run(
    bootstrap: str,
    root: Path,
    models_dir: Path,
    rates: list[float],
    seconds: float,
    templates: Sequence[dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for name, backend in BACKENDS.items():
        port = free_port()
        env = BenchEnv(
            bootstrap,
            root,
            extra={
                "RISKSTREAM_MODEL__DIR": str(models_dir),
                "RISKSTREAM_GATEWAY__API_KEYS": KEY,
                "RISKSTREAM_GATEWAY__PORT": str(port),
                "RISKSTREAM_GATEWAY__DEADLINE_MS": "1000",
            },
        )
        env.create_topics()
        if name == "inprocess":
            roles = [Role([*backend, "--port", str(port)], env.environ(), root / "lat-inprocess.log").start()]
        else:
            roles = [
                Role(backend, env.environ(), root / f"lat-{name}-backend.log").start(),
                Role(["-m", "pipeline.cli", "gateway"], env.environ(), root / f"lat-{name}-gateway.log").start(),
            ]
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(url))
            # Each rate goes on where the previous one stopped, so event times keep increasing per backend.
            starts = [int(sum(rates[:k]) * seconds) for k in range(len(rates))]
            results[name] = [
                asyncio.run(open_loop(url, rate, seconds, templates, start))
                for rate, start in zip(rates, starts, strict=True)
            ]
        finally:
            stop_all(roles)
    return results
