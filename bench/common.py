"""Shared pieces: a throwaway broker, pipeline environments, subprocess roles, and figures with spread."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.kafka.admin import TopicSpec, ensure_topics


@dataclass
class Figure:
    """One measured quantity over repetitions: reported as median with min and max."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.values, default=float("nan")),
            "max": max(self.values, default=float("nan")),
            "values": self.values,
        }


@dataclass
class BenchEnv:
    """Unique topics and group for one measurement, as RISKSTREAM_* variables for subprocesses."""

    bootstrap: str
    root: Path
    partitions: int = 8
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def topics(self) -> dict[str, str]:
        s = self.suffix
        return {
            "TRANSACTIONS_TOPIC": f"b-tx-{s}",
            "VERDICTS_TOPIC": f"b-verdicts-{s}",
            "LABELS_TOPIC": f"b-labels-{s}",
            "DLQ_TOPIC": f"b-dlq-{s}",
            "ENTITY_TOPIC": f"b-entity-{s}",
            "PARTIALS_TOPIC": f"b-partials-{s}",
        }

    def create_topics(self) -> None:
        ensure_topics(self.bootstrap, [TopicSpec(t, self.partitions) for t in self.topics.values()])

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_")}
        env.update(
            {
                "RISKSTREAM_ENVIRONMENT": "test",
                "RISKSTREAM_LOG_FORMAT": "text",
                "RISKSTREAM_LOG_LEVEL": os.environ.get("RISKSTREAM_BENCH_LOG_LEVEL", "WARNING"),
                "RISKSTREAM_KAFKA__BOOTSTRAP": self.bootstrap,
                "RISKSTREAM_KAFKA__PARTITIONS": str(self.partitions),
                "RISKSTREAM_WORKER__APP_ID": f"bench-{self.suffix}",
                "RISKSTREAM_WORKER__WEB_PORT": "0",
                "RISKSTREAM_WORKER__DATA_DIR": str(self.root / f"worker-{self.suffix}"),
            }
        )
        env.update({f"RISKSTREAM_KAFKA__{k}": v for k, v in self.topics.items()})
        env.update(self.extra)
        return env


class Role:
    """A subprocess (`python -m ...`) with its log in a file; stopped with its whole process group."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = list(args), env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Role:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def stop_all(roles: Iterable[Role]) -> None:
    for role in roles:
        role.stop()


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
