"""Collector for load, boot time, process and interrupt counts and the clock
(node_exporter's ``loadavg``, ``stat`` and ``time`` collectors).

Sources: <procfs>/loadavg, <procfs>/stat and <procfs>/uptime (Documentation/filesystems/proc.rst).
"""

from __future__ import annotations

import time

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

_STAT_METRICS = {
    "btime": "node_boot_time_seconds",
    "ctxt": "node_context_switches_total",
    "intr": "node_intr_total",
    "processes": "node_forks_total",
    "procs_running": "node_procs_running",
    "procs_blocked": "node_procs_blocked",
}


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_stat_totals(text: str) -> dict[str, float]:
    """The system-wide lines of /proc/stat by node_exporter name (``intr``: its first column, the total)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("cpu"):
            continue
        key, _, rest = line.partition(" ")
        name = _STAT_METRICS.get(key)
        if name is not None:
            first = rest.split(None, 1)
            if first:
                out[name] = float(first[0])
    return out


def parse_uptime(text: str) -> float:
    return float(text.split()[0])


class LoadavgCollector(Collector):
    name = "loadavg"

    def __init__(self, ctx, clock=time.time):
        super().__init__(ctx)
        self._procfs = ctx.procfs
        self._files = OpenAttributes(4)
        self._clock = clock

    def collect(self) -> list[Sample]:
        files, procfs = self._files, self._procfs
        files.check(procfs)
        load1, load5, load15 = parse_loadavg(files.read(procfs, "loadavg").decode())
        out = [Sample("node_load1", (), load1), Sample("node_load5", (), load5),
               Sample("node_load15", (), load15)]
        stat = files.read(procfs, "stat").decode("ascii", "replace")
        out.extend(Sample(name, (), value) for name, value in parse_stat_totals(stat).items())
        uptime = files.read_optional(procfs, "uptime")
        if uptime:
            # Unlike node_boot_time_seconds (btime is wall clock minus uptime), this does
            # not move when a board without an RTC steps its clock after boot.
            out.append(Sample("belabox_uptime_seconds", (), parse_uptime(uptime)))
        out.append(Sample("node_time_seconds", (), self._clock()))
        return out

    def close(self) -> None:
        self._files.close()
