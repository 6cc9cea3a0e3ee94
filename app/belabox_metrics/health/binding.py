"""Keep trying to listen on ``health.listen_addr`` until the port is free.

The deployment guide's troubleshooting lists "Port 9100 already in use" (node_exporter's
default port). Tidewatch logged it once and ran without a health server for good; the port
usually frees within seconds (a restart racing the old process) or once a person stops the
other service. So collection goes on, the bind is retried with bounded backoff, the holder
is named when /proc tells who it is, and the server starts the moment the port is free.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from belabox_metrics.health.registry import DEGRADED, OK, Registry
from belabox_metrics.health.server import HealthServer, HealthServerError

log = logging.getLogger(__name__)

COMPONENT = "health_server"
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


# --- who holds the port: pure parsing, then the reading -----------------------------------

def listening_inodes(table: str, port: int) -> list[int]:
    """Socket inodes listening on ``port`` in a /proc/net/tcp or tcp6 table."""
    out = []
    for line in table.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or f[3] != _LISTEN:
            continue
        try:
            if int(f[1].rsplit(":", 1)[1], 16) == port and int(f[9]):
                out.append(int(f[9]))
        except (ValueError, IndexError):
            continue
    return out


def port_holder(port: int, procfs: str) -> str | None:
    """"node_exporter (PID 812)" for the process listening on ``port``, or None when /proc
    does not tell (another network namespace, no permission to read its fds)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(procfs, "net", name), encoding="ascii", errors="replace") as f:
                inodes.update(listening_inodes(f.read(), port))
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in _pids(procfs):
        fd_dir = os.path.join(procfs, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return f"{_comm(procfs, pid)} (PID {pid})"
            except OSError:
                continue
    return None


def _pids(procfs: str) -> Iterable[str]:
    try:
        return sorted((p for p in os.listdir(procfs) if p.isdigit()), key=int)
    except OSError:
        return []


def _comm(procfs: str, pid: str) -> str:
    try:
        with open(os.path.join(procfs, pid, "comm"), encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


# --- the retrying binder -------------------------------------------------------------------

class HealthBinding:
    """Owns the HealthServer: starts it now if it can, else keeps trying in a thread."""

    def __init__(self, listen_addr: str, registry: Registry, metrics_text: Callable[[], str], *,
                 procfs: str = "/proc", retry_initial: float = RETRY_INITIAL_S, retry_max: float = RETRY_MAX_S,
                 make: Callable[..., HealthServer] = HealthServer, **server_kw: Any):
        self.listen_addr, self.registry, self.metrics_text = listen_addr, registry, metrics_text
        self.procfs, self.retry_initial, self.retry_max = procfs, retry_initial, retry_max
        self._make, self._server_kw = make, server_kw
        self.server: HealthServer | None = None
        self.problem: str | None = None  # why it is not listening (shown in systemd's STATUS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_failure: float | None = None
        self._history: Callable[[str], tuple[int, bytes]] | None = None

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None

    @property
    def history(self) -> Callable[[str], tuple[int, bytes]] | None:
        """The agent's /history answer; handed to the server whenever it binds (it may bind later)."""
        return self._history

    @history.setter
    def history(self, answer: Callable[[str], tuple[int, bytes]] | None) -> None:
        self._history = answer
        if self.server is not None:
            self.server.history = answer

    def start(self) -> bool:
        """True when listening now; otherwise a thread retries until it is (or stop())."""
        if self._try():
            return True
        self._thread = threading.Thread(target=self._retry, name="health-bind", daemon=True)
        self._thread.start()
        return False

    def _try(self) -> bool:
        try:
            server = self._make(self.listen_addr, self.registry, self.metrics_text, **self._server_kw)
        except HealthServerError as e:
            self._failed(e)
            return False
        server.history = self._history
        server.start()
        self.server = server
        if self._first_failure is not None:
            waited = time.monotonic() - self._first_failure
            was = self.problem or ""
            self.problem = None
            msg = f"listening on {self.listen_addr} after {int(waited)}s ({was})"
            self.registry.update(COMPONENT, OK, msg)
            log.warning("health server: %s", msg)
        return True

    def _failed(self, e: HealthServerError) -> None:
        if self._first_failure is None:
            self._first_failure = time.monotonic()
        port = _port_of(self.listen_addr)
        holder = port_holder(port, self.procfs) if port else None
        problem = f"{e}" + (f"; held by {holder}" if holder else "")
        if problem != self.problem:
            # Once per change, not per retry: the journal must stay readable.
            log.error("health server: %s; collection goes on, retrying until the port is free", problem)
        self.problem = problem
        self.registry.update(COMPONENT, DEGRADED, f"{problem}; retrying")

    def _retry(self) -> None:
        delay = self.retry_initial
        while not self._stop.wait(delay):
            if self._try():
                return
            delay = min(delay * 2, self.retry_max)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.server is not None:
            self.server.stop(timeout)


def _port_of(listen_addr: str) -> int | None:
    try:
        return int(listen_addr.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
