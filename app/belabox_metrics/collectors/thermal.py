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
from belabox_metrics.collectors.files import list_dir, read_bytes, read_int, read_optional
from belabox_metrics.samples import Sample


def parse_millicelsius(raw: bytes) -> float:
    return int(raw) / 1000.0


class ThermalCollector(Collector):
    name = "thermal"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._dir = os.path.join(ctx.sysfs, "class", "thermal")
        profile = ctx.profile
        self._soc_types = tuple(getattr(profile, "soc_zones", ()) or ())
        self._types: dict[str, str] = {}
        self.problems: list[str] = []

    def collect(self) -> list[Sample]:
        self.problems = []
        out = []
        temps: dict[str, float] = {}
        for entry in list_dir(self._dir):
            if entry.startswith("thermal_zone"):
                out.extend(self._zone(entry, temps))
            elif entry.startswith("cooling_device"):
                out.extend(self._cooling(entry))
        for zone_type in self._soc_types:
            if zone_type in temps:
                out.append(Sample("belabox_soc_temp_celsius", (("type", zone_type),), temps[zone_type]))
                break
        return out

    def _zone(self, entry: str, temps: dict[str, float]) -> list[Sample]:
        base = os.path.join(self._dir, entry)
        zone_type = self._types.get(entry)
        if zone_type is None:
            zone_type = read_optional(os.path.join(base, "type"))
            if zone_type is None:
                return []
            self._types[entry] = zone_type
        try:
            temp = parse_millicelsius(read_bytes(os.path.join(base, "temp")))
        except (OSError, ValueError) as e:
            # A zone that vanished, or a type cached for a zone number now reused.
            self._types.pop(entry, None)
            reason = e.strerror if isinstance(e, OSError) else "not a number"
            self.problems.append(f"{entry} ({zone_type}): {reason}")
            return []
        temps.setdefault(zone_type, temp)
        return [Sample("node_thermal_zone_temp", (("type", zone_type), ("zone", entry[12:])), temp)]

    def _cooling(self, entry: str) -> list[Sample]:
        base = os.path.join(self._dir, entry)
        dev_type = read_optional(os.path.join(base, "type"))
        if dev_type is None:
            return []
        labels = (("name", entry[14:]), ("type", dev_type))
        out = []
        cur = read_int(os.path.join(base, "cur_state"))
        if cur is not None:
            out.append(Sample("node_cooling_device_cur_state", labels, float(cur)))
        top = read_int(os.path.join(base, "max_state"))
        if top is not None:
            out.append(Sample("node_cooling_device_max_state", labels, float(top)))
        return out
