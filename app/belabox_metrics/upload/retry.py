"""Retry policy for uploads: an immutable value with pure delay arithmetic.

Sleeping happens elsewhere (the uploader's one interruptible sleep); everything here
takes the random draw and the current time as arguments so tests assert exact delays.

Two of tidewatch's bugs are the reason for the shapes below (upstream.md §4.6, §10):
W11 added the jitter after clamping to ``max_backoff``, so delays overshot the cap;
W10 honoured any ``Retry-After`` a server sent, so one header could stall the loop.
Here every delay, jittered or not, lies inside its cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from belabox_metrics.upload import failures

if TYPE_CHECKING:
    from belabox_metrics.config import RetryConfig


OK, REJECTED, AUTH, FATAL, GAVE_UP, STOPPED = "ok", "rejected", "auth", "fatal", "gave_up", "stopped"


def decide(status: int, body_text: str = "") -> tuple[str, bool, str]:
    """(final kind, retryable, failure reason) of one HTTP answer: the one place that says what
    is retried. A 4xx whose body says the token is unknown (vmauth answers 400) is a refused
    token, never a refused body: bisecting it would only multiply the requests."""
    if 400 <= status < 500 and failures.token_refused(status, body_text):
        return AUTH, False, f"http_{status}"
    if 200 <= status < 300:
        return OK, False, ""
    if status in (400, 413):
        return REJECTED, False, f"http_{status}"
    if status in (401, 403):
        return AUTH, False, f"http_{status}"
    if status == 429:
        return GAVE_UP, True, "http_429"
    if status == 408:
        return GAVE_UP, True, "http_408"
    if status >= 500:
        return GAVE_UP, True, "http_5xx"
    if 300 <= status < 400:
        return FATAL, False, "http_3xx"
    return FATAL, False, f"http_{status}" if 400 <= status < 500 else "http_other"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # total tries of one request, the first included
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2  # fraction of the delay, 0..1
    max_retry_after: float = 300.0

    @classmethod
    def from_config(cls, rc: RetryConfig) -> RetryPolicy:
        # One attempt when disabled: the request is still sent, just never repeated.
        return cls(
            max_attempts=max(1, rc.max_attempts) if rc.enabled else 1,
            initial_backoff=rc.initial_backoff,
            max_backoff=max(rc.max_backoff, rc.initial_backoff),
            multiplier=rc.backoff_multiplier,
            jitter=min(max(rc.jitter_percent / 100.0, 0.0), 1.0),
            max_retry_after=rc.max_retry_after,
        )

    def should_retry(self, attempt: int) -> bool:
        """``attempt`` is the 1-based number of the try that just failed."""
        return attempt < self.max_attempts

    def base_delay(self, attempt: int) -> float:
        """Un-jittered wait after failed try ``attempt`` (1-based): initial × multiplier^(n-1), capped."""
        exp = max(0, attempt - 1)
        # Compare before multiplying: multiplier^exp overflows a float long before 100 attempts.
        delay = self.initial_backoff
        for _ in range(exp):
            delay *= self.multiplier
            if delay >= self.max_backoff:
                return self.max_backoff
        return min(delay, self.max_backoff)

    def delay(self, attempt: int, u: float | None = None) -> float:
        """Jittered wait after failed try ``attempt``; ``u`` is a uniform draw in [0, 1).

        Below the cap the delay spreads evenly over base × (1 ± jitter). Near the cap
        the upper edge is clipped to the cap, and at the cap the spread is
        [cap × (1 - jitter), cap]: devices that all hit the cap still do not retry in step.
        """
        if u is None:
            u = random.random()
        return _spread(self.base_delay(attempt), self.max_backoff, self.jitter, u)

    def retry_after_delay(self, seconds: float, u: float | None = None) -> float:
        """Wait for a server's Retry-After of ``seconds``: never earlier than asked unless the
        request exceeds ``max_retry_after``, spread upwards by the jitter but inside the cap."""
        if u is None:
            u = random.random()
        cap = self.max_retry_after
        if seconds >= cap:
            return _spread(cap, cap, self.jitter, u)
        hi = min(seconds * (1.0 + self.jitter), cap)
        return seconds + (hi - seconds) * u

    def wait_after(self, attempt: int, retry_after: float | None, u: float | None = None) -> float:
        """The wait after failed try ``attempt``; a server's Retry-After replaces the backoff."""
        if retry_after is not None and retry_after > 0:
            return self.retry_after_delay(retry_after, u)
        return self.delay(attempt, u)


def _spread(base: float, cap: float, jitter: float, u: float) -> float:
    base = min(base, cap)
    lo = base * (1.0 - jitter)
    hi = min(base * (1.0 + jitter), cap)
    return lo + (hi - lo) * u


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3): delta-seconds or an
    HTTP-date. A date in the past means "now" (0). Unparseable or absent: None.
    The caller caps it (RetryPolicy.retry_after_delay)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse result means the zone was "-0000"
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now_wall)
