"""Collector for the agent's own metrics: what the other parts counted in SelfMetrics
plus this process's memory, CPU time and disk writes from <procfs>/self.

Formats: Documentation/filesystems/proc.rst, tables 1-2 (status), 1-4 (stat) and the
``io`` section. ``write_bytes`` counts what reached the block layer: the flash wear the
agent causes, which is what a BELABOX owner cares about.
"""

from __future__ import annotations

import os

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

USER_HZ = 100.0


def parse_status_rss(text: str) -> float | None:
    """VmRSS in bytes."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return None


def parse_stat_cpu_seconds(text: str) -> float:
    """utime + stime in seconds. The command name (field 2) may contain spaces and
    parentheses, so fields are counted after its closing parenthesis."""
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / USER_HZ


def parse_io_write_bytes(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("write_bytes:"):
            return float(line.split()[1])
    return None


class SelfstatsCollector(Collector):
    name = "selfstats"
    runs_last = True  # report this cycle's per-collector counts, not the previous cycle's

    def __init__(self, ctx):
        super().__init__(ctx)
        self._self = os.path.join(ctx.procfs, "self")
        self._files = OpenAttributes(3)

    def collect(self) -> list[Sample]:
        out = list(self.ctx.selfmetrics.samples()) if self.ctx.selfmetrics is not None else []
        files = self._files
        if not files.check(self._self):
            return out
        status = files.read_optional(self._self, "status")
        rss = parse_status_rss(status) if status else None
        if rss is not None:
            out.append(Sample("metrics_collector_resident_memory_bytes", (), rss))
        stat = files.read_optional(self._self, "stat")
        if stat:
            out.append(Sample("metrics_collector_cpu_seconds_total", (), parse_stat_cpu_seconds(stat)))
        io = files.read_optional(self._self, "io")
        written = parse_io_write_bytes(io) if io else None
        if written is not None:
            out.append(Sample("metrics_collector_disk_written_bytes_total", (), written))
        return out

    def close(self) -> None:
        self._files.close()
