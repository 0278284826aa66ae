"""Where a verdict's reply may go: only to a gateway's reply topic, whatever a producer's header says.

The `reply-to` header comes from whoever wrote the transaction. Trusted as it was, it let any producer
write verdicts into the input, an internal topic or a changelog (crashing the stage that read them), send
every verdict twice (`verdicts`), or stall the join stage for good on a topic that does not exist (the
producer waits for its metadata, and the record is re-read after a restart). So a reply goes out only to
a valid Kafka topic name under the configured reply prefix that is none of the pipeline's own topics and
that the broker knows (its topic list cached, re-read at most every few seconds for a name not in it).
Anything else is ignored: counted by reason, logged at most once per reason every few seconds, shortened
and escaped. The verdict goes to `verdicts` either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from pipeline import metrics, wire
from pipeline.blocking import off_loop
from pipeline.records import mask_pans

log = logging.getLogger("riskstream.worker")

#: Kafka's rule for topic names (the broker refuses any other; "." and ".." are reserved).
_TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: Longest value kept for a header that travels with the transaction to its verdict: a topic name is at
#: most 249 characters, the gateway's correlation id is 32. Longer ones are dropped at the card stage, so a
#: megabyte header cannot make the transaction's internal records too large to send.
MAX_PASSED_HEADER_BYTES: Final = 249
_PASSED: Final = frozenset({wire.REPLY_TO_HEADER, wire.CORRELATION_HEADER, wire.EMIT_FEATURES_HEADER})
#: Headers whose loss means no reply: their dropping is counted as an ignored reply.
_REPLY_HEADERS: Final = frozenset({wire.REPLY_TO_HEADER, wire.CORRELATION_HEADER})
#: A name the broker was found to know is checked again after this long (a deleted gateway's topic).
KNOWN_MAX_AGE_SECONDS: Final = 60.0
LOG_EVERY_SECONDS: Final = 10.0
_SHOWN_CHARS: Final = 80

Send = tuple[str, bytes | None, bytes, int | None, Any]


def scrub(value: str | bytes, limit: int = _SHOWN_CHARS) -> str:
    """A header value fit for a log line: PANs masked, shortened, non-printable characters escaped."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    masked = mask_pans(raw[: limit * 4])
    text = masked.decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    more = len(raw) > limit
    return text[:limit] + (f"...({len(raw)} bytes)" if more else "")


