"""Latency floor: a trivial FastAPI app that reads the request and answers one constant verdict.

Run as `python -m bench.constant --port P`. Same web stack as the gateway (FastAPI on uvicorn, one process),
no Kafka, no parsing, no scoring: what HTTP alone costs on this box under the same load generator.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

ANSWER = orjson.dumps(
    {
        "transaction_id": "constant",
        "decision": "approve",
        "score": 0.0,
        "reasons": [],
        "model_version": "constant",
        "rules_version": "constant",
        "event_time": "2026-01-01T00:00:00Z",
        "decided_at": "2026-01-01T00:00:00Z",
        "latency_ms": 0.0,
    }
)


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False, loop="asyncio")


if __name__ == "__main__":
    main()
