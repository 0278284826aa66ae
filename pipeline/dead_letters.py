"""Dead-letter copies that always fit the dead-letter topic.

A copy carries the record's key and value (PANs already masked by the stage) and headers naming the reason
and the source position. A producer may write a value up to the input topic's limit; with the worker's
headers added its copy can be larger than the dead-letter topic or the producer accept, and a copy that
cannot be sent stopped the stage for good. So a key over `MAX_KEY_BYTES` and a value that does not fit are
cut, and the copy says so: `x-key-truncated` / `x-truncated` hold the original size in bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from pipeline import wire
from pipeline.size_limits import record_size
from pipeline.stages import DeadLetter

log = logging.getLogger("riskstream.worker")

TRUNCATED_HEADER: Final = "x-truncated"
KEY_TRUNCATED_HEADER: Final = "x-key-truncated"
SOURCE_TOPIC_HEADER: Final = "source-topic"
SOURCE_PARTITION_HEADER: Final = "source-partition"
SOURCE_OFFSET_HEADER: Final = "source-offset"
#: Longest key kept in a copy (a key is an id; anything longer is kept only in part, for diagnosis).
MAX_KEY_BYTES: Final = 1024
#: Longest reason kept (reasons are one line naming the field and the rule).
MAX_REASON_CHARS: Final = 1000

Send = tuple[str, bytes | None, bytes, int | None, Any]


def one_line(reason: str) -> str:
    """A reason fit for a header and a log line: one line, bounded."""
    flat = " ".join(reason.split())
    return flat if len(flat) <= MAX_REASON_CHARS else flat[: MAX_REASON_CHARS - 3] + "..."


def dead_letter_send(dl: DeadLetter, *, source_topic: str, dlq_topic: str, max_record_bytes: int) -> Send:
    """The DLQ record for one dead letter, no larger than `max_record_bytes` (see `size_limits.record_size`)."""
    reason = one_line(dl.reason)
    headers: list[tuple[str, bytes]] = [
        (wire.REASON_HEADER, reason.encode()),
        (SOURCE_TOPIC_HEADER, source_topic.encode()),
        (SOURCE_PARTITION_HEADER, str(dl.partition).encode()),
        (SOURCE_OFFSET_HEADER, str(dl.offset).encode()),
    ]
    key = dl.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append((KEY_TRUNCATED_HEADER, str(len(key)).encode()))
        key = key[:MAX_KEY_BYTES]
    value = dl.value or b""
    size = record_size(key, value, headers)
    if size > max_record_bytes:
        truncated = [*headers, (TRUNCATED_HEADER, str(len(value)).encode())]
        room = max_record_bytes - record_size(key, b"", truncated)
        if room < 0:
            raise ValueError(f"a dead letter's headers alone exceed {max_record_bytes} bytes")
        value, headers = value[:room], truncated
        while record_size(key, value, headers) > max_record_bytes:  # the value's length varint grew
            value = value[:-8]
    original = len(dl.value or b"")
    note = f" (copy truncated from {original} bytes)" if len(value) < original else ""
    log.warning("dead letter topic=%s partition=%d offset=%d reason=%s%s",
                source_topic, dl.partition, dl.offset, reason, note)  # fmt: skip
    return (dlq_topic, key, value, None, headers)


def dead_letter_sends(
    dead_letters: Sequence[DeadLetter], *, source_topic: str, dlq_topic: str, max_record_bytes: int
) -> list[Send]:
    return [
        dead_letter_send(dl, source_topic=source_topic, dlq_topic=dlq_topic, max_record_bytes=max_record_bytes)
        for dl in dead_letters
    ]
