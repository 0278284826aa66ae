"""Latency baseline: scoring inside the HTTP process — FastAPI, the same features, model and rules, no Kafka.

Run as `python -m bench.inprocess --port P`. State lives in this one process (exact only
because there is one), so this is the floor a design without a stream could reach on this machine; the
gateway + pipeline figures say what durability, scale-out and exactness across workers cost on top of it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from pipeline import features as F
from pipeline.records import RecordError, parse_transaction
from pipeline.registry import load_model
from pipeline.rules import load_rules
from pipeline.settings import get_settings
from pipeline.stages import Joined
from pipeline.verdicts import build_verdicts


def create_app() -> FastAPI:
    settings = get_settings()
    model = load_model(settings.model.dir)
    rules = load_rules(settings.rules.dir)
    cards: dict[str, F.CardState] = {}
    entities: dict[tuple[str, str], F.EntityState] = {}
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        arrived_ms = time.time() * 1000
        body = await request.body()
        try:
            tx = parse_transaction(body)
        except RecordError as e:
            return Response(orjson.dumps({"error": e.reason}), status_code=422, media_type="application/json")
        card = cards.setdefault(tx.card_id, F.CardState())
        card_part = F.card_step(card, tx)
        if card_part is None:
            return Response(orjson.dumps({"error": "duplicate"}), status_code=409, media_type="application/json")
        parts: dict[str, Any] = {}
        for kind, key in F.entity_keys(tx):
            state = entities.get((kind, key))
            if state is None:
                state = entities[(kind, key)] = F.EntityState(kind)
            parts[kind] = F.entity_step(kind, state, tx)
        tx_part = F.transaction_features(tx)
        vector = F.assemble_vector(tx_part, card_part, parts)
        partial = {"t": tx.event_time_ms, "in": arrived_ms, "raw": body.decode(), "h": {}}
        [out] = build_verdicts([Joined(tx.transaction_id, partial, vector, [])], model, rules)
        return Response(out.value, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
