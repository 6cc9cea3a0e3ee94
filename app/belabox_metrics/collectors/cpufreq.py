"""Collector for CPU frequency scaling and thermal throttling counts (node_exporter's
``cpufreq``, plus the throttle counters its ``cpu`` collector reads).

Sources: <sysfs>/devices/system/cpu/cpuN/cpufreq (Documentation/admin-guide/pm/cpufreq.rst,
values in kHz), a link to the policy shared by a cluster of cores (policy0/4/6 on RK3588),
read once per policy and reported per CPU; and cpuN/thermal_throttle (x86 only,
Documentation/arch/x86/...). On ARM boards the evidence of thermal throttling is the cpufreq
cooling devices' ``cur_state`` (thermal collector) and scaling_max below cpuinfo_max here.
``cpuinfo_cur_freq`` is root-only on most kernels; unreadable means omitted.
"""

from __future__ import annotations

import os
import re

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes, list_dir
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
MAX_OPEN_FILES = 128


class CpufreqCollector(Collector):
    name = "cpufreq"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._dir = os.path.join(ctx.sysfs, "devices", "system", "cpu")
        self._cpus: list[str] | None = None
        self._policy: dict[str, str] = {}  # cpu number -> its policy directory
        self._files = OpenAttributes(MAX_OPEN_FILES)

    def _cpu_numbers(self) -> list[str]:
        # CPU hotplug changes which are online, not which cpuN directories exist.
        if self._cpus is None:
            nums = [m.group(1) for m in map(_CPU_DIR.match, list_dir(self._dir)) if m]
            self._cpus = sorted(nums, key=int)
        return self._cpus

    def collect(self) -> list[Sample]:
        out = []
        files = self._files
        values: dict[str, list[tuple[str, float]]] = {}  # policy dir -> [(metric, Hz)]
        packages: dict[str, int] = {}
        cores: set[tuple] = set()
        seen = set()
        for n in self._cpu_numbers():
            link = os.path.join(self._dir, "cpu" + n, "cpufreq")
            policy = self._policy.get(n)
            if policy is None or not os.path.exists(link):
                if not os.path.exists(link):
                    continue  # offline, or no cpufreq driver
                policy = self._policy[n] = os.path.realpath(link)
            seen.add(policy)
            freqs = values.get(policy)
            if freqs is None:
                freqs = values[policy] = []
                if files.check(policy):
                    for fname, metric in FREQ_FILES:
                        khz = files.read_int(policy, fname)
                        if khz is not None:
                            freqs.append((metric, khz * 1000.0))
            labels = (("cpu", n),)
            out.extend(Sample(metric, labels, hz) for metric, hz in freqs)
            out.extend(self._throttles(n, packages, cores, seen))
        out.extend(Sample("node_cpu_package_throttles_total", (("package", p),), float(v))
                   for p, v in sorted(packages.items()))
        files.retain(seen)
        return out

    def _throttles(self, n: str, packages: dict[str, int], cores: set[tuple], seen: set) -> list[Sample]:
        base = os.path.join(self._dir, "cpu" + n)
        files = self._files
        if not os.path.isdir(os.path.join(base, "thermal_throttle")) or not files.check(base):
            return []
        seen.add(base)
        core_count = files.read_int(base, "thermal_throttle/core_throttle_count")
        package = files.read_int(base, "topology/physical_package_id")
        core = files.read_int(base, "topology/core_id")
        if core_count is None or package is None or core is None:
            return []
        pkg = str(package)
        pkg_count = files.read_int(base, "thermal_throttle/package_throttle_count")
        if pkg_count is not None:
            packages[pkg] = pkg_count
        labels = (("core", str(core)), ("package", pkg))
        # Hyper-threads share a core and its counter; node_exporter reports each core once.
        if labels in cores:
            return []
        cores.add(labels)
        return [Sample("node_cpu_core_throttles_total", labels, float(core_count))]

    def close(self) -> None:
        self._files.close()
