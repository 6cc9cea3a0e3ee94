"""What the uploader has seen on the wire: the last 2xx, the current failure, a refused token.

Fed by every attempt (Transport.on_attempt), so health can tell the truth while a cycle is
still retrying. The last success is set by a 2xx and nothing else: a cycle that only parked
batches, sent nothing, or was cut short is not a success (issue 12).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from belabox_metrics.upload import failures
from belabox_metrics.upload.transport import AUTH, OK, STOPPED, Outcome

# A refused token waits up to this long between tries (doubling from one upload interval):
# the token does not fix itself, and a fleet of devices retrying every interval is a storm.
AUTH_BACKOFF_CAP_S = 300.0


class UploadState:
    def __init__(self, clock: Callable[[], float], wall: Callable[[], float]):
        self.clock, self.wall = clock, wall
        self._lock = threading.Lock()
        self.last_success_wall: float | None = None
        self.last_success_mono: float | None = None
        self.error: str | None = None  # the current failure, cleared by a 2xx
        self.error_cause: str | None = None
        self.error_status: int | None = None
        self.error_since_wall: float | None = None
        self._error_key: tuple | None = None
        self.last_status: int | None = None
        self.token_refused_status: int | None = None
        self._refusals = 0
        self._refused_token: str | None = None
        self._auth_not_before: float | None = None
        self.on_success: Callable[[float], None] = lambda wall: None

    def attempt(self, out: Outcome) -> None:
        with self._lock:
            if out.status is not None:
                self.last_status = out.status
            if out.kind == OK:
                self.last_success_wall, self.last_success_mono = self.wall(), self.clock()
                self.error = self.error_cause = self.error_status = self.error_since_wall = None
                self._error_key = None
                self.token_refused_status, self._refusals, self._auth_not_before = None, 0, None
                wall = self.last_success_wall
            elif out.kind == STOPPED:
                return
            else:
                key = (out.cause, out.status)
                if key != self._error_key:
                    self._error_key, self.error_since_wall = key, self.wall()
                self.error, self.error_cause, self.error_status = out.message, out.cause, out.status
                if out.kind == AUTH:
                    self.token_refused_status = out.status
                return
        self.on_success(wall)

    def set_error(self, message: str, cause: str | None = None) -> None:
        """A failure that did not come from an attempt (a spool fault, no token)."""
        with self._lock:
            key = (cause, message)
            if key != self._error_key:
                self._error_key, self.error_since_wall = key, self.wall()
            self.error, self.error_cause, self.error_status = message, cause, None

    # --- refused tokens -----------------------------------------------------------------

    def token_refused(self, token: str | None, interval: float) -> float:
        """Count one refusal of ``token``; returns the seconds until the next try."""
        with self._lock:
            self._refusals += 1
            self._refused_token = _digest(token)
            delay = failures.auth_backoff(interval, self._refusals, AUTH_BACKOFF_CAP_S)
            self._auth_not_before = self.clock() + delay
            return delay

    def auth_remaining(self) -> float:
        """Seconds left of the refused-token backoff, for display (changes nothing)."""
        with self._lock:
            nb = self._auth_not_before
            return max(0.0, nb - self.clock()) if nb is not None else 0.0

    def auth_wait(self, token: str | None) -> float:
        """Seconds to wait before trying ``token``: none once the token changed."""
        with self._lock:
            if self._auth_not_before is None:
                return 0.0
            if _digest(token) != self._refused_token:
                self._auth_not_before, self._refusals, self.token_refused_status = None, 0, None
                return 0.0
            return max(0.0, self._auth_not_before - self.clock())


def _digest(token: str | None) -> str | None:
    # Only a digest is kept: the token itself stays where it was read.
    return hashlib.sha256(token.encode()).hexdigest() if token else None
