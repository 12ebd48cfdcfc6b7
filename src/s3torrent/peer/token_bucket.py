"""A token bucket in bytes, driven by the caller's clock (sans-IO)."""

from __future__ import annotations


class TokenBucket:
    """`rate` bytes per second refill a bucket of at most `burst` bytes (full at start).

    A rate of 0 never refills. `level` may go below zero when a caller charges bytes it
    already sent; it then refills from there.
    """

    __slots__ = ("_level", "_time", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._time = now

    def level(self, now: float) -> float:
        """Bytes in the bucket at `now`."""
        elapsed = max(0.0, now - self._time)
        self._time = max(self._time, now)
        if self.rate > 0:
            self._level = min(float(self.burst), self._level + elapsed * self.rate)
        return self._level

    def charge(self, nbytes: int, now: float) -> None:
        """Take `nbytes` whatever the level (they went out)."""
        self.level(now)
        self._level -= nbytes

    def delay(self, nbytes: int, now: float) -> float:
        """0 and take `nbytes` if the bucket holds them, else seconds until it will."""
        level = self.level(now)
        if level >= nbytes:
            self._level -= nbytes
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (nbytes - level) / self.rate
