"""Collector for pressure stall information in <procfs>/pressure (node_exporter's ``pressure``).

Format: Documentation/accounting/psi.rst; ``total=`` is in microseconds. Kernels built
without CONFIG_PSI, or booted with psi=0, have no such files (or answer EOPNOTSUPP):
then there is nothing to report, which is not an error.
"""

from __future__ import annotations

import os

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

# (resource, line kind) -> node_exporter name. node_exporter 1.5 ignores "full" for cpu
# (added in Linux 5.13 and always 0 at the system level), so do we.
METRICS = {
    ("cpu", "some"): "node_pressure_cpu_waiting_seconds_total",
    ("io", "some"): "node_pressure_io_waiting_seconds_total",
    ("io", "full"): "node_pressure_io_stalled_seconds_total",
    ("memory", "some"): "node_pressure_memory_waiting_seconds_total",
    ("memory", "full"): "node_pressure_memory_stalled_seconds_total",
}


def parse_psi(text: str) -> dict[str, float]:
    """{"some": seconds, "full": seconds} from the ``total=`` fields."""
    out = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            if field.startswith("total="):
                out[kind] = int(field[6:]) / 1e6
    return out


class PressureCollector(Collector):
    name = "pressure"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._dir = os.path.join(ctx.procfs, "pressure")
        self._files = OpenAttributes(3)

    def collect(self) -> list[Sample]:
        out = []
        if not self._files.check(self._dir):
            return out  # no PSI on this kernel
        for resource in ("cpu", "io", "memory"):
            try:
                text = self._files.read(self._dir, resource).decode()
            except OSError:
                continue  # no PSI on this kernel
            for kind, seconds in parse_psi(text).items():
                name = METRICS.get((resource, kind))
                if name:
                    out.append(Sample(name, (), seconds))
        return out

    def close(self) -> None:
        self._files.close()
