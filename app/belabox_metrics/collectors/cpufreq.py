"""Collector for CPU frequency scaling and thermal throttling counts (node_exporter's
``cpufreq``, plus the throttle counters its ``cpu`` collector reads).

Sources: <sysfs>/devices/system/cpu/cpuN/cpufreq (Documentation/admin-guide/pm/cpufreq.rst,
values in kHz) and cpuN/thermal_throttle (x86 only: Documentation/x86/... "thermal_throttle").
On ARM boards the evidence of thermal throttling is the cpufreq cooling devices'
``cur_state``, reported by the thermal collector, and scaling_max below cpuinfo_max here.
``cpuinfo_cur_freq`` is root-only on most kernels; unreadable means omitted.
"""

from __future__ import annotations

import os
import re

from belabox_metrics.collectors import Collector
from belabox_metrics.collectors.files import list_dir, read_int
from belabox_metrics.samples import Sample

FREQ_FILES = (
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz"),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz"),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz"),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz"),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz"),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz"),
)
_CPU_DIR = re.compile(r"^cpu(\d+)$")


class CpufreqCollector(Collector):
    name = "cpufreq"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._dir = os.path.join(ctx.sysfs, "devices", "system", "cpu")
        self._cpus: list[str] | None = None

    def _cpu_numbers(self) -> list[str]:
        # CPU hotplug changes which are online, not which cpuN directories exist.
        if self._cpus is None:
            nums = [m.group(1) for m in map(_CPU_DIR.match, list_dir(self._dir)) if m]
            self._cpus = sorted(nums, key=int)
        return self._cpus

    def collect(self) -> list[Sample]:
        out = []
        packages: dict[str, int] = {}
        cores: set[tuple] = set()
        for n in self._cpu_numbers():
            base = os.path.join(self._dir, "cpu" + n)
            freq = os.path.join(base, "cpufreq")
            labels = (("cpu", n),)
            for fname, metric in FREQ_FILES:
                khz = read_int(os.path.join(freq, fname))
                if khz is not None:
                    out.append(Sample(metric, labels, khz * 1000.0))
            out.extend(self._throttles(base, packages, cores))
        out.extend(Sample("node_cpu_package_throttles_total", (("package", p),), float(v))
                   for p, v in sorted(packages.items()))
        return out

    def _throttles(self, base: str, packages: dict[str, int], cores: set[tuple]) -> list[Sample]:
        core_count = read_int(os.path.join(base, "thermal_throttle", "core_throttle_count"))
        if core_count is None:
            return []
        package = read_int(os.path.join(base, "topology", "physical_package_id"))
        core = read_int(os.path.join(base, "topology", "core_id"))
        if package is None or core is None:
            return []
        pkg = str(package)
        pkg_count = read_int(os.path.join(base, "thermal_throttle", "package_throttle_count"))
        if pkg_count is not None:
            packages[pkg] = pkg_count
        labels = (("core", str(core)), ("package", pkg))
        # Hyper-threads share a core and its counter; node_exporter reports each core once.
        if labels in cores:
            return []
        cores.add(labels)
        return [Sample("node_cpu_core_throttles_total", labels, float(core_count))]
