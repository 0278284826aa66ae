"""Bounded request bodies, enforced before they are read: a 300 MB upload costs the gateway nothing.

An ASGI middleware in front of everything (authentication included, so an unauthenticated client cannot
make the gateway buffer either): a declared Content-Length over the limit is answered 413 at once, without
reading a byte; a chunked (or lying) body is counted as it streams and answered 413 as soon as it passes the
limit. The routes then read bodies that are known to be small.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge


class _BodyTooLarge(Exception):
    """Raised from `receive` inside the app when the streamed body passes the limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._answer = orjson.dumps(
            {"error": PayloadTooLarge.code, "detail": f"request body over {max_bytes} bytes; send at most {max_bytes}"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:  # else the answer is already on its way; the server closes the connection
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        # The body is left unread: the server closes the connection after the answer, as it must.
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._answer)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._answer})
