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
import sys
import threading
import time
from dataclasses import dataclass

from belabox_metrics import config as configmod
from belabox_metrics import config_child, health, logsetup, residency
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.lock import AlreadyRunning, InstanceLock, lock_path_for
from belabox_metrics.samples import Batch
from belabox_metrics.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

# Upper bound of one loop sleep: keeps the watchdog fed and signals noticed promptly.
MAX_SLEEP = 1.0
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
        self._uncommitted: list[int] = []
        self._next_status = 0.0

    # --- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        """Open everything in dependency order. Raises AlreadyRunning before touching the spool."""
        from belabox_metrics import device_id as device_id_mod
        from belabox_metrics import paths, timekeeping
        from belabox_metrics.store import Spool

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
        self._start_discovery()
        self._start_collectors()
        self._start_uploader()
        self._report_storage()
        self._start_health_server()
        self._start_clock_thread()

    def _start_discovery(self) -> None:
        from belabox_metrics.devices import DeviceRegistry
        from belabox_metrics.discovery import Discovery
        self.discovery = Discovery(DeviceRegistry(), sysfs=self.roots.sysfs, health=self.health,
                                   selfmetrics=self.selfmetrics)
        self.discovery.start()

    def _collector_context(self) -> CollectorContext:
        from belabox_metrics import hardware
        profile = hardware.detect_profile(self.roots.procfs, self.roots.sysfs)
        registry = self.discovery.registry if self.discovery is not None else None
        return CollectorContext(config=self.cfg, procfs=self.roots.procfs, sysfs=self.roots.sysfs,
                                rootfs=self.roots.rootfs, registry=registry, selfmetrics=self.selfmetrics,
                                profile=profile)

    def _start_collectors(self) -> None:
        from belabox_metrics.collectors.registry import build_collectors
        from belabox_metrics.collectors.runner import CollectorRunner
        ctx = self._collector_context()
        self.runner = CollectorRunner(build_collectors(ctx), self.cfg, self.health, self.selfmetrics)

    def _start_uploader(self) -> None:
        from belabox_metrics.token import TokenSource
        from belabox_metrics.upload import Uploader
        if not self.cfg.remote.url:
            self.health.update("uploader", health.OK, "spool only: remote.url is not set",
                               pending_count=self.spool.stats().pending_samples)
            log.warning("remote.url is not set: collecting into the spool only, nothing is uploaded")
            return
        self.uploader = Uploader(self.cfg, self.spool, self.health, self.selfmetrics, device_id=self.device_id,
                                 token=TokenSource(self.cfg, self.environ), timekeeper=self.timekeeper)
        self.uploader.start()

    def _start_health_server(self) -> None:
        if not self.cfg.health.enabled:
            return
        try:
            self.server = health.HealthServer(self.cfg.health.listen_addr, self.health, self.metrics_text)
            self.server.start()
            host = configmod.parse_listen_addr(self.cfg.health.listen_addr)[0]
            log.info("health on http://%s:%d/health", host, self.server.port)
        except OSError as e:
            # Collection matters more than the endpoint: keep running, say so everywhere.
            self.server = None
            log.error("health server: cannot listen on %s: %s", self.cfg.health.listen_addr, e.strerror or e)

    def _start_clock_thread(self) -> None:
        t = threading.Thread(target=self._clock_loop, name="clock", daemon=True)
        t.start()

    def _clock_loop(self) -> None:
        """Skew checks make HTTP requests, so they never run on the collection loop. Without a
        time source the timekeeper asks for retries sooner than the configured interval."""
        while not self._stop.is_set():
            url = self.cfg.clock_skew_url
            if url and self.timekeeper.check_due():
                try:
                    self.timekeeper.check_skew(url)
                except Exception:  # one bad check must not end clock monitoring
                    log.exception("clock skew check failed")
            self._stop.wait(5.0)

    # --- the loop ---------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """One iteration. Returns True when the loop made progress (the watchdog's evidence)."""
        samples = self.runner.run_due(now)
        if samples:
            wall_ms, boot_id, boottime_ns, synced = self.timekeeper.stamp()
            self.spool.append(Batch(tuple(samples), wall_ms, boot_id, boottime_ns, synced))
            self._uncommitted.append(wall_ms)
        try:
            committed = self.spool.maybe_commit(now)
            if committed:
                # A commit takes the whole buffer; a full buffer dropped its oldest, so the last
                # `committed` are what reached the disk. The crash tests read this line.
                log.debug("committed batches wall_ms=%s", ",".join(map(str, self._uncommitted[-committed:])))
                self._uncommitted = []
            self.spool.maintain(now)
            self._commit_error = None
        except Exception as e:  # a full or failing disk must show in health, not kill collection
            self._commit_error = str(e)
            log.error("spool: %s", e)
        self._expire_parked(now)
        if now >= self._next_trim:
            residency.trim()
            self._next_trim = now + TRIM_INTERVAL
        self._report_storage()
        self._report_time()  # every tick, so a clock step shows at once
        if self.uploader is not None and samples and self._ticks == 0:
            self.uploader.wake()
        self._ticks += 1
        return True

    _next_expiry = 0.0
    _next_trim = 0.0

    def _expire_parked(self, now: float) -> None:
        """Drop parked batches (earlier boot, untrusted clock) past storage.parked_max_age,
        judged by the best known true time; without any time source nothing is judged."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + 60.0
        true_now = self.timekeeper.now_ms()
        if true_now is None:
            return
        dropped = self.spool.expire_parked(true_now, self.cfg.storage.parked_max_age)
        if dropped:
            log.warning("dropped %d parked samples older than storage.parked_max_age", dropped)

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
        longest = MAX_SLEEP
        if self.notifier and self.notifier.watchdog_interval:
            longest = min(longest, self.notifier.watchdog_interval)  # a short WatchdogSec must still be fed
        return max(0.0, min(longest, next_due - now))

    def status_line(self) -> str:
        st = self.spool.stats()
        up = "never"
        if self.uploader is not None and self.uploader.last_success_wall:
            up = health.rfc3339(self.uploader.last_success_wall)
        elif self.uploader is None:
            up = "disabled"
        return f"pending={st.pending_samples} last_upload={up}"

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
        if self.notifier:
            self.notifier.reloading()
        ok = False
        try:
            if not self.config_path:
                raise configmod.ConfigError(["no config file to reload (running on built-in defaults)"])
            new = config_child.load(self.config_path)
        except configmod.ConfigError as e:
            for line in e.problems:
                log.error("reload refused, keeping the running config: %s", line)
        else:
            self._apply(new)
            ok = True
            log.info("configuration reloaded from %s", self.config_path)
        if self.notifier:
            self.notifier.ready(self.status_line())
        return ok

    def _apply(self, new: configmod.Config) -> None:
        """Apply what can change live; storage path and listen address need a restart."""
        if new.storage.path != self.cfg.storage.path:
            log.warning("storage.path changed: takes effect after a restart")
        if new.health.listen_addr != self.cfg.health.listen_addr:
            log.warning("health.listen_addr changed: takes effect after a restart")
        logsetup.setup(new.logging.level, new.logging.format)
        old = self.cfg
        self.cfg = new
        if self.runner is not None:
            self.runner.reconfigure(new)
        if self.timekeeper is not None:
            self.timekeeper.reconfigure(new)
        if new.device_id != old.device_id:
            from belabox_metrics import device_id as device_id_mod
            self.device_id = device_id_mod.derive_device_id(new, self.roots.procfs, self.roots.sysfs,
                                                            self.roots.rootfs)
        if self.uploader is not None and new.remote.url:
            self.uploader.reconfigure(new, device_id=self.device_id)
        elif self.uploader is not None:
            self.uploader.stop(timeout=SHUTDOWN_UPLOAD_BUDGET)
            self.uploader = None
            self.health.update("uploader", health.OK, "spool only: remote.url is not set")
        elif new.remote.url:
            self._start_uploader()

    def shutdown(self) -> int:
        if self.notifier:
            self.notifier.stopping()
        log.info("stopping: flushing the spool")
        try:
            if self.spool.flush():
                log.debug("committed batches wall_ms=%s", ",".join(map(str, self._uncommitted)))
        except Exception as e:
            log.error("spool flush at shutdown failed: %s", e)
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

    # --- reporting --------------------------------------------------------------------

    _commit_error: str | None = None

    def _report_storage(self) -> None:
        st = self.spool.stats()
        facts = health.StorageFacts(
            database_size_bytes=st.db_size_bytes, wal_size_bytes=st.wal_size_bytes,
            pending_count=st.pending_samples, wal_threshold_bytes=self.cfg.storage.wal_checkpoint_size_mb << 20,
            path=st.path, persistent=self.data_path.persistent, volatile_reason=self.data_path.reason,
            quarantined=self.spool.open_report.quarantined, commit_error=self._commit_error,
            dropped=dict(st.dropped))
        self.health.update("storage", *health.storage_health(facts))
        sm = self.selfmetrics
        sm.set("metrics_collector_spool_pending_samples", st.pending_samples)
        sm.set("metrics_collector_spool_pending_bytes", st.pending_bytes)
        sm.set("metrics_collector_spool_database_bytes", st.db_size_bytes)
        sm.set("metrics_collector_spool_wal_bytes", st.wal_size_bytes)
        if st.oldest_wall_ms is not None:
            sm.set("metrics_collector_spool_oldest_pending_age_seconds",
                   max(0.0, time.time() - st.oldest_wall_ms / 1000))
        else:
            sm.set("metrics_collector_spool_oldest_pending_age_seconds", 0)

    def _report_time(self) -> None:
        self.health.update("time", *health.time_health(self.timekeeper.facts()))

    def metrics_text(self) -> str:
        """`/metrics`: the agent's own counters plus the latest value of every collected series."""
        from belabox_metrics.exposition import format_samples
        latest = self.runner.latest()
        return format_samples(list(self.selfmetrics.samples()) + list(latest), with_help=True)


def command_run(args: argparse.Namespace) -> int:
    from belabox_metrics import cli, notify
    try:
        cfg = config_child.load(cli.config_file(args))
    except configmod.ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return cli.EXIT_CONFIG
    logsetup.setup(cfg.logging.level, cfg.logging.format)
    residency.limit()
    config_path = None if cfg.source.startswith("<") else cfg.source
    agent = Agent(cfg, Roots.from_config(cfg, args), config_path=config_path, notifier=notify.Notifier())
    try:
        agent.start()
    except AlreadyRunning as e:
        log.error("%s", e)
        return cli.EXIT_RUNNING
    except configmod.ConfigError as e:  # e.g. device_id: auto on a box with no serial nor machine-id
        for line in e.problems:
            print(line, file=sys.stderr)
        agent.close()
        return cli.EXIT_CONFIG
    except OSError as e:
        log.error("cannot start: %s", e)
        agent.close()
        return cli.EXIT_FAILURE
    return agent.run()
