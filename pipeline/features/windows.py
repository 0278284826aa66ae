"""Window specs as data, read by the stream, the offline reference and training alike.

A window of W seconds at event time t covers the W/b buckets of its tier ending with t's bucket, where
the tier's bucket size b is 60 s for windows up to 1 h, 3600 s up to 24 h and 86400 s beyond. This is a
hopping approximation of a sliding window (the "1 h" window at 10:30:20 covers 09:31:00-10:30:59),
identical online and offline. Buckets after t's bucket (events later in event time that arrived
earlier) are not counted. Distinct counts use exact last-seen times (second resolution) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
DAY = 86400

#: Bucket tiers: (bucket seconds, buckets retained). Retention covers the longest window of the tier.
TIERS: dict[str, tuple[int, int]] = {"minute": (MINUTE, 60), "hour": (HOUR, 24), "day": (DAY, 30)}


@dataclass(frozen=True)
class WindowSpec:
    name: str
    seconds: int

    @property
    def tier(self) -> str:
        if self.seconds <= HOUR:
            return "minute"
        if self.seconds <= DAY:
            return "hour"
        return "day"

    @property
    def buckets(self) -> int:
        size, retained = TIERS[self.tier]
        n = self.seconds // size
        if n * size != self.seconds or not 1 <= n <= retained:
            raise ValueError(f"window {self.name} is not a whole number of {self.tier} buckets")
        return n


W1M = WindowSpec("1m", MINUTE)
W5M = WindowSpec("5m", 5 * MINUTE)
W1H = WindowSpec("1h", HOUR)
W24H = WindowSpec("24h", DAY)
W7D = WindowSpec("7d", 7 * DAY)
W30D = WindowSpec("30d", 30 * DAY)

CARD_WINDOWS = (W5M, W1H, W24H, W7D, W30D)
DEVICE_WINDOWS = (W1H, W24H, W7D)
IP_WINDOWS = (W1M, W5M, W1H, W24H)
MERCHANT_WINDOWS = (W1H, W24H, W7D)
