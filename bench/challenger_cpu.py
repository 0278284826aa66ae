"""What a challenger costs: scoring every transaction with both models against scoring it with one.

Two figures. In process: CPU microseconds per transaction of `build_verdicts` (model call, rules,
decision, encoding; with the reasons of flagged rows as the worker gives them, and without) on batches of
1/10/100/500 real feature rows, with and without a challenger. End to end: one worker's CPU per
transaction (bench/procstat.py, from its 1000th verdict to its last, as bench/drift_cpu.py) on the same
backlog with and without `models/challenger` set; runs alternate to spread the shared machine's noise.
The challenger is the champion's booster under another version and calibration: the same size of model,
which is what the cost depends on.

Usage: python -m bench.challenger_cpu [--transactions 20000] [--rounds 2] [--skip-worker] [--models DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.drift_cpu import one_run

BATCHES = (1, 10, 100, 500)


def second_version(models: Path) -> str:
    """A challenger: the current model copied under another version with another calibration."""
    from pipeline.registry import METADATA_FILE, MODEL_FILE, current_version

    source = current_version(models)
    assert source is not None
    version = f"{source.removesuffix('-challenger')}-challenger"
    if (models / version).is_dir():
        return version
    (models / version).mkdir()
    shutil.copyfile(models / source / MODEL_FILE, models / version / MODEL_FILE)
    metadata = json.loads((models / source / METADATA_FILE).read_text())
    metadata["version"] = version
    metadata["calibration"]["y"] = [0.8 * y for y in metadata["calibration"]["y"]]
    (models / version / METADATA_FILE).write_text(json.dumps(metadata))
    return version


def in_process_us(
    models: Path, challenger_version: str, records: list[dict[str, Any]], *, with_reasons: bool
) -> dict[int, list[float]]:
    """Per batch size: [CPU us/tx alone, CPU us/tx with the challenger, ratio]."""
    import pandas as pd

    from pipeline.features.offline import compute_features, rows_from_frame
    from pipeline.registry import load_model
    from pipeline.rules import load_rules
    from pipeline.settings import get_settings
    from pipeline.stages import Joined
    from pipeline.verdicts import build_verdicts

    champion, challenger = load_model(models), load_model(models, challenger_version)
    rules = load_rules(get_settings().rules.dir)
    sample = records[-2000:]
    frame = pd.DataFrame(records)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    matrix = compute_features(rows_from_frame(frame)).matrix[-len(sample) :]
    joined = [
        Joined(r["transaction_id"], {"raw": orjson.dumps(r).decode(), "t": 0, "in": 0, "h": {}}, list(v), [])
        for r, v in zip(sample, matrix, strict=True)
    ]
    out: dict[int, list[float]] = {}
    for size in BATCHES:
        batches = [joined[i : i + size] for i in range(0, len(joined) - size + 1, size)][: max(400 // size, 4)]

        def run(with_challenger: bool, batches: list[list[Joined]] = batches) -> None:
            for batch in batches:
                build_verdicts(batch, champion, rules, with_reasons=with_reasons,
                               challenger=challenger if with_challenger else None)  # fmt: skip

        rows = sum(len(b) for b in batches)
        alone, both = [], []
        for _ in range(5):  # alternating repeats, best of each: the least disturbed by the shared machine
            alone.append(timeit.Timer(lambda: run(False), timer=time.process_time).timeit(number=1))
            both.append(timeit.Timer(lambda: run(True), timer=time.process_time).timeit(number=1))
        a, b = 1e6 * min(alone) / rows, 1e6 * min(both) / rows
        out[size] = [round(a, 1), round(b, 1), round(b / a, 3)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--port", type=int, default=6198)
    parser.add_argument("--skip-worker", action="store_true", help="Only the in-process figure.")
    parser.add_argument("--models", type=Path, help="A models folder with a current model (default: train one).")
    args = parser.parse_args()
    from pipeline.registry import activate_challenger, clear_challenger
    from training.generate import GeneratorConfig, generate
    from training.train import TrainConfig, train

    root = args.models or Path(tempfile.mkdtemp(prefix="challenger-bench-models-"))
    if args.models is None:
        train(TrainConfig(models_dir=root, transactions=120_000, days=40, seed=7, num_boost_round=80))
    version = second_version(root)
    frame = generate(GeneratorConfig(transactions=args.transactions, days=3, seed=11))
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    wire = ("transaction_id", "timestamp", "amount", "currency", "card_id", "merchant_id", "card_bin", "device_id",
            "ip", "merchant_category", "channel", "country", "card_country", "lat", "lon")  # fmt: skip
    records = [
        {k: r[k] for k in wire if k in r and r[k] is not None and r[k] == r[k]} for r in frame.to_dict("records")
    ]
    figures: dict[str, Any] = {}
    for reasons in (True, False):
        key = "in_process_us_per_tx" + ("" if reasons else "_without_reasons")
        figures[key] = in_process_us(root, version, records, with_reasons=reasons)
        for size, (a, b, ratio) in figures[key].items():
            print(f"build_verdicts{' (no reasons)' if not reasons else ''} batch {size:>3}: {a:8.1f} CPU us/tx "
                  f"alone, {b:8.1f} with a challenger: x{ratio:.3f}")  # fmt: skip
    if not args.skip_worker:
        results: dict[str, list[float]] = {"alone": [], "challenger": []}
        for _ in range(args.rounds):
            for name in results:
                if name == "challenger":
                    activate_challenger(root, version)
                else:
                    clear_challenger(root)
                value = asyncio.run(one_run(records, root, True, args.bootstrap, args.port, "challenger-bench"))
                results[name].append(value)
                print(f"worker {name:<10}: {1e6 * value:.0f} us CPU per transaction")
        medians = {name: float(np.median(v)) for name, v in results.items()}
        figures["worker_us_per_tx"] = {name: [round(1e6 * x) for x in v] for name, v in results.items()}
        figures["worker_ratio"] = round(medians["challenger"] / medians["alone"], 3)
        print(f"worker: median x{figures['worker_ratio']:.3f} with a challenger ({figures['worker_us_per_tx']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
