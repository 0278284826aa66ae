"""Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`.

The card stage keeps one state per card in the partition the card's key maps to, and Java producers,
aiokafka and librdkafka's `murmur2_random` all put a key there. librdkafka's own default
(`consistent_random`, CRC32: kcat, confluent-kafka left at its defaults) puts it elsewhere; the card stage
uses this to recognise and refuse such a record instead of counting it in a state that is not its card's.
Pure Python, exactly as Java's `org.apache.kafka.common.utils.Utils.murmur2`.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Java's `Utils.murmur2(data)`: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (Java `Utils.toPositive` is `& 0x7fffffff`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
