"""Component health in the deployment guide's JSON shape, and the HTTP server that serves it.

Components: ``collector.<name>``, ``uploader``, ``storage``, ``time``, ``discovery``.
Roll-up (tidewatch's rules, upstream.md §5.4): all collectors in error, or any other
component in error -> error; anything degraded, or some collector in error -> degraded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OK, DEGRADED, ERROR = "ok", "degraded", "error"
_RANK = {OK: 0, DEGRADED: 1, ERROR: 2}


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Component:
    status: str
    message: str
    timestamp: float  # wall clock of the last update
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "message": self.message,
                               "timestamp": rfc3339(self.timestamp)}
        if self.details:
            out["details"] = dict(sorted(self.details.items()))
        return out


class Registry:
    """Thread-safe store of component states; every thread reports here."""

    def __init__(self, clock=time.time, monotonic=time.monotonic):
        self._lock = threading.Lock()
        self._components: dict[str, Component] = {}
        self._clock = clock
        self._started = monotonic()
        self._monotonic = monotonic

    def update(self, name: str, status: str, message: str, **details: Any) -> None:
        if status not in _RANK:
            raise ValueError(f"unknown health status {status!r}")
        with self._lock:
            self._components[name] = Component(status, message, self._clock(), details)

    def remove(self, name: str) -> None:
        with self._lock:
            self._components.pop(name, None)

    def get(self, name: str) -> Component | None:
        with self._lock:
            return self._components.get(name)

    def components(self) -> dict[str, Component]:
        with self._lock:
            return dict(self._components)

    def overall(self) -> str:
        return rollup(self.components())

    def report(self) -> dict[str, Any]:
        comps = self.components()
        return {
            "status": rollup(comps),
            "timestamp": rfc3339(self._clock()),
            "uptime_seconds": round(self._monotonic() - self._started, 3),
            "components": {k: c.to_json() for k, c in sorted(comps.items())},
        }


def rollup(comps: dict[str, Component]) -> str:
    if not comps:
        return OK
    collectors = [c for n, c in comps.items() if n.startswith("collector.")]
    others = [c for n, c in comps.items() if not n.startswith("collector.")]
    if collectors and all(c.status == ERROR for c in collectors):
        return ERROR
    if any(c.status == ERROR for c in others):
        return ERROR
    if any(c.status != OK for c in comps.values()):
        return DEGRADED
    return OK
