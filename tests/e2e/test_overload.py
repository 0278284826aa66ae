"""Overload: the running gateway driven open-loop at about three times the capacity it just measured.

A real worker and gateway run on the session broker with the default deadline (300 ms) and fallback
(`review`). A 3 s closed-loop run (128 clients, each waiting for its answer) measures the answers per
second the gateway sustains on this machine. Then requests leave on a fixed schedule at 3x that rate
whatever the answers do (open loop: a slow answer delays nothing, so queueing shows in the latencies),
on loopback, bounded in count and time. Throughout:

- the gateway never exits and its resident memory (VmRSS) stays within a generous bound;
- every answer is a verdict or the fallback (degraded, reason `timeout`) within the deadline plus a
  margin, or a 429 / 503 refusal within that bound too; nothing else: no other status, no transport error,
  no client timeout, no traceback in the gateway's log;
- every refusal is counted in `riskstream_gateway_refusals_total` (by reason) and logged;
- once the load stops, a normal request gets a normal (not degraded) verdict within the deadline again.

The short variant (8 s) runs in the normal suite, the 30 s one is a soak test (`make test-all`).

The load comes from a small raw HTTP/1.1 client (`RawHttp`); httpx (used for the probes) costs about a
millisecond of client CPU per request and queues inside its pool, so at these rates on a 2-core machine
the test would measure httpx instead of the gateway.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.refusals import LOG_WINDOW_S
from pipeline.db.migrate import upgrade_database
from tests.fixtures.kafka import Broker, free_port
from tests.fixtures.processes import PipelineEnv, RoleProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KEY = "overload-key-0123456789abcdef"
RUN = uuid.uuid4().hex[:8]
_SEQ = itertools.count()
DEADLINE_MS = 300  # the default, as users run it
#: Slack on top of the deadline for every answer, as this client measures it (from sending the request to
#: reading the answer), plus the client's own loop lag: an answer the gateway wrote on time is read as
#: late as this client's loop runs. Generous on purpose: the gateway, the worker, Kafka and this client
#: share 2 cores with whatever else runs; the strict figure (p99.9 within the deadline + 20 ms) is for
#: the benchmark, on a quiet machine. Answers seen here: up to ~50 ms past the deadline; before the
#: deadline counted from arrival and a late event loop was refused at admission, up to 1.5 s past it (and
#: without api/overload.py most requests got no answer within 4.8 s, the gateway growing by 120 MB in 8 s).
MARGIN_MS = 200
OVERLOAD_FACTOR = 3.0
#: Bounds the load (and the client's own CPU) on a much faster machine; the report shows the rate used.
MAX_RATE = 2000.0
#: A closed-loop client refused (429) waits this long before its next request, as the gateway's
#: `Retry-After: 1` asks. Refused clients that retried at once (or after 0.1 s) made a refusal storm that
#: took the gateway's CPU on a busy machine: "capacity" read 20-64 answers/s with 500-1,150 refusals/s.
REFUSED_PAUSE_S = 1.0
#: Resident memory the gateway may gain under load: it holds one future and one request per answer due.
RSS_GROWTH_LIMIT_MB = 100


@dataclass
class Stack:
    url: str
    worker: RoleProcess
    gateway: RoleProcess

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(40)}" for p in (self.worker, self.gateway))


def rss_mb(process: RoleProcess) -> float:
    assert process.proc is not None
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {process.name}")


def transaction(i: int) -> dict[str, Any]:
    return {
        "transaction_id": f"ovl-{RUN}-{next(_SEQ)}",
        "timestamp": datetime.now(UTC).isoformat(),
        "amount": 10.0 + i % 90,
        "currency": "EUR",
        "card_id": f"ovl-card-{i % 5000}",
        "merchant_id": f"ovl-m-{i % 200}",
        "ip": f"10.1.{i % 250}.{i % 200}",
        "device_id": f"ovl-d-{i % 4000}",
    }


def client(url: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s, headers={"Authorization": f"Bearer {KEY}"})


async def seconds_until_a_normal_verdict(stack: Stack, timeout_s: float) -> float:
    """Seconds until a fresh request gets a non-degraded verdict answered within the deadline."""
    started = time.monotonic()
    async with client(stack.url, 2, 5.0) as http:
        while True:
            assert stack.gateway.alive(), "the gateway exited\n" + stack.logs()
            assert time.monotonic() - started < timeout_s, (
                f"no normal verdict within the deadline for {timeout_s:.0f} s\n" + stack.logs()
            )
            sent = time.monotonic()
            try:
                response = await http.post("/v1/score", json=transaction(0))
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            took_ms = (time.monotonic() - sent) * 1000
            if response.status_code == 200 and not response.json()["degraded"] and took_ms <= DEADLINE_MS:
                return time.monotonic() - started
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def stack(
    kafka_broker: Broker, trained_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("overload")
    database = f"sqlite:///{root / 'riskstream.db'}"
    upgrade_database(database)
    env = PipelineEnv(bootstrap=kafka_broker.bootstrap, partitions=2, root=root)
    port = free_port()
    env.extra.update(
        {
            "RISKSTREAM_MODEL__DIR": str(trained_models_dir),
            "RISKSTREAM_DATABASE__URL": database,
            "RISKSTREAM_GATEWAY__API_KEYS": KEY,
            "RISKSTREAM_GATEWAY__PORT": str(port),
            "RISKSTREAM_GATEWAY__DEADLINE_MS": str(DEADLINE_MS),
        }
    )
    env.create_topics()
    s = Stack(f"http://127.0.0.1:{port}", RoleProcess("worker", env), RoleProcess("gateway", env))
    s.worker.start()
    s.gateway.start()
    try:
        await seconds_until_a_normal_verdict(s, timeout_s=120)
        yield s
    finally:
        s.gateway.stop(timeout=15)
        s.worker.stop(timeout=15)


# --- load -------------------------------------------------------------------------------------------------


@dataclass
class Outcomes:
    sent: int = 0
    #: outcome (verdict, fallback, 429, 503, status-<n>, error-<exception>) -> ms from sending to the answer
    latencies: dict[str, list[float]] = field(default_factory=dict)
    unexpected_bodies: list[str] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    #: how late the client ran: sending against its schedule, or a 5 ms tick of its loop; worst, ms
    lag_ms: float = 0.0
    connections: int = 0

    @property
    def counts(self) -> Counter[str]:
        return Counter({outcome: len(values) for outcome, values in self.latencies.items()})

    def add(self, outcome: str, latency_ms: float) -> None:
        self.latencies.setdefault(outcome, []).append(latency_ms)

    def summary(self) -> str:
        parts = [f"sent={self.sent}"]
        for outcome, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            p99 = ordered[max(math.ceil(len(ordered) * 0.99) - 1, 0)]
            p50, worst = statistics.median(ordered), ordered[-1]
            parts.append(f"{outcome}={len(ordered)} (p50 {p50:.0f} ms, p99 {p99:.0f}, max {worst:.0f})")
        every = sorted(v for values in self.latencies.values() for v in values)
        if every:
            p999 = every[max(math.ceil(len(every) * 0.999) - 1, 0)]
            over = [sum(v > DEADLINE_MS + extra for v in every) for extra in (20, 50)]
            parts.append(f"all answers p99.9 {p999:.0f} ms, over deadline+20 ms {over[0]}, +50 ms {over[1]}")
        parts.append(f"client lag max {self.lag_ms:.0f} ms, {self.connections} connections")
        if self.rss_mb:
            parts.append(f"gateway RSS {min(self.rss_mb):.0f}-{max(self.rss_mb):.0f} MB")
        return ", ".join(parts)


class RawHttp:
    """Keep-alive HTTP/1.1 connections to the gateway, for the load (closed and open loop).

    httpx costs about a millisecond of client CPU per request and its pool queues badly with many
    connections: on this 2-core machine one httpx client answered a trivial 300 ms endpoint seconds late
    at 120 requests/s, so the load would have measured the client. This writes prepared requests on open
    sockets and reads status line, headers and Content-Length body; a connection is opened whenever none
    is free, so a request never waits for one.
    """

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while self.idle:  # the server closes a keep-alive connection idle for 5 s: then try the next one
            reader, writer = self.idle.pop()
            answer = await self._exchange(reader, writer, request)
            if answer is not None:
                return answer
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        answer = await self._exchange(reader, writer, request)
        if answer is None:
            raise ConnectionResetError("the gateway closed a new connection without answering")
        return answer

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes] | None:
        """The answer, or None when the connection turns out closed before any byte of it."""
        try:
            writer.write(request)
            try:  # the whole head at once: one await, not one per header line (client CPU)
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    raise
                writer.close()
                return None
            status_line, *lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            length, keep_alive = 0, True
            for line in lines:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    keep_alive = False
            content = await reader.readexactly(length)
        except ConnectionResetError:
            writer.close()
            return None
        except BaseException:
            writer.close()  # unknown state (timeout, bad answer): never reuse it
            raise
        if keep_alive:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status, content

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def open_loop(stack: Stack, rate: float, seconds: float) -> Outcomes:
    """`rate` requests per second for `seconds` on a fixed schedule; each request bounded in time."""
    out = Outcomes()
    timeout_s = (DEADLINE_MS + MARGIN_MS) / 1000 + 2.0  # beyond the bound anyway: record it, do not wait
    total = int(rate * seconds)
    http = RawHttp(stack.url)

    bodies = [orjson.dumps(transaction(i)) for i in range(total)]  # before the clock: less client CPU during it

    async def one(i: int, scheduled: float) -> None:
        body = bodies[i]
        sent = time.monotonic()
        out.lag_ms = max(out.lag_ms, (sent - scheduled) * 1000)
        try:
            async with asyncio.timeout(timeout_s):
                status, content = await http.post("/v1/score", body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, TimeoutError) as e:
            out.add(f"error-{type(e).__name__}", (time.monotonic() - sent) * 1000)
            return
        # From the moment this request left: the client's own lateness on a starved machine is reported
        # (client lag), not charged to the gateway.
        latency_ms = (time.monotonic() - sent) * 1000
        if status == 200:
            answer = orjson.loads(content)
            if not answer["degraded"]:
                out.add("verdict", latency_ms)
            elif [r["code"] for r in answer["reasons"]] == ["timeout"] and answer["decision"] == "review":
                out.add("fallback", latency_ms)
            else:
                out.add("degraded-other", latency_ms)
                out.unexpected_bodies.append(content[:300].decode(errors="replace"))
        elif status in (429, 503):
            out.add(str(status), latency_ms)
        else:
            out.add(f"status-{status}", latency_ms)
            out.unexpected_bodies.append(content[:300].decode(errors="replace"))

    async def sample_rss(until: float) -> None:
        while time.monotonic() < until and stack.gateway.alive():
            out.rss_mb.append(rss_mb(stack.gateway))
            await asyncio.sleep(0.5)

    async def tick(until: float) -> None:
        while time.monotonic() < until:
            due = time.monotonic() + 0.005
            await asyncio.sleep(0.005)
            out.lag_ms = max(out.lag_ms, (time.monotonic() - due) * 1000)

    try:
        start = time.monotonic() + 0.1
        sampler = asyncio.create_task(sample_rss(start + seconds + timeout_s))
        ticker = asyncio.create_task(tick(start + seconds + timeout_s))
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
            out.sent += 1
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout_s + 10)
        sampler.cancel()
        ticker.cancel()
    finally:
        http.close()
    out.connections = http.opened
    return out


async def closed_loop_capacity(stack: Stack, seconds: float, concurrency: int = 128) -> tuple[float, float, float]:
    """(answers, real verdicts, refusals) per second with `concurrency` clients each waiting for its answer.

    Answers (a verdict or the fallback) measure what the gateway itself sustains: 128 waiting clients
    saturate it here even when every answer is the 300 ms fallback.
    """
    answers = verdicts = refused = 0
    stop_at = time.monotonic() + seconds
    http = RawHttp(stack.url)

    async def loop(n: int) -> None:
        nonlocal answers, verdicts, refused
        i = n
        while time.monotonic() < stop_at:
            async with asyncio.timeout(10):
                status, content = await http.post("/v1/score", orjson.dumps(transaction(i)))
            if status == 200:
                answers += 1
                verdicts += not orjson.loads(content)["degraded"]
            else:  # back off as asked: an instant retry only feeds a refusal storm
                refused += 1
                await asyncio.sleep(REFUSED_PAUSE_S)
            i += concurrency

    started = time.monotonic()
    try:
        await asyncio.gather(*(loop(n) for n in range(concurrency)))
    finally:
        http.close()
    elapsed = time.monotonic() - started
    return answers / elapsed, verdicts / elapsed, refused / elapsed


def refusals_counted(stack: Stack) -> dict[str, float]:
    """`riskstream_gateway_refusals_total` by reason, from the gateway's /metrics."""
    text = httpx.get(stack.url + "/metrics", timeout=10).text
    return {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("riskstream_gateway_refusals_total{")
    }


