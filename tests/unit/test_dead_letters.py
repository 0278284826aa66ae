"""Dead-letter copies always fit (pipeline.dead_letters)."""

from __future__ import annotations

import pytest

from pipeline.dead_letters import dead_letter_send
from pipeline.size_limits import record_size
from pipeline.stages import DeadLetter


def send(
    value: bytes | None, key: bytes | None = b"card-1", limit: int = 20_000
) -> tuple[bytes | None, bytes, dict[str, bytes]]:
    topic, k, v, partition, headers = dead_letter_send(
        DeadLetter(key, value, "not valid JSON", 3, 42), source_topic="transactions", dlq_topic="dlq",
        max_record_bytes=limit,
    )  # fmt: skip
    assert topic == "dlq" and partition is None
    assert record_size(k, v, headers) <= limit
    return k, v, dict(headers)


def test_a_copy_that_fits_is_whole_with_its_source() -> None:
    key, value, headers = send(b"x" * 1000)
    assert key == b"card-1" and value == b"x" * 1000 and "x-truncated" not in headers
    assert headers == {"riskstream-error": b"not valid JSON", "source-topic": b"transactions",
                       "source-partition": b"3", "source-offset": b"42"}  # fmt: skip


@pytest.mark.parametrize("size", [19_800, 19_900, 20_000, 50_000, 1_048_000])
def test_a_copy_too_large_is_cut_to_fit_and_says_its_original_size(size: int) -> None:
    original = bytes(range(256)) * (size // 256) + b"a" * (size % 256)
    _, value, headers = send(original)
    assert original.startswith(value)
    if value != original:
        assert headers["x-truncated"] == str(size).encode()
        assert len(value) > 19_700  # cut only as much as needed


def test_a_huge_key_is_cut_too_and_a_tombstone_copied_empty() -> None:
    key, value, headers = send(None, key=b"k" * 100_000)
    assert key == b"k" * 1024 and value == b"" and headers["x-key-truncated"] == b"100000"


def test_a_reason_is_one_bounded_line() -> None:
    _, _, _, _, headers = dead_letter_send(DeadLetter(None, b"v", "line one\nline two " + "x" * 5000, 0, 0),
                                           source_topic="t", dlq_topic="d", max_record_bytes=100_000)  # fmt: skip
    reason = dict(headers)["riskstream-error"].decode()
    assert "\n" not in reason and len(reason) == 1000 and reason.startswith("line one line two")
