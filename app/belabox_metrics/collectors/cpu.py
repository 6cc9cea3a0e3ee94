"""Collector for per-CPU time in <procfs>/stat (node_exporter's ``cpu`` collector).

Format: Documentation/filesystems/proc.rst, "1.7 Miscellaneous kernel statistics in
/proc/stat". Values are in USER_HZ ticks, which is 100 on every architecture Linux
exports to user space (node_exporter's procfs hard-codes the same).
"""

from __future__ import annotations

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

USER_HZ = 100.0
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GUEST_MODES = ("user", "nice")


def parse_cpu_lines(text: str) -> list[tuple[str, list[int]]]:
    """[(cpu index as str, [user, nice, system, idle, iowait, irq, softirq, steal, guest,
    guest_nice])] for every ``cpuN`` line; older kernels' shorter lines are padded with -1."""
    out = []
    for line in text.splitlines():
        if not line.startswith("cpu") or line[3:4] in (" ", ""):
            continue
        parts = line.split()
        if not parts[0][3:].isdigit():
            continue
        values = [int(v) for v in parts[1:11]]
        values += [-1] * (10 - len(values))
        out.append((parts[0][3:], values))
    return out


class CpuCollector(Collector):
    name = "cpu"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._procfs = ctx.procfs
        self._files = OpenAttributes(2)
        self._labels: dict[str, tuple] = {}

    def _labels_for(self, cpu: str) -> tuple:
        cached = self._labels.get(cpu)
        if cached is None:
            cached = (tuple((("cpu", cpu), ("mode", m)) for m in MODES),
                      tuple((("cpu", cpu), ("mode", m)) for m in GUEST_MODES))
            self._labels[cpu] = cached
        return cached

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        self._files.check(self._procfs)
        text = self._files.read(self._procfs, "stat").decode("ascii", "replace")
        for cpu, values in parse_cpu_lines(text):
            labels, guest_labels = self._labels_for(cpu)
            for i, lab in enumerate(labels):
                if values[i] >= 0:
                    out.append(Sample("node_cpu_seconds_total", lab, values[i] / USER_HZ))
            # The kernel counts guest time inside user/nice as well; node_exporter
            # reports it separately under its own name.
            for i, lab in enumerate(guest_labels):
                if values[8 + i] >= 0:
                    out.append(Sample("node_cpu_guest_seconds_total", lab, values[8 + i] / USER_HZ))
        return out

    def close(self) -> None:
        self._files.close()