async def overload_and_recover(stack: Stack, seconds: float, recovery_timeout_s: float) -> None:
    capacity, verdicts, refused = await closed_loop_capacity(stack, seconds=3.0)
    assert capacity > 20, f"{capacity:.1f} answers/s: the stack is too slow to test\n" + stack.logs()
    rate = min(OVERLOAD_FACTOR * capacity, MAX_RATE)
    log_before = stack.gateway.log_path.read_text(errors="replace")
    baseline_rss = rss_mb(stack.gateway)
    counted_before = await asyncio.to_thread(refusals_counted, stack)

    out = await open_loop(stack, rate, seconds)
    counted = await asyncio.to_thread(refusals_counted, stack)
    report = (
        f"capacity {capacity:.0f} answers/s ({verdicts:.0f} real verdicts, {refused:.0f} refusals), offered "
        f"{rate:.0f}/s for {seconds:.0f} s: " + out.summary()
    )
    print(report)

    assert stack.gateway.alive(), "the gateway exited under load: " + report + "\n" + stack.logs()
    unexpected = {k: v for k, v in out.counts.items() if k not in ("verdict", "fallback", "429", "503")}
    assert not unexpected, (
        f"answers other than a verdict, the fallback, 429 or 503: {unexpected} {out.unexpected_bodies[:3]}\n{report}"
    )
    assert out.counts.total() == out.sent
    bound_ms = DEADLINE_MS + MARGIN_MS + out.lag_ms
    late = {k: sorted(round(x) for x in v if x > bound_ms)[-5:] for k, v in out.latencies.items() if max(v) > bound_ms}
    assert not late, (
        f"answers later than the deadline {DEADLINE_MS} + {MARGIN_MS} ms + client lag {out.lag_ms:.0f} ms "
        f"(the latest, per outcome): {late}\n{report}"
    )
    refusals = {reason: n - counted_before.get(reason, 0.0) for reason, n in counted.items()}
    assert sum(refusals.values()) == out.counts["429"] + out.counts["503"], (
        f"refusals counted by the gateway {refusals} are not the 429 and 503 answers seen\n{report}"
    )
    assert max(out.rss_mb) - baseline_rss < RSS_GROWTH_LIMIT_MB, (
        f"gateway memory grew from {baseline_rss:.0f} MB: {report}"
    )
    load_ended = time.monotonic()

    recovery_s = await seconds_until_a_normal_verdict(stack, timeout_s=recovery_timeout_s)
    print(f"a normal verdict within the deadline again {recovery_s:.1f} s after the load")
    assert stack.gateway.alive() and stack.worker.alive()

    # At least a line per reason: the first refusal of a reason in a window is logged at once, the rest summed
    # up when the window closes (api/refusals.py). A window opened during the capacity run closes up to
    # LOG_WINDOW_S after the load, and so does the line for this run's refusals of that reason.
    logged = {reason for reason, n in refusals.items() if not n}
    while True:
        new_log = stack.gateway.log_path.read_text(errors="replace")[len(log_before) :]
        logged |= {reason for reason in refusals if f"({reason})" in new_log}
        if logged >= refusals.keys() or time.monotonic() > load_ended + LOG_WINDOW_S + 2.0:
            break
        await asyncio.sleep(0.5)
    assert "Traceback" not in new_log, new_log[-3000:]
    missing = {reason: refusals[reason] for reason in refusals.keys() - logged}
    assert not missing, f"refusals without a log line: {missing}\n{new_log[-3000:]}"


async def test_the_gateway_answers_fast_and_recovers_at_three_times_its_capacity(stack: Stack) -> None:
    await overload_and_recover(stack, seconds=8.0, recovery_timeout_s=30.0)


@pytest.mark.soak
async def test_thirty_seconds_at_three_times_capacity_leave_the_gateway_bounded_and_serving(stack: Stack) -> None:
    await overload_and_recover(stack, seconds=30.0, recovery_timeout_s=90.0)
