"""The agent: one loop that collects, spools, maintains and proves progress to systemd.

`tick(now)` is one iteration and takes the monotonic time as an argument so tests drive
it; `run()` is the loop around it. Uploads, the HTTP server, clock checks and udev
monitoring run in their own threads and meet the loop only through thread-safe objects
(spool, health registry, self-metrics). Signal handlers only set flags (design §1).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from belabox_metrics import config as configmod
from belabox_metrics.agent import chores, reconfigure, relocate, reporting, residency
from belabox_metrics.config import child as config_child
from belabox_metrics.health import registry as health
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform.device_id import DeviceIdError
from belabox_metrics.platform.lock import InstanceLock, lock_path_for
from belabox_metrics.samples import Batch

log = logging.getLogger(__name__)

# Upper bound of one loop sleep. Signals, the uploader's cycles and collection wake the loop
# themselves; what waits for this bound is minutes-scale upkeep and a clock step's health. A tick
# a second was over half of the agent's CPU at a 30-s interval (scripts/bench peers).
MAX_SLEEP = 5.0
# A clean stop tries one last upload, but never holds systemd's stop for long.
SHUTDOWN_UPLOAD_BUDGET = 5.0
# How often STATUS= tells systemd the backlog and the last upload (`systemctl status`).
STATUS_EVERY = 10.0
# Upload requests and spool reads free their buffers in the middle of the heap, where malloc
# keeps them; handing them back every few seconds costs well under a millisecond.
TRIM_INTERVAL = 5.0


@dataclass(frozen=True)
class Roots:
    procfs: str
    sysfs: str
    rootfs: str

    @classmethod
    def from_config(cls, cfg: configmod.Config, args: argparse.Namespace | None = None) -> Roots:
        def pick(name: str) -> str:
            value = getattr(args, name, None) if args is not None else None
            return value or getattr(cfg.host, name)
        return cls(pick("procfs"), pick("sysfs"), pick("rootfs"))


class Agent:
    SHUTDOWN_UPLOAD_BUDGET = SHUTDOWN_UPLOAD_BUDGET

    def __init__(self, cfg: configmod.Config, roots: Roots, *, config_path: str | None = None,
                 environ: dict[str, str] | None = None, notifier=None, monotonic=time.monotonic):
        self.cfg = cfg
        self.roots = roots
        self.config_path = config_path
        self.environ = dict(os.environ if environ is None else environ)
        self.monotonic = monotonic
        self.selfmetrics = SelfMetrics()
        self.health = health.Registry()
        self.notifier = notifier
        self.lock: InstanceLock | None = None
        self.spool = None
        self.uploader = None
        self.runner = None
        self.server = None
        self.discovery = None
        self.timekeeper = None
        self.data_path = None
        self.device_id = ""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_requested = False
        self._stall_requested = False
        self._ticks = 0
        self._next_status = 0.0
        self.history = None  # agent/history.py, once the spool is open
        self.restart_needed: list[str] = []  # settings changed by reloads that wait for a restart

    # --- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        """Open everything in dependency order. Raises AlreadyRunning before touching the spool."""
        from belabox_metrics.platform import clock as timekeeping
        from belabox_metrics.platform import device_id as device_id_mod
        from belabox_metrics.spool import location as paths
        from belabox_metrics.spool.store import Spool

        self.data_path = paths.resolve_data_dir(self.cfg, self.environ, procfs=self.roots.procfs)
        db_path = self.data_path.db_path
        self.lock = InstanceLock(lock_path_for(db_path))
        self.lock.acquire()
        self.device_id = device_id_mod.derive_device_id(self.cfg, self.roots.procfs, self.roots.sysfs,
                                                        self.roots.rootfs)
        log.info("starting: device_id=%s data=%s (%s)", self.device_id, db_path,
                 "persistent" if self.data_path.persistent else f"VOLATILE: {self.data_path.reason}")
        self.spool = Spool.open(db_path, self.cfg.storage, selfmetrics=self.selfmetrics, clock=self.monotonic)
        if self.spool.open_report.quarantined:
            log.warning("storage: %s", self.spool.open_report.message)
        self.timekeeper = timekeeping.Timekeeper(self.cfg, procfs=self.roots.procfs,
                                                 selfmetrics=self.selfmetrics)
        chores.start_history(self)
        reconfigure.build(self)
        if self.server is not None:
            self.server.history = self.history.answer
        self._report_storage()
        chores.start_clock_thread(self)

    def start_uploader(self) -> None:
        reconfigure.start_uploader(self)

    # --- the loop ---------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """One iteration. Returns True when the loop made progress (the watchdog's evidence)."""
        samples = self.runner.run_due(now)
        if samples:
            wall_ms, boot_id, boottime_ns, synced = self.timekeeper.stamp()
            batch = Batch(tuple(samples), wall_ms, boot_id, boottime_ns, synced)
            self.spool.append(batch)
            if self.history is not None:
                self.history.feed(batch)
        try:
            committed = self.spool.maybe_commit(now)
            if committed:
                # What reached the disk (acknowledged batches never do). The crash tests read this line.
                log.debug("committed batches wall_ms=%s", ",".join(map(str, self.spool.last_committed_wall_ms)))
            self.spool.maintain(now)
            if self.history is not None:
                self.history.maybe_persist(now, committed=bool(committed))
            self._commit_error = None
        except Exception as e:  # a full or failing disk must show in health, not kill collection
            self._commit_error = str(e)
            log.error("spool: %s", e)
        chores.expire_parked(self, now)
        relocate.maybe_return(self, now)
        if now >= self._next_trim:
            residency.trim()
            self._next_trim = now + TRIM_INTERVAL
        self._report_storage()
        self._report_time()  # every tick, so a clock step shows within MAX_SLEEP
        if self.uploader is not None and samples and self._ticks == 0:
            self.uploader.wake()
        self._ticks += 1
        return True

    _next_expiry = 0.0
    _next_trim = 0.0
    _next_home_check = 0.0
    _home_blocked = False

    def run(self) -> int:
        self._install_signals()
        if self.notifier:
            self.notifier.ready(self.status_line())
        while not self._stop.is_set():
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if self._stall_requested:
                log.warning("test hook: stalling the loop")
                while not self._stop.is_set():
                    time.sleep(0.5)
                break
            now = self.monotonic()
            progressed = self.tick(now)
            if self.notifier:
                if progressed and self.notifier.watchdog_due(now):
                    self.notifier.ping(now)
                if now >= self._next_status:
                    self.notifier.status(self.status_line())
                    self._next_status = now + STATUS_EVERY
            self._wake.wait(self._sleep_for(now))
            self._wake.clear()
        return self.shutdown()

    def _sleep_for(self, now: float) -> float:
        next_due = self.runner.next_due()
        commit_due = self.spool.next_commit_due()
        # The power-cut loss bound is commit_interval, not a tick later. Still due after the tick
        # that just tried means the write failed (a full or read-only disk): the retry waits for
        # the next ordinary tick, or the loop would spin on it.
        if commit_due is not None and commit_due > now:
            next_due = min(next_due, commit_due)
        longest = MAX_SLEEP
        ping_in = self.notifier.next_ping_in(now) if self.notifier else None
        if ping_in is not None:
            # Until the next ping is due, not a whole interval: a wake in between (an upload
            # cycle) would otherwise push the ping up to twice the interval away.
            longest = min(longest, max(ping_in, 0.01))
        return max(0.0, min(longest, next_due - now))

    # --- signals, reload, shutdown ------------------------------------------------------

    def _install_signals(self) -> None:
        def stop(signum, frame):
            self._stop.set()
            self._wake.set()

        def hup(signum, frame):
            self._reload_requested = True
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        if self.environ.get("METRICS_COLLECTOR_TEST_HOOKS") == "1":
            # Lets the service tests prove that a hung loop stops WATCHDOG=1 (and systemd restarts it).
            def stall(signum, frame):
                self._stall_requested = True
                self._wake.set()
            signal.signal(signal.SIGUSR2, stall)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def reload(self) -> bool:
        """SIGHUP: validate the file in a child, then apply it through the same path as start-up.
        A refused file leaves the running config and says so in health until fixed."""
        if self.notifier:
            self.notifier.reloading()
        ok = False
        try:
            if not self.config_path:
                raise configmod.ConfigError(["no config file to reload (running on built-in defaults)"])
            new = config_child.load(self.config_path)
            outcome = reconfigure.apply(self, new)
        except (configmod.ConfigError, DeviceIdError) as e:
            for line in e.problems:  # one line per problem, like check-config
                log.error("reload refused, keeping the running config: %s", line)
            reconfigure.report(self, None, refused=list(e.problems))
        else:
            ok = True
            changed = ", ".join(outcome.changed) or "nothing"
            restart = f"; restart needed: {', '.join(outcome.restart_needed)}" if outcome.restart_needed else ""
            log.info("configuration reloaded from %s: changed %s%s", self.config_path, changed, restart)
            reconfigure.report(self, outcome)
        if self.notifier:
            self.notifier.ready(self.status_line())
        return ok

    def shutdown(self) -> int:
        if self.notifier:
            self.notifier.stopping()
        log.info("stopping: flushing the spool")
        try:
            if self.spool.flush():
                log.debug("committed batches wall_ms=%s", ",".join(map(str, self.spool.last_committed_wall_ms)))
        except Exception as e:
            log.error("spool flush at shutdown failed: %s", e)
        if self.history is not None:
            self.history.persist()
            self.history.record_stop(self.timekeeper.stamp()[0])
        if self.uploader is not None:
            self.uploader.stop(timeout=SHUTDOWN_UPLOAD_BUDGET, final_upload=True)
        self.close()
        return 0

    def close(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.stop()
        if self.runner is not None:
            self.runner.close()
        if self.discovery is not None:
            self.discovery.stop()
        if self.spool is not None:
            self.spool.close()
        if self.lock is not None:
            self.lock.release()

    # --- reporting (agent/reporting.py) -----------------------------------------------

    _commit_error: str | None = None

    def _report_storage(self) -> None:
        reporting.report_storage(self)

    def _report_time(self) -> None:
        self.health.update("time", *health.time_health(self.timekeeper.facts()))

    def metrics_text(self) -> str:
        return reporting.metrics_text(self)

    def status_line(self) -> str:
        return reporting.status_line(self)
