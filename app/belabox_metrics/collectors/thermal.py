"""Collector for thermal zones and cooling devices in <sysfs>/class/thermal
(node_exporter's ``thermal_zone``).

Format: Documentation/driver-api/thermal/sysfs-api.rst; ``temp`` is in millidegrees
Celsius. Every zone is read on its own: a zone whose sensor answers EIO (a powered-down
GPU on RK3588, a Jetson sensor behind a sleeping bus) is reported in health and the
other zones are still exported; node_exporter 1.5 drops all zones then (its issue #2980).
A cooling device's ``cur_state`` above 0 is thermal throttling in progress (for a
cpufreq cooling device, how many frequency steps are taken away).
"""

from __future__ import annotations

import os

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes, list_dir
from belabox_metrics.samples import Sample

MAX_OPEN_FILES = 128


def parse_millicelsius(raw: bytes) -> float:
    return int(raw) / 1000.0


class ThermalCollector(Collector):
    name = "thermal"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._dir = os.path.join(ctx.sysfs, "class", "thermal")
        self._soc_types = tuple(getattr(ctx.profile, "soc_zones", ()) or ())
        self._files = OpenAttributes(MAX_OPEN_FILES)
        self.problems: list[str] = []

    def collect(self) -> list[Sample]:
        self.problems = []
        out = []
        temps: dict[str, float] = {}
        seen = set()
        for entry in list_dir(self._dir):
            base = os.path.join(self._dir, entry)
            if entry.startswith("thermal_zone"):
                seen.add(base)
                out.extend(self._zone(entry, base, temps))
            elif entry.startswith("cooling_device"):
                seen.add(base)
                out.extend(self._cooling(entry, base))
        self._files.retain(seen)
        for zone_type in self._soc_types:
            if zone_type in temps:
                out.append(Sample("belabox_soc_temp_celsius", (("type", zone_type),), temps[zone_type]))
                break
        return out

    def _zone(self, entry: str, base: str, temps: dict[str, float]) -> list[Sample]:
        files = self._files
        if not files.check(base):
            return []
        zone_type = files.read_optional(base, "type")
        if zone_type is None:
            return []
        try:
            temp = parse_millicelsius(files.read(base, "temp"))
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not a number"
            self.problems.append(f"{entry} ({zone_type}): {reason}")
            return []
        temps.setdefault(zone_type, temp)
        return [Sample("node_thermal_zone_temp", (("type", zone_type), ("zone", entry[12:])), temp)]

    def _cooling(self, entry: str, base: str) -> list[Sample]:
        files = self._files
        if not files.check(base):
            return []
        dev_type = files.read_optional(base, "type")
        if dev_type is None:
            return []
        labels = (("name", entry[14:]), ("type", dev_type))
        out = []
        cur = files.read_int(base, "cur_state")
        if cur is not None:
            out.append(Sample("node_cooling_device_cur_state", labels, float(cur)))
        top = files.read_int(base, "max_state")
        if top is not None:
            out.append(Sample("node_cooling_device_max_state", labels, float(top)))
        return out

    def close(self) -> None:
        self._files.close()
