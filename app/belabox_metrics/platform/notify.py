"""sd_notify(3) messages to systemd: READY, STATUS, RELOADING, STOPPING and the watchdog.

Built on ``sdnotify.SystemdNotifier``, which connects once when created and swallows every
error unless ``debug=True``. We use debug mode so failures are seen and counted, reconnect
once when a send fails (the socket's receiver can go away across a systemd re-exec), and do
nothing at all when ``NOTIFY_SOCKET`` is unset (run by hand, in tests, in a container).

The watchdog is fed only when the agent says a tick made progress (tidewatch pinged from a
timer regardless, so a hung loop was never restarted), at most every WATCHDOG_USEC/2.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import sdnotify

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, selfmetrics: Any = None):
        env = os.environ
        self.socket_addr = env.get("NOTIFY_SOCKET", "")
        self.enabled = self.socket_addr[:1] in ("/", "@")
        if self.socket_addr and not self.enabled:
            log.warning("notify: unsupported NOTIFY_SOCKET %r; not notifying systemd", self.socket_addr)
        self.watchdog_usec = _watchdog_usec(env) if self.enabled else 0
        self.errors = 0
        self._selfmetrics = selfmetrics
        self._notifier: sdnotify.SystemdNotifier | None = None
        self._last_ping: float | None = None
        self._warned = False
        if self.enabled:
            self._connect()

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), None when no watchdog is armed."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    # --- messages ------------------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        return self._send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self._send(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253), harmless before.
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time (a long migration or a last upload at shutdown)."""
        return self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def next_ping_in(self, now_mono: float) -> float | None:
        """Seconds until the next ping is due (0 when it is), None without a watchdog."""
        interval = self.watchdog_interval
        if interval is None:
            return None
        return 0.0 if self._last_ping is None else max(0.0, self._last_ping + interval - now_mono)

    def watchdog_due(self, now_mono: float) -> bool:
        interval = self.watchdog_interval
        if interval is None:
            return False
        return self._last_ping is None or now_mono - self._last_ping >= interval

    def ping(self, now_mono: float) -> bool:
        """WATCHDOG=1 if due; call only after a tick that made progress. True when sent."""
        if not self.watchdog_due(now_mono):
            return False
        self._last_ping = now_mono
        return self._send("WATCHDOG=1")

    # --- transport -------------------------------------------------------------------------------

    def _connect(self) -> bool:
        try:
            # It reads NOTIFY_SOCKET from os.environ itself, so that must stay set.
            self._notifier = sdnotify.SystemdNotifier(debug=True)
            return True
        except OSError as e:
            self._notifier = None
            self._failed(e)
            return False

    def _send(self, message: str) -> bool:
        if not self.enabled:
            return False
        for attempt in (1, 2):
            if self._notifier is None and not self._connect():
                return False
            try:
                self._notifier.notify(message)  # type: ignore[union-attr]
                self._warned = False
                return True
            except OSError as e:
                self._notifier = None
                if attempt == 2:
                    self._failed(e)
        return False

    def _failed(self, e: OSError) -> None:
        self.errors += 1
        if self._selfmetrics is not None:
            self._selfmetrics.inc("metrics_collector_notify_errors_total")
        if not self._warned:  # one line per outage, not one per message
            log.warning("notify: cannot reach systemd at %s: %s", self.socket_addr, e.strerror or e)
            self._warned = True


def _watchdog_usec(env: Any) -> int:
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return 0  # the watchdog belongs to another process (e.g. we were forked by a wrapper)
    usec = env.get("WATCHDOG_USEC", "")
    return int(usec) if usec.isdigit() and int(usec) > 0 else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())
