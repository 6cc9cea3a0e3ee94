"""Runs collectors on their intervals, each under a time budget, so a stuck sysfs read
cannot hold up a cycle.

A read from a wedged driver blocks in the kernel and cannot be interrupted from Python, so
collectors run on a worker thread while the caller waits with a deadline. One long-lived
worker runs a whole cycle (a thread per collector per cycle would cost more CPU than most
collectors do). When a collector overruns its timeout the worker is left to it, the cycle
continues on a fresh worker, and the stuck collector is not started again until its read
has returned, then only after an exponentially growing number of skipped cycles.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence

from belabox_metrics.collectors import Collector
from belabox_metrics.config import Config
from belabox_metrics.health.registry import DEGRADED, ERROR, OK, Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.samples import Sample

log = logging.getLogger(__name__)

MAX_SKIP_CYCLES = 32


class _State:
    """Scheduling facts of one collector."""

    __slots__ = ("collector", "name", "enabled", "interval", "timeout", "next_due", "failures",
                 "blocked", "status")

    def __init__(self, collector: Collector):
        self.collector = collector
        self.name = collector.name
        self.enabled = True
        self.interval = 30.0
        self.timeout = 2.0
        self.next_due = float("-inf")
        self.failures = 0  # consecutive timeouts, drives the skip backoff
        self.blocked: threading.Thread | None = None  # a worker still inside collect()
        self.status = ""


class _Job:
    __slots__ = ("states", "results", "current", "done", "abandoned", "lock")

    def __init__(self, states: Sequence[_State]):
        self.states = states
        self.results: list[tuple[_State, list[Sample] | None, BaseException | None, float]] = []
        self.current: tuple[int, float] | None = None  # (index, start) of the running collector
        self.done = threading.Event()
        self.abandoned = False
        self.lock = threading.Lock()


class _Worker(threading.Thread):
    def __init__(self):
        super().__init__(name="collector-worker", daemon=True)
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None or not self._run(job):
                return

    def _run(self, job: _Job) -> bool:
        """Run the job; False when it was abandoned (this thread then ends)."""
        mono = time.monotonic  # budgets are real time, whatever clock schedules the cycles
        for i, st in enumerate(job.states):
            t0 = mono()
            job.current = (i, t0)
            samples, error = None, None
            try:
                samples = st.collector.collect()
            except Exception as e:  # the one broad guard: one collector never sinks the cycle
                error = e
            with job.lock:
                if job.abandoned:
                    return False
                job.results.append((st, samples, error, mono() - t0))
        job.current = None
        job.done.set()
        return True


class CollectorRunner:
    def __init__(self, collectors: Iterable[Collector], cfg: Config, health: Registry | None,
                 selfmetrics: SelfMetrics | None, monotonic=time.monotonic):
        """``monotonic`` only stamps ``run_all``'s cycle; time budgets always use real time."""
        self._states = [_State(c) for c in collectors]
        self._health = health
        self._self = selfmetrics
        self._monotonic = monotonic
        self._worker: _Worker | None = None
        self._latest: dict[str, list[Sample]] = {}  # collector -> its samples of its last run
        self.reconfigure(cfg)

    def reconfigure(self, cfg: Config) -> None:
        """Apply enabled/interval/timeout from a new config; collectors that were not built
        are the caller's to add."""
        for st in self._states:
            cc = cfg.collectors.get(st.name)
            st.enabled = cc.enabled
            interval = cc.interval or cfg.collection_interval
            if interval < st.interval and st.next_due != float("-inf"):
                # Shortened by a reload: due one new interval after the last run, not at the
                # old schedule (from 30 s to 1 s, the old one left up to 30 s without a sample).
                st.next_due = min(st.next_due, st.next_due - st.interval + interval)
            st.interval = interval
            st.timeout = cc.timeout or cfg.collectors.default_timeout
            if st.enabled and self._self is not None:
                # Counters exist from the start, so rate() and increase() see the first error.
                self._self.inc("metrics_collector_collector_errors_total", 0, {"collector": st.name})
            if not st.enabled:
                self._latest.pop(st.name, None)
                if self._health is not None:
                    self._health.remove(f"collector.{st.name}")

    @property
    def names(self) -> list[str]:
        return [st.name for st in self._states if st.enabled]

    def next_due(self) -> float:
        """Monotonic time at which the next collector is due (the agent sleeps until then)."""
        due = [st.next_due for st in self._states if st.enabled]
        return min(due) if due else float("inf")

    def latest(self) -> list[Sample]:
        """Each enabled collector's samples from its last successful run (for /metrics)."""
        return [s for st in self._states if st.enabled for s in self._latest.get(st.name, ())]

    def run_due(self, now_mono: float) -> list[Sample]:
        """Samples of every collector whose interval has come (a little early is fine:
        the agent's tick jitters, and a collector must not slip a whole interval for it)."""
        due = []
        for st in self._states:
            if not st.enabled:
                continue
            slack = min(1.0, 0.1 * st.interval)
            if now_mono < st.next_due - slack:
                continue
            nxt = st.next_due + st.interval
            st.next_due = nxt if now_mono < nxt <= now_mono + st.interval + slack else now_mono + st.interval
            due.append(st)
        return self._run(due, now_mono)

    def run_all(self) -> list[Sample]:
        """One cycle of every enabled collector, due or not (``collect --once``)."""
        return self._run([st for st in self._states if st.enabled], self._monotonic())

    def close(self) -> None:
        if self._worker is not None:
            self._worker.jobs.put(None)
            self._worker = None
        for st in self._states:
            if st.blocked is not None and st.blocked.is_alive():
                continue  # its thread is still inside collect(); the process exit frees it
            try:
                st.collector.close()
            except OSError as e:
                log.warning("closing collector %s: %s", st.name, e)

    # --- one cycle ---------------------------------------------------------------------------

    def _run(self, due: list[_State], now: float) -> list[Sample]:
        runnable = []
        for st in due:
            if st.blocked is not None:
                if st.blocked.is_alive():
                    self._timed_out(st, now, still=True)
                    continue
                st.blocked = None
            runnable.append(st)
        out: list[Sample] = []
        # Collectors that report on the cycle itself (selfstats) run after the others have
        # been recorded, so their numbers describe this cycle rather than the previous one.
        first = [st for st in runnable if not getattr(st.collector, "runs_last", False)]
        last = [st for st in runnable if getattr(st.collector, "runs_last", False)]
        for group in (first, last):
            for st, samples, error, duration in self._execute(group, now):
                self._record(st, samples, error, duration)
                if samples:
                    out.extend(samples)
        return out

    def _execute(self, states: list[_State], now: float) -> list[tuple]:
        """(state, samples, error, duration) for each collector that finished in time."""
        finished: list[tuple] = []
        while states:
            worker = self._worker
            if worker is None:
                worker = self._worker = _Worker()
                worker.start()
            job = _Job(states)
            worker.jobs.put(job)
            done, stuck = self._wait(job)
            finished.extend(done)
            if stuck is None:
                break
            # The worker stays with the stuck collector; the rest go to a fresh one.
            job.states[stuck].blocked = worker
            self._worker = None
            self._timed_out(job.states[stuck], now)
            states = list(job.states[stuck + 1:])
        return finished

    def _wait(self, job: _Job) -> tuple[list[tuple], int | None]:
        """Wait for the job; on an overrun abandon it and return the index of the culprit."""
        mono = time.monotonic
        wait = job.states[0].timeout
        while not job.done.wait(wait):
            with job.lock:
                if job.done.is_set():
                    break
                cur = job.current
                if cur is None:  # the worker has not picked the job up yet
                    continue
                i, t0 = cur
                wait = t0 + job.states[i].timeout - mono()
                if wait > 0:
                    continue
                job.abandoned = True
                return list(job.results), i
        return job.results, None

    def _record(self, st: _State, samples, error, duration: float) -> None:
        labels = {"collector": st.name}
        if self._self is not None:
            self._self.set("metrics_collector_collector_duration_seconds", round(duration, 6), labels)
        if error is not None:
            if self._self is not None:
                self._self.inc("metrics_collector_collector_errors_total", 1, labels)
            message = f"{type(error).__name__}: {error}"
            if st.status != ERROR:
                # A kernel file that is missing or unreadable is a fact about the board, worth
                # one line; anything else is a bug in the collector and gets its traceback.
                if isinstance(error, OSError):
                    log.warning("collector %s: %s", st.name, message)
                else:
                    log.error("collector %s failed", st.name, exc_info=error)
            self._set_health(st, ERROR, message, metrics_collected=0)
            return
        st.failures = 0
        self._latest[st.name] = list(samples or ())
        n = len(samples or ())
        if self._self is not None:
            self._self.inc("metrics_collector_samples_collected_total", n, labels)
        problems = getattr(st.collector, "problems", None)
        if problems:
            self._set_health(st, DEGRADED, "; ".join(problems)[:300], metrics_collected=n)
        else:
            self._set_health(st, OK, f"collected {n} metrics", metrics_collected=n)

    def _timed_out(self, st: _State, now: float, still: bool = False) -> None:
        st.failures += 1
        skip = min(2 ** (st.failures - 1), MAX_SKIP_CYCLES)
        st.next_due = now + st.interval * (1 + skip)
        if self._self is not None:
            self._self.inc("metrics_collector_collector_errors_total", 1, {"collector": st.name})
        what = ("still blocked in a read from an earlier cycle" if still
                else f"timed out after {st.timeout:g}s")
        message = f"{what}; skipping the next {skip} cycle(s)"
        if st.status != ERROR:
            log.error("collector %s %s", st.name, message)
        self._set_health(st, ERROR, message, metrics_collected=0)

    def _set_health(self, st: _State, status: str, message: str, **details) -> None:
        st.status = status
        if self._health is not None:
            self._health.update(f"collector.{st.name}", status, message, **details)
