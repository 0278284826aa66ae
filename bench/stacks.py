"""The systems the latency load runs against, each started as users run it, with its processes named.

- `pipeline`: worker(s) + gateway + sink (into a throwaway PostgreSQL), the product's request path.
- `echo`: the same gateway in front of a bare Kafka echo (bench/echo.py): the Kafka round trip's floor.
- `constant`: a trivial FastAPI app answering one constant verdict (bench/constant.py): HTTP's floor.
- `inprocess`: FastAPI scoring in the HTTP process, no Kafka (bench/inprocess.py): a design without a stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx

from bench import procstat
from bench.common import BenchEnv, Role, stop_all
from pipeline.kafka.local import free_port

Kind = Literal["pipeline", "echo", "constant", "inprocess"]
KINDS: tuple[Kind, ...] = ("pipeline", "echo", "constant", "inprocess")
KEY = "bench-key-0123456789abcdef"
AUTHORIZATION = f"Bearer {KEY}"
#: Backends behind the gateway answer through Kafka: ready means one real (not fallback) verdict came back.
THROUGH_KAFKA: frozenset[Kind] = frozenset({"pipeline", "echo"})


@dataclass
class Stack:
    kind: Kind
    url: str
    #: Processes by role name ("worker", "gateway", "sink", "echo", "app"); two workers are one role.
    roles: dict[str, list[Role]] = field(default_factory=dict)
    env: BenchEnv | None = None

    def pids(self) -> dict[str, list[int]]:
        return {name: [r.proc.pid for r in group if r.proc is not None] for name, group in self.roles.items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per role (whole process trees, from /proc)."""
        return procstat.snapshot(self.pids())

    def alive(self) -> bool:
        return all(r.alive() for group in self.roles.values() for r in group)

    def stop(self) -> None:
        stop_all(r for group in self.roles.values() for r in group)


def start_stack(
    kind: Kind,
    *,
    bootstrap: str,
    root: Path,
    models_dir: Path,
    database_url: Callable[[str], str] | None = None,
    workers: int = 1,
) -> Stack:
    """Start `kind` on fresh topics (and, for the pipeline, a fresh database from `database_url(name)`)."""
    port = free_port()
    env = BenchEnv(
        bootstrap,
        root,
        extra={
            "RISKSTREAM_MODEL__DIR": str(models_dir),
            "RISKSTREAM_GATEWAY__API_KEYS": KEY,
            "RISKSTREAM_GATEWAY__PORT": str(port),
        },
    )
    stack = Stack(kind, f"http://127.0.0.1:{port}", env=env)
    logs = root / f"lat-{kind}-{env.suffix}"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        if kind in ("constant", "inprocess"):
            stack.roles["app"] = [Role(["-m", f"bench.{kind}", "--port", str(port)], env.environ(), logs / "app.log")]
        else:
            env.create_topics()
            if kind == "pipeline":
                if database_url is None:
                    raise ValueError("the pipeline's sink needs a database")
                env.extra["RISKSTREAM_DATABASE__URL"] = database_url(f"bench_{env.suffix}")
                stack.roles["worker"] = [
                    Role(["-m", "pipeline.cli", "worker"], env.environ(), logs / f"worker-{i}.log")
                    for i in range(workers)
                ]
                stack.roles["sink"] = [
                    Role(["-m", "pipeline.cli", "sink", "--metrics-port", "0"], env.environ(), logs / "sink.log")
                ]
            else:
                stack.roles["echo"] = [Role(["-m", "bench.echo"], env.environ(), logs / "echo.log")]
            stack.roles["gateway"] = [Role(["-m", "pipeline.cli", "gateway"], env.environ(), logs / "gateway.log")]
        for group in stack.roles.values():
            for role in group:
                role.start()
        asyncio.run(wait_ready(stack, timeout_s=180))
        if kind == "pipeline" and workers > 1:
            wait_group_members(bootstrap, f"bench-{env.suffix}", workers, timeout_s=120)
            asyncio.run(wait_ready(stack, timeout_s=120))
    except BaseException:
        stack.stop()
        raise
    return stack


def probe_transaction() -> dict[str, object]:
    return {
        "transaction_id": f"probe-{uuid.uuid4().hex[:12]}",
        "timestamp": datetime.now(UTC).isoformat(),
        "amount": 1.0,
        "currency": "EUR",
        "card_id": "probe",
        "merchant_id": "probe",
    }


async def wait_ready(stack: Stack, timeout_s: float) -> None:
    """Until the stack answers a probe with a real verdict (for Kafka backends: not the fallback)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=stack.url, timeout=5, headers={"Authorization": AUTHORIZATION}) as client:
        while True:
            if not stack.alive():
                raise RuntimeError(
                    f"a process of the {stack.kind} stack exited; logs under {stack.env and stack.env.root}"
                )
            try:
                if (await client.get("/readyz")).status_code == 200:
                    response = await client.post("/v1/score", json=probe_transaction())
                    real = stack.kind not in THROUGH_KAFKA or not response.json().get("degraded")
                    if response.status_code == 200 and real:
                        return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stack.url} ({stack.kind}) never answered a real verdict")
            await asyncio.sleep(0.5)


def wait_group_members(bootstrap: str, group: str, members: int, timeout_s: float) -> None:
    """Until the worker group is stable with `members` members: a rebalance inside a measurement would count."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            [description] = [f.result(10) for f in admin.describe_consumer_groups([group]).values()]
            if len(description.members) == members and str(description.state).endswith("STABLE"):
                return
        except Exception:  # noqa: S110 - the group may not exist yet; asked again below
            pass
        time.sleep(1)
    raise TimeoutError(f"consumer group {group} never became stable with {members} members")
