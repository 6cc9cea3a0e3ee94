"""The uploader: when and what to send to VictoriaMetrics, and how that shows in health.

Each cycle runs two lanes (design §5). The live lane sends what was collected in the last
two upload intervals, newest first and never throttled, so dashboards are current within
one interval after a link returns. The backlog lane then drains the rest oldest-first
under ``remote.max_bytes_per_second``, because the uplink also carries the live video,
and stops at the end of the interval so the next live lane is never late. Tidewatch sent
one batch per interval, oldest first, so a day offline took days to drain (W33).

This module owns the cycle (its order, token, deadline and pacing), configuration and
the thread. What each lane takes is lanes.py; how the uploader shows in health is
reporting.py; how slices reach the server and leave the spool is delivery.py; the bytes on
the wire are wire.py; one POST with its retries is transport.py.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from belabox_metrics.health import registry as healthmod
from belabox_metrics.platform import boundedhttp
from belabox_metrics.upload.budget import ByteBudget
from belabox_metrics.upload.delivery import CycleResult, Delivery, Run
from belabox_metrics.upload.lanes import (
    LIVE_WINDOW_INTERVALS,
    DrainProgress,
    backlog_lane,
    live_lane,
    progress_reporter,
)
from belabox_metrics.upload.reporting import UploaderHealth
from belabox_metrics.upload.retry import RetryPolicy
from belabox_metrics.upload.state import UploadState
from belabox_metrics.upload.transport import AUTH, Transport
from belabox_metrics.upload.wire import Encoder

__all__ = ["ByteBudget", "CycleResult", "DrainProgress", "Uploader"]

log = logging.getLogger(__name__)

LAST_SUCCESS = "metrics_collector_upload_last_success_timestamp_seconds"
# Spread of each upload interval (see Uploader.next_interval): small while uploads succeed
# (dashboards see a steady cadence), wide after a failed cycle, so boxes that lost the server
# together (a fleet server restart, a venue's uplink) come back spread over a whole interval.
INTERVAL_JITTER = 0.1
FAILURE_JITTER = 0.5


class Uploader:
    def __init__(self, cfg, spool, health, selfmetrics, *, device_id: str, token, timekeeper=None,
                 client: boundedhttp.Client | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], object] | None = None,
                 rng: Callable[[], float] | None = None):
        self.spool = spool
        self.health = health
        self.selfmetrics = selfmetrics
        self.token = token
        self.clock = clock
        self.wall = wall
        self._sleep_fn = sleep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cycle_lock = threading.Lock()
        self._cfg_lock = threading.Lock()
        self._pending: tuple | None = None
        self._thread: threading.Thread | None = None
        self._final_deadline: float | None = None
        self._rng = rng or random.random
        self.on_cycle: Callable[[], object] | None = None  # called after every cycle (agent loop)
        self.budget = ByteBudget(cfg.remote.max_bytes_per_second, clock)
        self.transport = Transport(cfg.remote.url, cfg.remote.timeout, RetryPolicy.from_config(cfg.remote.retry),
                                   client=client, selfmetrics=selfmetrics, timekeeper=timekeeper, wall=wall,
                                   clock=clock, sleep=self._wait, rng=rng)
        self.delivery = Delivery(spool, selfmetrics, self.transport, Encoder(device_id), timekeeper=timekeeper,
                                 wall=wall, charge=self.budget.charge)
        self._apply(cfg, device_id)
        self.state = UploadState(clock, wall)
        self.state.on_success = lambda w: self.selfmetrics.set(LAST_SUCCESS, w)
        self.reporting = UploaderHealth(health, spool, self.state, self.transport, cfg=lambda: self.cfg,
                                        retry_after_s=self._retry_after_s, clock=clock, wall=wall)
        self.transport.on_attempt = self._on_attempt

    @property
    def last_status(self) -> int | None:
        return self.delivery.last_status

    @property
    def last_success_wall(self) -> float | None:
        """Wall time of the last 2xx; never set by a failure, a parked batch or an empty cycle."""
        return self.state.last_success_wall

    @property
    def last_error(self) -> str | None:
        return self.state.error

    def not_before_s(self, token: str | None) -> float:
        """Seconds until ``token`` may be sent: a server's Retry-After, a refused token (which
        no longer holds once the token changed)."""
        return max(self._retry_after_s(), self.state.auth_wait(token))

    def _retry_after_s(self) -> float:
        nb = self.transport.not_before
        return max(0.0, nb - self.clock()) if nb is not None else 0.0

    def _on_attempt(self, out) -> None:
        self.state.attempt(out)
        if not out.ok:
            self.report()  # health follows the uploader while the cycle still retries

    # --- configuration ----------------------------------------------------------------

    def _apply(self, cfg, device_id: str) -> None:
        self.cfg = cfg
        self.device_id = device_id
        r = cfg.remote
        self.transport.url, self.transport.timeout = r.url, r.timeout
        self.transport.policy = RetryPolicy.from_config(r.retry)
        self.budget.set_rate(r.max_bytes_per_second)
        self.delivery.encoder = Encoder(device_id, r.extra_labels, r.chunk_size)
        self.delivery.batch_size = r.batch_size
        self.delivery.size_cap = None
        for name in r.extra_labels:
            if name == "device_id" or name.startswith("__"):
                log.warning("remote.extra_labels.%s is ignored: the uploader owns that label name", name)

    def reconfigure(self, cfg, device_id: str | None = None) -> None:
        """SIGHUP: takes effect at the start of the next cycle, never halfway through one."""
        with self._cfg_lock:
            self._pending = (cfg, self.device_id if device_id is None else device_id)
        if hasattr(self.token, "reconfigure"):
            self.token.reconfigure(cfg)

    def _take_pending(self) -> None:
        with self._cfg_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._apply(*pending)

    # --- cycles -----------------------------------------------------------------------

    def cycle(self, deadline: float | None = None) -> CycleResult:
        """One upload cycle: the live lane, then the backlog until the byte budget or the end
        of this upload interval. Never raises for network or HTTP problems."""
        backlog_end = self.clock() + self.cfg.upload_interval
        if deadline is not None:
            backlog_end = min(backlog_end, deadline)
        return self._run(live=True, backlog=True, deadline=deadline, backlog_end=backlog_end, throttle=True)

    def drain(self, progress: Callable[[DrainProgress], None] | None = None,
              rate_limit: bool = False) -> CycleResult:
        """Everything pending, oldest first (``queue drain``); stops at the first final failure."""
        return self._run(live=False, backlog=True, deadline=None, backlog_end=None, throttle=rate_limit,
                         progress=progress)

    def _run(self, *, live: bool, backlog: bool, deadline: float | None, backlog_end: float | None,
             throttle: bool, retries: bool = True, honor_stop: bool = True, progress=None) -> CycleResult:
        with self._cycle_lock:
            self._take_pending()
            res = CycleResult()
            started = self.clock()
            try:
                if not self.cfg.remote.url:
                    res.error = "remote.url is not set"
                    return res
                state = self.token.get()
                problem = self.reporting.token_problem = state.problem if state.token is None else None
                if problem:
                    res.ok, res.error = False, f"waiting for token: {problem}"
                    log.warning("upload skipped: %s", res.error)
                    return res
                wait = self.not_before_s(state.token)
                if wait > 0:
                    # A Retry-After or a refused token holds across cycles: nothing goes out yet.
                    res.stopped, res.deferred_s = True, wait
                    log.debug("upload deferred %.1fs (Retry-After or refused token)", wait)
                    return res

                def should_stop() -> bool:
                    if (honor_stop and self._stop.is_set()) or (deadline is not None and self.clock() >= deadline):
                        res.stopped = True
                    return res.stopped or not res.ok

                self.delivery.unpark_restampable()
                run = Run(state.token, deadline, retries, res, should_stop)
                if progress is not None:
                    run.on_accept = progress_reporter(res, progress, started, self.spool, self.clock)
                cutoff_ms = int(self.wall() * 1000) - int(LIVE_WINDOW_INTERVALS * self.cfg.upload_interval * 1000)
                live_ids = live_lane(self.spool, self.delivery, run, cutoff_ms) if live else set()
                if backlog and not should_stop():
                    if throttle:
                        run.pace = lambda n: self._pace(n, res, backlog_end, honor_stop)
                    backlog_lane(self.spool, self.delivery, run, live_ids)
            except Exception as e:  # a spool or timekeeper fault: report it, keep the thread alive
                log.exception("upload cycle failed")
                res.ok, res.error = False, f"{e.__class__.__name__}: {self.transport.scrub(str(e))}"
                self.state.set_error(res.error)
            finally:
                res.duration_s = self.clock() - started
                self._finish(res)
            return res

    def _pace(self, nbytes: int, res: CycleResult, end: float | None, honor_stop: bool) -> bool:
        """Before each backlog request: wait until the byte budget allows ``nbytes``; False
        (the rest goes in the next cycle) once the interval is over, after at least one backlog
        request, or when the wait would run past it."""
        if end is not None and self.clock() >= end and res.backlog_samples > 0:
            # Unthrottled, a million-sample backlog held the live lane back until all was sent.
            # One backlog request per cycle always goes: a slow link must still drain.
            res.stopped = True
            return False
        wait = self.budget.ready_in(nbytes)
        if wait <= 0:
            return True
        if end is not None and self.clock() + wait > end:
            res.stopped = True
            return False
        if self._wait(wait) and honor_stop:
            res.stopped = True
            return False
        return True

    # --- bookkeeping and health -------------------------------------------------------

    def _finish(self, res: CycleResult) -> None:
        self.reporting.cycle_done(res)
        if self.on_cycle is not None:
            self.on_cycle()
        if res.failure == AUTH:
            delay = self.state.token_refused(self._last_token(), self.cfg.upload_interval)
            log.warning("the server refused the token; next try in %.0fs (or as soon as the token file "
                        "changes)", delay)
        self.report()

    def _last_token(self) -> str | None:
        try:
            return self.token.get().token
        except Exception:  # a token source fault shows at the next cycle
            return None

    def report(self, stats=None) -> None:
        """Put the uploader's state into health; ``stats`` is a spool snapshot the caller
        already took (so /health and /metrics show the same numbers), else one is taken."""
        self.reporting.report(stats)

    def facts(self, st) -> healthmod.UploaderFacts:
        return self.reporting.facts(st)

    # --- thread -----------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """The one place the uploader sleeps; True when a stop interrupted it."""
        if self._sleep_fn is not None:
            self._sleep_fn(seconds)
            return self._stop.is_set()
        return self._stop.wait(seconds)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="uploader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next cycle now (the first batch after start, a link that came back)."""
        self._wake.set()

    def next_interval(self, failed: bool = False) -> float:
        """upload_interval ±INTERVAL_JITTER (±FAILURE_JITTER after a ``failed`` cycle), mean
        upload_interval: boxes that start or lose their server together drift apart."""
        spread = FAILURE_JITTER if failed else INTERVAL_JITTER
        return self.cfg.upload_interval * (1.0 + spread * (2.0 * self._rng() - 1.0))

    def _loop(self) -> None:
        next_due = self.clock() + self.next_interval()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_due - self.clock()))
            hold = self.not_before_s(self._last_token())
            if hold > 0 and not self._stop.is_set():
                self._stop.wait(hold)  # a Retry-After holds across cycles
            self._wake.clear()
            if self._stop.is_set():
                break
            started = self.clock()
            res = self.cycle()
            next_due = started + self.next_interval(failed=not res.ok)
        if self._final_deadline is not None:
            # Shutdown: one last try at the newest data, single attempts, inside the stop budget.
            self._run(live=True, backlog=False, deadline=self._final_deadline, backlog_end=None, throttle=False,
                      retries=False, honor_stop=False)

    def stop(self, timeout: float = 5.0, final_upload: bool = True) -> None:
        """Interrupts waits and backoffs at once; then, if ``final_upload``, tries the newest data
        once more within most of ``timeout``. A request already on the wire may run on to
        ``remote.timeout``; the thread is a daemon, so it never holds the process."""
        thread = self._thread
        if thread is None:
            return
        self._final_deadline = self.clock() + 0.8 * timeout if final_upload else None
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("uploader still busy after %.1fs (a request in flight); not waiting longer", timeout)
        else:
            self.transport.close()
        self._thread = None

