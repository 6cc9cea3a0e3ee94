"""Component health in the deployment guide's JSON shape and the rules that set it.

Components: ``collector.<name>``, ``uploader``, ``storage``, ``time``, ``discovery``.
Roll-up (tidewatch's rules, upstream.md §5.4): all collectors in error, or any other
component in error -> error; anything degraded, or some collector in error -> degraded.

The rule functions are pure: facts in, ``(status, message, details)`` out, so the owner of
each component computes its state and every transition is unit-tested. Unlike tidewatch,
a failed upload cycle or an unreachable clock URL is never ``error`` on its own (W6), the
WAL threshold follows the config (W27), and a component whose owner stopped reporting turns
degraded instead of showing its last good state forever (W5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from belabox_metrics.health import uploading
from belabox_metrics.platform.clock import TimeFacts

OK, DEGRADED, ERROR = "ok", "degraded", "error"
_RANK = {OK: 0, DEGRADED: 1, ERROR: 2}

Verdict = tuple[str, str, dict[str, Any]]


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Component:
    status: str
    message: str
    timestamp: float  # wall clock of the last update
    details: dict[str, Any] = field(default_factory=dict)
    updated_mono: float = 0.0
    stale_after: float | None = None  # seconds without an update before it reads as stale

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

    def update(self, name: str, status: str, message: str, details: Mapping[str, Any] | None = None, *,
               stale_after: float | None = None, **more: Any) -> None:
        """Set a component's state; ``update(name, *rule(facts))`` takes a rule's verdict as is.
        With ``stale_after`` the state expires: when no update arrives for that many seconds
        the component reads as degraded (its owner is stuck)."""
        if status not in _RANK:
            raise ValueError(f"unknown health status {status!r}")
        merged = {**(details or {}), **more}
        with self._lock:
            self._components[name] = Component(status, message, self._clock(), merged,
                                               self._monotonic(), stale_after)

    def remove(self, name: str) -> None:
        with self._lock:
            self._components.pop(name, None)

    def get(self, name: str) -> Component | None:
        return self.components().get(name)

    def components(self) -> dict[str, Component]:
        """Current states, with stale components already turned degraded."""
        now = self._monotonic()
        with self._lock:
            return {n: _aged(c, now) for n, c in self._components.items()}

    def overall(self) -> str:
        return rollup(self.components())

    def report(self) -> dict[str, Any]:
        comps = self.components()
        return {
            "status": rollup(comps),
            "timestamp": rfc3339(self._clock()),
            "uptime_seconds": int(self._monotonic() - self._started),
            "components": {k: c.to_json() for k, c in sorted(comps.items())},
        }


def _aged(c: Component, now_mono: float) -> Component:
    if c.stale_after is None:
        return c
    age = now_mono - c.updated_mono
    if age <= c.stale_after:
        return c
    status = c.status if _RANK[c.status] >= _RANK[DEGRADED] else DEGRADED
    return replace(c, status=status, message=f"no update for {int(age)}s (last: {c.message})")


def rollup(comps: Mapping[str, Component]) -> str:
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


def worst(*statuses: str) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)


# --- rules -------------------------------------------------------------------------------

# The uploader's rule lives in uploading.py; re-exported here for existing callers.
PENDING_ELEVATED, PENDING_HIGH = uploading.PENDING_ELEVATED, uploading.PENDING_HIGH
NO_UPLOAD_ERROR_S = uploading.NO_UPLOAD_ERROR_S
UploaderFacts = uploading.UploaderFacts
uploader_health = uploading.uploader_health


@dataclass(frozen=True)
class StorageFacts:
    path: str
    wal_threshold_bytes: int  # storage.wal_checkpoint_size_mb in bytes
    database_size_bytes: int = 0
    wal_size_bytes: int = 0
    pending_count: int = 0
    persistent: bool = True  # False when the spool lives on volatile storage (/run)
    volatile_reason: str | None = None  # why no persistent place was usable
    quarantined: str | None = None  # where a damaged database was moved at start
    commit_error: str | None = None  # of the last commit; None when it succeeded
    full: bool = False  # at storage.max_size_mb: the oldest batches are being dropped
    dropped: Mapping[str, int] = field(default_factory=dict)  # samples by reason
    notice: str | None = None  # a fault repaired while running (deleted file, empty at start)


def storage_health(facts: StorageFacts | Mapping[str, Any]) -> Verdict:
    f = facts if isinstance(facts, StorageFacts) else StorageFacts(**facts)
    details: dict[str, Any] = {
        "database_size_bytes": f.database_size_bytes,
        "wal_size_bytes": f.wal_size_bytes,
        "pending_count": f.pending_count,
        "path": f.path,
        "persistence": f.persistent,
        "dropped": dict(sorted(f.dropped.items())),
    }
    if f.quarantined:
        details["quarantined"] = f.quarantined
    if f.commit_error:
        return ERROR, f"cannot write the spool: {f.commit_error}", details
    problems = []
    if f.quarantined:
        problems.append(f"damaged database moved aside to {f.quarantined}")
    if f.notice:
        problems.append(f.notice)
    if not f.persistent:
        why = f" because {f.volatile_reason}" if f.volatile_reason else ""
        problems.append(f"spool on volatile storage ({f.path}){why}: lost on reboot")
    if f.full:
        problems.append("spool full: the oldest batches are being dropped")
    if f.wal_size_bytes > f.wal_threshold_bytes:
        problems.append(f"WAL size {f.wal_size_bytes / 1048576:.1f} MiB exceeds "
                        f"wal_checkpoint_size_mb ({f.wal_threshold_bytes / 1048576:g})")
    if problems:
        return DEGRADED, "; ".join(problems), details
    return OK, "storage operational", details


def time_health(facts: TimeFacts | Mapping[str, Any]) -> Verdict:
    f = facts if isinstance(facts, TimeFacts) else TimeFacts(**facts)
    details: dict[str, Any] = {"skew_ms": f.skew_ms, "synchronized": f.synchronized, "source": f.source}
    if f.last_error:
        details["last_error"] = f.last_error
    if f.skew_ms is not None and abs(f.skew_ms) > f.threshold_ms:
        side = "ahead of" if f.skew_ms > 0 else "behind"
        fix = "" if f.source == "kernel" else "; timestamps are corrected from boottime"
        return (DEGRADED, f"clock skew {abs(f.skew_ms)}ms {side} the server exceeds "
                          f"{f.threshold_ms}ms{fix}", details)
    if f.synchronized:
        return OK, "time synchronized", details
    # An unreachable skew URL alone is never an error (W6, W22): batches wait for a time source.
    why = f" (last check: {f.last_error})" if f.last_error else ""
    return DEGRADED, f"clock not verified: no kernel sync and no server time yet{why}", details
