"""Cellular modems: radio data from ModemManager (``mmcli -J``), the only module that talks to it.

Every modem discovery knows appears, ModemManager or not: a HiLink stick is only a
cdc_ether NIC, so it gets ``belabox_modem_info`` (identity, driver, bus and port) and
``belabox_modem_present`` from udev/sysfs alone, plus the byte counters of its interface.
ModemManager adds state, signal, registration and SIM, joined on the same ``modem`` key.
Each mmcli call runs under ``modem.mmcli_timeout`` in its own process group and is
killed when over time; after one timeout no further call is made in that cycle. When
mmcli runs at all is schedule.py's decision: no process per cycle while the answer
cannot have changed. Here: running mmcli (Mmcli) and asking it about each modem
(ModemCollector); joining its modems to udev's is matching.py, their samples series.py.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections import deque
from typing import Any

from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.collectors.modem.matching import match_entries
from belabox_metrics.collectors.modem.parse import (
    MmcliFormatError,
    ModemStatus,
    SignalReport,
    SimStatus,
    parse_modem,
    parse_modem_list,
    parse_signal,
    parse_sim,
)
from belabox_metrics.collectors.modem.schedule import ABSENT, PRESENT, ListSchedule, mmcli_missing, system_bus_missing
from belabox_metrics.collectors.modem.series import entry_samples
from belabox_metrics.devices.model import DeviceChange
from belabox_metrics.samples import Sample, sample

log = logging.getLogger(__name__)

DROPPED = "metrics_collector_dropped_series_total"
ERRORS = "metrics_collector_collector_errors_total"


_STDERR_NOISE = re.compile(r"\(mmcli:\d+\)|\d\d:\d\d:\d\d\.\d+")
NOT_RUNNING = "ModemManager not running: radio metrics unavailable"


class MmcliError(Exception):
    """One failed mmcli call; ``kind`` is missing, not_running, gone, timeout or failed."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Mmcli:
    """Runs one ``mmcli`` call at a time, bounded: its own process group, killed when over
    ``modem.mmcli_timeout``; after one timeout the rest of the cycle makes no call."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.timed_out = False  # reset by the collector at the start of every cycle
        self.recent_stderr: deque[str] = deque(maxlen=20)  # mmcli warnings, for diagnostics
        self._warned: set[str] = set()

    def __call__(self, *args: str) -> str:
        if self.timed_out:
            raise MmcliError("timeout", "skipped after an earlier mmcli timeout in this cycle")
        cmd = [self.cfg.mmcli_path, *args]
        shown = "mmcli " + " ".join(args)
        # C locale: the error texts below are matched in English.
        env = dict(os.environ, LC_ALL="C", LANG="C")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except FileNotFoundError:
            raise MmcliError("missing", f"mmcli not found (modem.mmcli_path: {self.cfg.mmcli_path!r})") from None
        except OSError as e:
            raise MmcliError("missing", f"cannot run {self.cfg.mmcli_path!r}: {e.strerror}") from None
        try:
            out, err = proc.communicate(timeout=self.cfg.mmcli_timeout)
        except subprocess.TimeoutExpired:
            # The whole group: a wrapper script's children would otherwise hold the pipes open.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            self.timed_out = True
            raise MmcliError("timeout", f"{shown} timed out after {self.cfg.mmcli_timeout:g}s "
                                        "and was killed") from None
        text_err = err.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            first = (text_err or out.decode("utf-8", "replace").strip() or "no output").splitlines()[0]
            if "couldn't find the ModemManager process" in text_err or "couldn't get bus" in text_err:
                raise MmcliError("not_running", f"ModemManager is not running ({shown}: {first})")
            if "couldn't find modem" in text_err or "couldn't find SIM" in text_err:
                raise MmcliError("gone", f"{shown}: {first}")
            raise MmcliError("failed", f"{shown} failed with exit code {proc.returncode}: {first}")
        if text_err:
            self._note_stderr(shown, text_err.splitlines()[0])
        return out.decode("utf-8", "replace")

    def _note_stderr(self, shown: str, line: str) -> None:
        self.recent_stderr.append(f"{shown}: {line}")
        # The same GLib warning comes with every call: log each distinct one once.
        key = _STDERR_NOISE.sub("", line)
        if key not in self._warned and len(self._warned) < 64:
            self._warned.add(key)
            log.warning("%s: %s", shown, line)


class ModemCollector(Collector):
    name = "modem"

    def __init__(self, ctx: CollectorContext, health: Any = None):
        super().__init__(ctx)
        self.cfg = ctx.config.modem
        self.health = health
        self.status = ("ok", "no modem")
        self._mmcli = Mmcli(self.cfg)
        self._signal_setup_done: set[str] = set()  # MM paths set up during their current appearance
        self.schedule = ListSchedule()
        self._sims: dict[str, SimStatus] = {}  # SIM object path -> what mmcli said (a new SIM gets a new path)
        self._unsubscribe: Any = None

    @property
    def recent_stderr(self) -> deque[str]:
        return self._mmcli.recent_stderr

    @property
    def problems(self) -> list[str]:
        """What the runner shows as a degraded ``collector.modem`` (ModemManager down, mmcli
        slow or malformed); without this the runner's "ok" would hide it after every cycle."""
        return [self.status[1]] if self.status[0] != "ok" else []

    def modemmanager_running(self) -> tuple[bool | None, str]:
        """One check for `devices`: (True, "") when ModemManager answers, (False, why) when it
        cannot run or is not running, (None, problem) when mmcli failed otherwise."""
        problems: list[str] = []
        self._list(problems)
        if self.schedule.state == PRESENT:
            return True, ""
        return (False if self.schedule.state == ABSENT else None), "; ".join(problems)

    # --- what ModemManager says -----------------------------------------------------------

    def _list(self, problems: list[str]) -> list[str]:
        """The modem object paths, from mmcli only when the schedule says it may have changed."""
        sched = self.schedule
        why_absent = ("mmcli not found (modem.mmcli_path: " f"{self.cfg.mmcli_path!r})"
                      if mmcli_missing(self.cfg.mmcli_path) else None)
        if why_absent is None:
            bus = system_bus_missing()
            why_absent = f"ModemManager is not running ({bus})" if bus else None
        if why_absent is not None:  # a stat said so: no process needed
            sched.absent(why_absent)
        elif not sched.must_list():
            if sched.state == ABSENT:
                problems.append(sched.absent_reason)
            return list(sched.paths)
        else:
            try:
                paths = parse_modem_list(self._mmcli("-L", "-J"))
            except MmcliFormatError as e:
                problems.append(f"mmcli -L -J returned malformed output: {e}")
                self._count_error()
                sched.unknown()
            except MmcliError as e:
                if e.kind in ("not_running", "missing"):
                    sched.absent(e.args[0])
                else:
                    problems.append(e.args[0])
                    self._count_error()
                    sched.unknown()
            else:
                sched.listed(paths)
                self._signal_setup_done &= set(paths)  # a modem that left and came back is set up again
                self._sims.clear()
                return paths
        if sched.state == ABSENT:
            problems.append(sched.absent_reason)
        self._signal_setup_done.clear()
        return []

    def _query(self, problems: list[str]) -> list[tuple[ModemStatus, SignalReport | None, SimStatus | None]]:
        """Everything ModemManager says about its modems; problems go to ``problems``."""
        out = []
        for path in self._list(problems):
            index = path.rsplit("/", 1)[-1]
            try:
                status = parse_modem(self._mmcli("-m", index, "-J"))
            except MmcliError as e:
                self.schedule.failed()  # gone, renumbered or ModemManager in trouble: list again
                if e.kind == "gone":
                    log.debug("modem %s vanished between -L and -m: %s", index, e)
                    continue
                if e.kind == "not_running":
                    self.schedule.absent(e.args[0])
                problems.append(e.args[0])
                if e.kind != "not_running":
                    self._count_error()
                continue
            except MmcliFormatError as e:
                problems.append(f"mmcli -m {index} -J returned malformed output: {e}")
                self._count_error()
                continue
            out.append((status, self._signal(status, problems), self._sim(status, problems)))
        return out

    def _signal(self, status: ModemStatus, problems: list[str]) -> SignalReport | None:
        try:
            report = parse_signal(self._mmcli("-m", status.index, "--signal-get", "-J"))
        except (MmcliError, MmcliFormatError) as e:
            if not isinstance(e, MmcliError) or e.kind not in ("gone", "failed"):
                problems.append(f"signal of modem {status.index}: {e}")
            return None
        rate = self.cfg.signal_setup_rate
        if rate > 0 and report.rate == 0 and status.path not in self._signal_setup_done:
            # Bounded: once per modem appearance, whether or not it works.
            self._signal_setup_done.add(status.path)
            try:
                self._mmcli("-m", status.index, f"--signal-setup={rate}")
                log.info("modem %s: extended signal polling enabled every %ss", status.index, rate)
            except MmcliError as e:
                log.warning("modem %s: signal setup failed: %s", status.index, e)
        return report

    def _sim(self, status: ModemStatus, problems: list[str]) -> SimStatus | None:
        if status.sim_path is None:
            return None
        if status.sim_path in self._sims:
            return self._sims[status.sim_path]
        try:
            sim = parse_sim(self._mmcli("-i", status.sim_path.rsplit("/", 1)[-1], "-J"))
            self._sims[status.sim_path] = sim
            return sim
        except (MmcliError, MmcliFormatError) as e:
            if not isinstance(e, MmcliError) or e.kind != "gone":
                problems.append(f"SIM of modem {status.index}: {e}")
            return None

    # --- the cycle ----------------------------------------------------------------------------

    def _on_device_change(self, change: DeviceChange) -> None:
        if change.kind == "modem" and change.action in ("add", "remove"):
            self.schedule.devices_changed()

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().close()

    def collect(self) -> list[Sample]:
        self._mmcli.timed_out = False
        problems: list[str] = []
        registry = self.device_registry()
        if self._unsubscribe is None and hasattr(registry, "subscribe"):
            self._unsubscribe = registry.subscribe(self._on_device_change)
        udev = list(registry.modems())  # first: a sysfs rescan here reports its changes before listing
        mm = self._query(problems)
        entries = match_entries(mm, udev, registry)
        kept: list[Sample] = []
        if self.schedule.state in (PRESENT, ABSENT):
            # Whether radio metrics can come at all: one series, so a dashboard or `diagnose`
            # says it once rather than per modem.
            kept.append(sample("belabox_modemmanager_up", 1 if self.schedule.state == PRESENT else 0, {}))
        dropped = {"max_modems": 0, "max_series": 0}
        budget = self.ctx.config.limits.max_series
        for i, entry in enumerate(entries):
            series = entry_samples(entry, self.cfg, self.ctx.sysfs)
            if i >= self.cfg.max_modems:
                dropped["max_modems"] += len(series)
                continue
            room = max(0, budget - len(kept))
            kept.extend(series[:room])
            dropped["max_series"] += len(series) - min(room, len(series))
        for reason, n in dropped.items():
            if n and self.ctx.selfmetrics is not None:
                self.ctx.selfmetrics.inc(DROPPED, n, {"reason": reason})
        if dropped["max_modems"]:
            problems.append(f"modem.max_modems ({self.cfg.max_modems}) exceeded: "
                            f"{len(entries) - self.cfg.max_modems} modem(s) not reported")
        if dropped["max_series"]:
            problems.append(f"limits.max_series ({budget}) reached: {dropped['max_series']} modem series dropped")
        self._set_status(problems, len(entries), len(mm))
        return kept

    def _count_error(self) -> None:
        if self.ctx.selfmetrics is not None:
            self.ctx.selfmetrics.inc(ERRORS, 1, {"collector": self.name})

    def _set_status(self, problems: list[str], total: int, via_mm: int) -> None:
        if problems:
            message = "; ".join(dict.fromkeys(problems))
            if via_mm == 0 and any("ModemManager is not running" in p or "mmcli not found" in p
                                   for p in problems):
                message += "; modem radio metrics unavailable"
            self.status = ("degraded", message)
        else:
            self.status = ("ok", f"{total} modem(s), {via_mm} via ModemManager")
        if self.health is not None:
            self.health.update(f"collector.{self.name}", self.status[0], self.status[1],
                               modems=total, modemmanager_modems=via_mm)
