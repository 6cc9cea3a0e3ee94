"""The backlog lane's byte budget: a token bucket in bytes, on an injectable clock."""

from __future__ import annotations

from collections.abc import Callable


class ByteBudget:
    """Token bucket in bytes holding at most one second of budget: a request waits until the
    bucket holds its size, so over any window of T seconds at most rate × (T + 1) bytes go.
    A request bigger than the bucket waits for a full bucket and leaves a debt behind."""

    def __init__(self, rate: int, clock: Callable[[], float], burst_seconds: float = 1.0):
        self.clock = clock
        self.burst_seconds = burst_seconds
        self.rate = max(0, int(rate))
        self.tokens = self.rate * burst_seconds
        self._t = clock()

    def set_rate(self, rate: int) -> None:
        self._refill()
        self.rate = max(0, int(rate))
        self.tokens = min(self.tokens, self.rate * self.burst_seconds)

    def _refill(self) -> None:
        now = self.clock()
        if self.rate:
            self.tokens = min(self.rate * self.burst_seconds, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def ready_in(self, nbytes: int) -> float:
        """Seconds until ``nbytes`` may be sent."""
        if not self.rate:
            return 0.0
        self._refill()
        need = min(nbytes, self.rate * self.burst_seconds)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def charge(self, nbytes: int) -> None:
        if self.rate:
            self._refill()
            self.tokens -= nbytes
