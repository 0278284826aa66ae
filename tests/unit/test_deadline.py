"""The deadline counts from arrival: the budget's arithmetic, and the uvicorn protocol that stamps arrival.

The protocol test runs uvicorn's real HTTP protocol on bytes: it fails if uvicorn stops setting
`self.cycle` (with the scope the app receives) in `data_received`, the one internal `api.deadline` uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from api.deadline import ARRIVAL_KEY, Deadline, arrival, stamping_protocol


@pytest.mark.parametrize(
    ("deadline_s", "reserve_s"),
    [(0.3, 0.03), (1.0, 0.03), (0.2, 0.02), (0.02, 0.005), (0.001, 0.005)],
)
def test_the_reserve_is_a_tenth_of_the_deadline_within_bounds(deadline_s: float, reserve_s: float) -> None:
    deadline = Deadline(deadline_s)
    assert deadline.reserve_s == pytest.approx(reserve_s)
    assert deadline.answer_by(100.0) == pytest.approx(100.0 + deadline_s - reserve_s)


def test_a_late_loop_moves_the_verdict_wait_earlier_by_at_most_half_the_deadline() -> None:
    deadline = Deadline(0.3)
    deadline.observe_lateness(0.08)
    assert 0.0 < deadline.lateness_s <= 0.08
    assert 100.0 + 0.3 - 0.03 - 0.08 <= deadline.answer_by(100.0) < 100.0 + 0.3 - 0.03
    deadline.observe_lateness(0.01)  # a smaller one does not replace a larger recent one
    assert deadline.lateness_s > 0.01
    deadline.observe_lateness(5.0)
    assert deadline.answer_by(100.0) == pytest.approx(100.0 + 0.15 - 0.03, abs=1e-3)


def test_arrival_keeps_the_servers_stamp_and_stamps_a_request_without_one() -> None:
    assert arrival({ARRIVAL_KEY: 12.5}) == 12.5
    scope: dict[str, Any] = {}
    before = time.monotonic()
    stamped = arrival(scope)
    assert before <= stamped <= time.monotonic() and scope[ARRIVAL_KEY] == stamped
    assert arrival(scope) == stamped


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_uvicorns_protocol_stamps_each_request_before_the_app_runs() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = Config(app=app, http=stamping_protocol(), lifespan="off", log_level="warning")
    config.load()
    protocol: Any = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = _Transport()
    protocol.connection_made(transport)
    request = b"POST /v1/score HTTP/1.1\r\nHost: gateway\r\nContent-Length: 2\r\n\r\n{}"
    before = time.monotonic()
    for n in (1, 2):  # the second on the same (kept-alive) connection, once the first is answered
        protocol.data_received(request)
        for _ in range(20):
            await asyncio.sleep(0)
            if transport.written.count(b"HTTP/1.1 204") == n:
                break
    assert len(seen) == 2, transport.written
    stamps = [scope[ARRIVAL_KEY] for scope in seen]
    assert before <= stamps[0] <= stamps[1] <= time.monotonic()
    protocol.connection_lost(None)
