"""How the uploader shows in health: the facts health/registry.py judges, from the upload
state, the spool's numbers and what the last cycles found (a token that cannot be read, a
config the server refuses), and the deadline after which a silent uploader is a stuck one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from belabox_metrics.health import registry as healthmod
from belabox_metrics.upload.delivery import CycleResult, is_config_failure
from belabox_metrics.upload.state import UploadState
from belabox_metrics.upload.transport import Transport

log = logging.getLogger("belabox_metrics.upload.uploader")  # the uploader's lines, one logger


class UploaderHealth:
    """Puts the uploader's state into the ``uploader`` health component."""

    def __init__(self, health, spool, state: UploadState, transport: Transport, *, cfg: Callable[[], object],
                 retry_after_s: Callable[[], float], clock: Callable[[], float], wall: Callable[[], float]):
        self.health, self.spool, self.state, self.transport = health, spool, state, transport
        self._cfg, self._retry_after_s = cfg, retry_after_s
        self.clock, self.wall = clock, wall
        self.token_problem: str | None = None  # why no token could be had at the last cycle
        self.config_error: str | None = None  # a refusal only a config change can fix, until a send works
        self._started_mono = clock()
        self._lock = threading.Lock()

    def cycle_done(self, res: CycleResult) -> None:
        if res.sent_samples:
            self.config_error = None
        if not res.ok and is_config_failure(res):
            self.config_error = res.error

    def report(self, stats=None) -> None:
        """``stats`` is a spool snapshot the caller already took (so /health and /metrics show
        the same numbers), else one is taken."""
        if stats is None:
            try:
                stats = self.spool.stats()
            except Exception as e:  # health must still be reported when the spool misbehaves
                log.error("spool stats failed: %s", e)
        with self._lock:
            self.health.update("uploader", *healthmod.uploader_health(self.facts(stats)),
                               stale_after=self.stale_after())

    def facts(self, st) -> healthmod.UploaderFacts:
        s, cfg = self.state, self._cfg()
        now_mono, now_wall = self.clock(), self.wall()
        ref = s.last_success_mono if s.last_success_mono is not None else self._started_mono
        inflight = self.transport.inflight_since
        return healthmod.UploaderFacts(
            upload_interval_s=cfg.upload_interval, pending_count=st.pending_samples if st else 0,
            since_success_s=max(0.0, now_mono - ref), last_upload_wall=s.last_success_wall,
            succeeded=s.last_success_wall is not None, last_cycle_failed=s.error is not None,
            last_error=s.error, last_error_wall=s.error_since_wall, last_error_cause=s.error_cause,
            last_error_status=s.error_status,
            last_status=s.last_status, token_error=self.token_problem,
            token_refused_status=s.token_refused_status, config_error=self.config_error,
            enabled=bool(cfg.remote.url),
            pending_bytes=st.pending_bytes if st else 0,
            oldest_pending_age_s=_age(now_wall, st.oldest_wall_ms if st else None),
            parked_by_reason=dict(getattr(st, "parked_by_reason", {}) or {}),
            parked_batches=st.parked_batches if st else 0, parked_bytes=getattr(st, "parked_bytes", 0),
            oldest_parked_age_s=_age(now_wall, getattr(st, "oldest_parked_wall_ms", None)),
            inflight_s=None if inflight is None else max(0.0, now_mono - inflight),
            retry_wait_s=max(self._retry_after_s(), s.auth_remaining()) or None)

    def stale_after(self) -> float:
        # A cycle may run an interval of backlog plus every retry of a request; past that, a
        # silent uploader is a stuck one and health says so (tidewatch showed its last state: W5).
        cfg = self._cfg()
        r = cfg.remote
        return 3 * cfg.upload_interval + r.retry.max_attempts * (r.timeout + r.retry.max_backoff) + 60


def _age(now_wall: float, wall_ms: int | None) -> float | None:
    return None if wall_ms is None else max(0.0, now_wall - wall_ms / 1000)