def screen_headers(headers: Sequence[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """The record's headers without any passed-on one longer than `MAX_PASSED_HEADER_BYTES`."""
    kept = []
    for name, value in headers:
        if name in _PASSED and len(value) > MAX_PASSED_HEADER_BYTES:
            if name in _REPLY_HEADERS:
                metrics.REPLIES_IGNORED.labels("header_too_long").inc()
            _limited_log("header_too_long", f"{name} header of {len(value)} bytes dropped")
            continue
        kept.append((name, value))
    return tuple(kept)


def screened(record: wire.RawRecord) -> wire.RawRecord:
    """`record` with its headers screened (see `screen_headers`)."""
    if not any(name in _PASSED and len(v) > MAX_PASSED_HEADER_BYTES for name, v in record.headers):
        return record
    return replace(record, headers=screen_headers(record.headers))


_last_logged: dict[str, tuple[float, int]] = {}


def _limited_log(reason: str, message: str) -> None:
    """Log `message` unless this reason was logged less than `LOG_EVERY_SECONDS` ago (then count it)."""
    now = time.monotonic()
    last, suppressed = _last_logged.get(reason, (-LOG_EVERY_SECONDS, 0))
    if now - last < LOG_EVERY_SECONDS:
        _last_logged[reason] = (last, suppressed + 1)
        return
    _last_logged[reason] = (now, 0)
    more = f" ({suppressed} more like it not logged)" if suppressed else ""
    log.warning("reply ignored (%s): %s%s", reason, message, more)


class ReplyRoutes:
    """Decides whether a verdict may be copied to the topic a transaction's `reply-to` header names."""

    def __init__(
        self,
        *,
        prefix: str,
        pipeline_topics: Collection[str],
        private_prefixes: Iterable[str],
        list_topics: Callable[[], Collection[str]],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix = prefix
        self._pipeline_topics = frozenset(pipeline_topics)
        self._private = (*private_prefixes, "__")  # Kafka's own: __consumer_offsets...
        self._list_topics = list_topics
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._known: frozenset[str] = frozenset()
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Future[None] | None = None

    def refusal(self, name: str) -> str | None:
        """Why `name` can never be a reply topic, from the name alone; None when it may be one."""
        if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
            return "invalid_name"
        if (
            not name.startswith(self._prefix)
            or name == self._prefix
            or name in self._pipeline_topics
            or name.startswith(self._private)
        ):
            return "not_a_reply_topic"
        return None

    async def target(self, headers: Mapping[str, str]) -> str | None:
        """The topic to copy the verdict to, or None (no reply asked for, or an ignored one: counted)."""
        name = headers.get(wire.REPLY_TO_HEADER)
        if not name or not headers.get(wire.CORRELATION_HEADER):
            return None
        reason = self.refusal(name)
        if reason is None and not await self._exists(name):
            reason = "unknown_topic"
        if reason is not None:
            metrics.REPLIES_IGNORED.labels(reason).inc()
            _limited_log(reason, f"reply-to '{scrub(name)}'")
            return None
        return name

    def forget(self, name: str) -> None:
        """`name` failed to take a reply: check it against the broker again before the next one."""
        self._known = self._known - {name}

    async def _exists(self, name: str) -> bool:
        now = self._clock()
        age = None if self._refreshed_at is None else now - self._refreshed_at
        if name in self._known and age is not None and age < KNOWN_MAX_AGE_SECONDS:
            return True
        if age is None or age >= self._refresh_seconds:
            await self._refresh()
        return name in self._known

    async def _refresh(self) -> None:
        """Re-read the broker's topic names (one read at a time; callers meanwhile share it)."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            self._known = frozenset(await off_loop(self._list_topics))
        except Exception as e:  # broker away: keep the last list, try again after refresh_seconds
            log.warning("cannot read the broker's topic list for reply routing: %s", type(e).__name__)
        finally:
            self._refreshed_at = self._clock()
            self._refreshing.set_result(None)
            self._refreshing = None


def reply_send(topic: str, transaction_id: str, value: bytes, headers: Mapping[str, str]) -> Send:
    """The reply record: keyed by transaction id, carrying the caller's correlation id."""
    cid = headers[wire.CORRELATION_HEADER]
    return (topic, transaction_id.encode(), value, 0, [(wire.CORRELATION_HEADER, cid.encode())])


def count_failure(future: asyncio.Future[Any]) -> None:
    """Done-callback of a reply's delivery: a reply the broker refused is counted, never raised (the
    caller's gateway answers its fallback; the verdict itself is on `verdicts`)."""
    if not future.cancelled() and future.exception() is not None:
        metrics.REPLIES_IGNORED.labels("send_failed").inc()
        _limited_log("send_failed", type(future.exception()).__name__)


#: How long queueing one reply may take (the producer waits for a topic's metadata, for ever on a topic
#: deleted since it was checked): past it the reply is dropped and counted.
QUEUE_TIMEOUT_SECONDS: Final = 1.0


async def send_replies(producer: Any, sends: Sequence[Send], routes: ReplyRoutes) -> None:
    """Queue the replies without waiting for their delivery; nothing here raises or stalls the stage."""
    for topic, key, value, partition, headers in sends:
        try:
            delivery = await asyncio.wait_for(
                producer.send(topic, key, value, partition, None, headers), QUEUE_TIMEOUT_SECONDS
            )
        except Exception as e:  # the verdict is on `verdicts`; the caller's gateway answers its fallback
            routes.forget(topic)
            metrics.REPLIES_IGNORED.labels("send_failed").inc()
            _limited_log("send_failed", f"'{scrub(topic)}': {type(e).__name__}")
            continue
        delivery.add_done_callback(count_failure)
