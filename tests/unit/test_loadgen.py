"""The benchmark's Go load generator (bench/openloop), built and run against a local asyncio server: every
body sent once and answered, timed from its schedule, verdict fields read, keep-alive reused, a server that
hangs up counted as failures. No HTTP library on the server side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bench import loadgen


async def serve(delay_s: float, *, close: bool = False) -> tuple[asyncio.Server, int, list[bytes], list[int]]:
    received: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
                )
                body = await reader.readexactly(length)
                received.append(body)
                await asyncio.sleep(delay_s)
                if close:
                    writer.close()
                    return
                i = orjson.loads(body)["i"]
                status = 429 if i == 3 else 200
                answer = orjson.dumps({"decision": "decline" if i == 5 else "approve", "degraded": i % 2 == 1})
                if b"authorization: bearer k" not in head.lower():
                    status = 401
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(answer), answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received, connections


async def test_every_body_is_sent_once_and_timed_from_its_schedule(tmp_path: Path) -> None:
    server, port, received, connections = await serve(0.02)
    bodies = [orjson.dumps({"i": i}) for i in range(100)]
    async with server:
        out = await asyncio.to_thread(
            loadgen.open_loop, f"http://127.0.0.1:{port}/v1/score", bodies, 200, tmp_path, authorization="Bearer k"
        )
    assert sorted(received) == sorted(bodies)
    assert len(out.answers) == 100 and out.failures == 0
    assert [a.status for a in out.answers].count(429) == 1
    ok = [a for i, a in enumerate(out.answers) if a.status == 200]
    assert sum(a.degraded for a in ok) == 49  # odd i, without the refused i = 3
    assert out.answers[5].decision == "decline"
    assert min(a.latency_ms for a in out.answers) >= 20
    assert len(connections) < 100  # keep-alive connections are reused
    assert out.summary["sent"] == 100 and out.summary["cpu_s"] >= 0


async def test_a_server_that_hangs_up_counts_as_failures(tmp_path: Path) -> None:
    server, port, _, _ = await serve(0.0, close=True)
    bodies = [orjson.dumps({"i": i}) for i in range(10)]
    async with server:
        out = await asyncio.to_thread(loadgen.open_loop, f"http://127.0.0.1:{port}/", bodies, 100, tmp_path)
    assert out.failures == 10 and all(a.status == 0 and a.error for a in out.answers)


def test_the_built_binary_is_the_one_of_its_source() -> None:
    built = loadgen.binary()
    assert built.exists() and loadgen.STAMP.read_text().strip() == loadgen.source_digest()
