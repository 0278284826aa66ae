"""Kafka's default partitioner, against the values of Kafka's own `UtilsTest.testMurmur2` and aiokafka's."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from pipeline.partitioner import default_partition, murmur2

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA.items())
def test_murmur2_matches_java(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_every_tail_length_matches_aiokafka() -> None:
    # aiokafka's pure implementation returns the unsigned value; lengths 0..40 cover every tail of 0-3 bytes.
    for n in range(41):
        key = bytes((i * 37 + 11) % 256 for i in range(n))
        assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_default_partition_is_positive_modulo() -> None:
    assert default_partition(b"21", 4) == (-973932308 & 0x7FFFFFFF) % 4
    assert {default_partition(f"card-{i}".encode(), 8) for i in range(200)} == set(range(8))
