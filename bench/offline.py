"""Benchmarks without Kafka: training time by phase, state bytes per entity, and what reasons cost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.common import Figure


def training(models_dir: Path, transactions: int, reps: int = 1) -> tuple[list[Figure], Any]:
    from training.train import TrainConfig, train

    figures = {k: Figure(f"train: {k}", "s") for k in ("total", "generate_or_load", "features", "fit", "report")}
    result = None
    for _ in range(reps):
        started = time.perf_counter()
        result = train(TrainConfig(models_dir=models_dir, transactions=transactions))
        figures["total"].values.append(time.perf_counter() - started)
        for k, v in result.timings.items():
            if k in figures:
                figures[k].values.append(v)
    return list(figures.values()), result


def state_sizes(records: list[dict[str, Any]]) -> list[Figure]:
    """Serialized state bytes per active card (both stages) / device / IP / merchant after replaying `records`."""
    from pipeline.features.definitions import card_step, entity_keys, entity_step
    from pipeline.features.keystate import CardState, EntityState
    from pipeline.records import Transaction

    cards: dict[str, CardState] = {}
    entities: dict[tuple[str, str], EntityState] = {}
    txs = sorted((Transaction.model_validate(r, strict=False) for r in records), key=lambda t: t.event_time_ms)
    for tx in txs:
        state = cards.setdefault(tx.card_id, CardState())
        if card_step(state, tx) is None:
            continue
        for kind, key in entity_keys(tx):
            entity = entities.setdefault((kind, key), EntityState(kind))
            entity_step(kind, entity, tx)
    # A card's state is its card-stage state plus its label history (`card_label`, kept by the entity stage).
    per_card = [
        len(s.to_bytes()) + len(entities[("card_label", card)].to_bytes())
        for card, s in cards.items()
        if ("card_label", card) in entities
    ]
    out = [Figure("state bytes per active card", "bytes", [float(np.mean(per_card)) if per_card else 0.0])]
    for kind in ("device", "ip", "merchant"):
        sizes = [len(s.to_bytes()) for (k, _), s in entities.items() if k == kind]
        out.append(Figure(f"state bytes per active {kind}", "bytes", [float(np.mean(sizes)) if sizes else 0.0]))
    return out


def reason_cost(models_dir: Path, matrix: np.ndarray, batch: int = 500, reps: int = 3) -> list[Figure]:
    """Verdicts per second from joined vectors to encoded verdicts, with and without reason codes."""
    from pipeline.registry import load_model
    from pipeline.rules import load_rules
    from pipeline.stages import Joined
    from pipeline.verdicts import build_verdicts

    model = load_model(models_dir)
    rules = load_rules(Path(__file__).resolve().parents[1] / "rules")
    raw = orjson.dumps(
        {
            "transaction_id": "t",
            "timestamp": "2026-11-01T00:00:00Z",
            "amount": 10.0,
            "currency": "EUR",
            "card_id": "c",
            "merchant_id": "m",
        }
    ).decode()
    rows = matrix[: batch * 20]
    joined = [Joined(f"t{i}", {"raw": raw, "t": 0, "in": 0, "h": {}}, list(r), []) for i, r in enumerate(rows)]
    figures = []
    for with_reasons in (False, True):
        fig = Figure(f"verdicts/s {'with' if with_reasons else 'without'} reasons (scoring + rules + encoding)", "1/s")
        for _ in range(reps):
            started = time.perf_counter()
            flagged = 0
            for i in range(0, len(joined), batch):
                out = build_verdicts(joined[i : i + batch], model, rules, with_reasons=with_reasons)
                flagged += sum(v.decision != "approve" for v in out)
            fig.values.append(len(joined) / (time.perf_counter() - started))
        fig.name += f" [{flagged / len(joined):.1%} flagged]"
        figures.append(fig)
    return figures
