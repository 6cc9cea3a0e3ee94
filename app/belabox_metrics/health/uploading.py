"""The uploader's health: what happened on the wire, never what was hoped for. Pure.

``ok`` means a 2xx arrived within the last ``OK_INTERVALS`` upload intervals. A cycle that
only parked batches (clock not verified) or sent nothing is not a success, a failure is
named as what it was (refused, reset, timeout, TLS, DNS, an HTTP status) with the time it
started, and a request hanging on the wire shows while it hangs. Tidewatch called a box
healthy whose every batch was parked (issue 12).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OK, DEGRADED, ERROR = "ok", "degraded", "error"
OK_INTERVALS = 3  # a 2xx older than this many upload intervals no longer proves uploads work
PENDING_ELEVATED = 5_000
PENDING_HIGH = 10_000
NO_UPLOAD_ERROR_S = 600.0
HANG_AFTER_S = 5.0  # a request on the wire longer than this (and one interval) shows as hanging
CLOCK_UNVERIFIED = "clock_unverified"
EARLIER_BOOT = "earlier_boot_unfixable"


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_time(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class UploaderFacts:
    upload_interval_s: float
    pending_count: int = 0
    # Seconds since the last 2xx, or since start when none arrived yet (monotonic, so a
    # clock step cannot fake a recent upload); ``succeeded`` tells the two apart.
    since_success_s: float = 0.0
    last_upload_wall: float | None = None  # wall time of the last 2xx, for display
    succeeded: bool | None = None  # None: unknown (old callers): judged from last_upload_wall
    last_cycle_failed: bool = False
    last_error: str | None = None  # the current failure (since the last 2xx), if any
    last_error_wall: float | None = None  # when the current kind of failure started
    last_error_cause: str | None = None
    last_error_status: int | None = None  # HTTP status of the current failure; None when not HTTP
    last_status: int | None = None  # HTTP status of the last answer, if any
    token_error: str | None = None  # token file missing or unusable
    token_refused_status: int | None = None  # the server refused the token with this status
    config_error: str | None = None  # the endpoint refuses every request (404, redirect, all 400s)
    enabled: bool = True  # False when no remote.url is configured
    pending_bytes: int = 0
    oldest_pending_age_s: float | None = None
    parked_by_reason: Mapping[str, int] = field(default_factory=dict)  # samples
    parked_batches: int = 0
    parked_bytes: int = 0
    oldest_parked_age_s: float | None = None
    inflight_s: float | None = None  # the request on the wire has waited this long
    retry_wait_s: float | None = None  # a server's Retry-After still holds this long


def uploader_health(facts: UploaderFacts | Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    f = facts if isinstance(facts, UploaderFacts) else UploaderFacts(**facts)
    since = max(0.0, f.since_success_s)
    succeeded = f.succeeded if f.succeeded is not None else f.last_upload_wall is not None
    parked = {r: n for r, n in f.parked_by_reason.items() if n}
    details: dict[str, Any] = {
        "last_upload_time": rfc3339(f.last_upload_wall) if f.last_upload_wall is not None else None,
        "pending_count": f.pending_count,
        "pending_bytes": f.pending_bytes,
        "oldest_pending_age_seconds": _int(f.oldest_pending_age_s),
        "parked_count": sum(parked.values()),
        "parked_bytes": f.parked_bytes,
        "parked_by_reason": dict(sorted(parked.items())),
        "oldest_parked_age_seconds": _int(f.oldest_parked_age_s),
        "time_since_upload_seconds": int(since),
        "last_error": f.last_error,
        "last_error_time": rfc3339(f.last_error_wall) if f.last_error and f.last_error_wall else None,
        "last_error_cause": f.last_error_cause if f.last_error else None,
        "last_error_status": f.last_error_status if f.last_error else None,
        "last_status": f.last_status,
    }
    if f.retry_wait_s:
        details["retry_after_remaining_seconds"] = round(f.retry_wait_s, 1)
    if not f.enabled:
        return OK, "uploads disabled (no remote.url configured)", details
    if f.token_error:
        # Not an upload failure: first boot provisions the token later; collection goes on.
        return ERROR, f"waiting for token: {f.token_error}", details
    if f.token_refused_status is not None:
        return ERROR, f"server refused the token ({f.token_refused_status})", details
    if f.config_error:
        # Never fixes itself (wrong URL, a proxy in the way): a person must act.
        return ERROR, f"upload endpoint refuses our requests: {f.config_error}", details
    interval = max(1.0, f.upload_interval_s)
    recent = succeeded and since <= OK_INTERVALS * interval
    stuck = since > NO_UPLOAD_ERROR_S and f.pending_count >= PENDING_HIGH
    if f.last_error:
        when = f" since {clock_time(f.last_error_wall)}" if f.last_error_wall else ""
        return (ERROR if stuck else DEGRADED), f"{f.last_error}{when}", details
    if f.inflight_s is not None and f.inflight_s > max(HANG_AFTER_S, interval):
        return DEGRADED, f"server not answering: no answer for {int(f.inflight_s)}s", details
    unverified = parked.get(CLOCK_UNVERIFIED, 0)
    if unverified and not recent:
        return (DEGRADED, f"clock not verified: {f.parked_batches} batches parked ({unverified} samples); "
                          "nothing is uploaded until the time is known", details)
    if not succeeded:
        what = f"{f.pending_count} samples pending" if f.pending_count else "nothing sent yet"
        return (ERROR if stuck else DEGRADED), f"no successful upload yet ({what})", details
    if not recent:
        if f.pending_count == 0:
            return OK, f"up to date: nothing to upload since {clock_time(f.last_upload_wall or 0)}", details
        return (ERROR if stuck else DEGRADED), f"no successful upload for {int(since)}s", details
    if f.pending_count >= PENDING_HIGH:
        return DEGRADED, f"high backlog: {f.pending_count} samples pending", details
    if f.pending_count >= PENDING_ELEVATED:
        return DEGRADED, f"elevated backlog: {f.pending_count} samples pending", details
    tail = f"; {parked[EARLIER_BOOT]} samples of an earlier boot parked (clock never verified)" \
        if parked.get(EARLIER_BOOT) else ""
    return OK, "uploading metrics" + tail, details


def _int(x: float | None) -> int | None:
    return None if x is None else int(max(0.0, x))
