"""The benchmark's open-loop client: every request answered and timed from its schedule, keep-alive reused,
a dead server counted as failures (a local asyncio server, no HTTP library)."""

from __future__ import annotations

import asyncio

from bench import loadgen


async def serve(delay_s: float, *, close: bool = False) -> tuple[asyncio.Server, int, list[int]]:
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
                await asyncio.sleep(delay_s)
                if close:
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


async def test_requests_leave_on_schedule_and_are_timed_from_it() -> None:
    server, port, connections = await serve(0.02)
    url = f"http://127.0.0.1:{port}"
    async with server:
        out = await loadgen.open_loop(
            url, lambda i: loadgen.post_request(url, "/v1/score", b'{"i":%d}' % i, {"X-Key": "k"}), 200, 0.5
        )
    assert out.failures == 0 and len(out.answers) == 100
    assert {status for status, _, _ in out.answers} == {200}
    assert sorted(body for _, _, body in out.answers) == sorted(b'{"i":%d}' % i for i in range(100))
    assert min(latency for _, latency, _ in out.answers) >= 20
    assert len(connections) < 100  # keep-alive connections are reused


async def test_a_server_that_hangs_up_counts_as_failures() -> None:
    server, port, _ = await serve(0.0, close=True)
    url = f"http://127.0.0.1:{port}"
    async with server:
        out = await loadgen.open_loop(url, lambda i: loadgen.post_request(url, "/", b"{}", {}), 100, 0.1)
    assert out.answers == [] and out.failures == 10
