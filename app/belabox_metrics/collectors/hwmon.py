"""Collector for hardware monitors in <sysfs>/class/hwmon (node_exporter's ``hwmon``,
same names and ``chip``/``sensor`` labels) and INA3221 power rails.

Formats: Documentation/hwmon/sysfs-interface.rst (temperatures in m°C, voltages in mV,
currents in mA, power in µW, energy in µJ). Naming follows node_exporter 1.5
(collector/hwmon_linux.go), including its quirks: a sensor file in the hwmon's ``device``
directory counts too (so a thermal zone's own ``temp`` shows up as sensor ``temp0``).

Jetson power rails (belabox-image.md §2.4) come in two layouts: the ``ina3221`` hwmon
driver (JetPack >= 5: ``inN_label``, ``inN_input``, ``currN_input``) and the older
``ina3221x`` iio driver (JetPack <= 4: ``rail_name_N``, ``in_voltageN_input``,
``in_currentN_input``, ``in_powerN_input`` in <sysfs>/bus/iio/devices/iio:deviceN). Both
become ``belabox_power_rail_*{rail}`` so one dashboard query covers both; the hwmon one is
also exported under node_exporter's names.
"""

from __future__ import annotations

import os
import re

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes, list_dir, read_optional
from belabox_metrics.samples import Sample

SENSOR_TYPES = frozenset(("vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm", "temp",
                          "curr", "power", "energy", "humidity", "intrusion", "freq"))
_FILENAME = re.compile(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$")
_INVALID = re.compile(r"[^a-z0-9:_]")
_IIO_RAIL = re.compile(r"^rail_name_(\d+)$")
MAX_OPEN_FILES = 256


def clean_name(name: str) -> str:
    """node_exporter's cleanMetricName: lower case, [^a-z0-9:_] to _, trimmed of _."""
    return _INVALID.sub("_", name.lower()).strip("_")


def split_sensor_file(filename: str) -> tuple[str, str, str] | None:
    """``temp1_input`` -> ("temp", "temp1", "input"); None for files that are not sensors."""
    m = _FILENAME.match(filename)
    if m is None or m.group("type") not in SENSOR_TYPES:
        return None
    return m.group("type"), m.group("type") + str(int(m.group("id") or 0)), m.group("property") or ""


def metric_for(sensor_type: str, element: str, has_plain: bool) -> tuple[str, float] | None:
    """(metric name, scale) for one sensor element, node_exporter's rules; None to skip.
    A negative scale divides (-1000: mV -> V), which keeps 1234 mV at exactly 1.234."""
    if sensor_type in ("beep_enable", "vrm", "update_interval"):
        return None  # handled separately, they have no elements
    prefix = "node_hwmon_" + sensor_type
    if element == "label":
        return None
    if element == "input":
        name = prefix + "_input" if has_plain else prefix
    elif element:
        name = prefix + "_" + clean_name(element)
    else:
        name = prefix
    if element in ("fault", "alarm"):
        return name, 1.0
    if element == "beep":
        return name + "_enabled", 1.0
    if sensor_type in ("in", "cpu"):
        return name + "_volts", -1000.0
    if sensor_type == "temp" and element != "type":
        return name + "_celsius", -1000.0
    if sensor_type == "curr":
        return name + "_amps", -1000.0
    if sensor_type == "energy":
        return name + "_joule_total", -1e6
    if sensor_type == "power" and element == "accuracy":
        return name, -1e6
    if sensor_type == "power" and element in ("average_interval", "average_interval_min",
                                               "average_interval_max"):
        return name + "_seconds", -1000.0
    if sensor_type == "power":
        return name + "_watt", -1e6
    if sensor_type == "humidity":
        return name, -1e6
    if sensor_type == "fan" and element in ("input", "min", "max", "target"):
        return name + "_rpm", 1.0
    return name, 1.0


def chip_name(hwmon_dir: str) -> str:
    """node_exporter's chip label: <parent dir>_<device> of the ``device`` link, else the
    ``name`` file, else hwmonN, each cleaned."""
    device = os.path.join(hwmon_dir, "device")
    if os.path.exists(device):
        real = os.path.realpath(device)
        dev_name = clean_name(os.path.basename(real))
        dev_type = clean_name(os.path.basename(os.path.dirname(real)))
        if dev_type and dev_name:
            return f"{dev_type}_{dev_name}"
        if dev_name:
            return dev_name
    name = clean_name(read_optional(os.path.join(hwmon_dir, "name")) or "")
    return name or clean_name(os.path.basename(os.path.realpath(hwmon_dir)))


class _Chip:
    """What one hwmon directory holds, worked out once: sensor files do not come and go
    while the device exists."""

    __slots__ = ("dir", "chip", "chip_type", "reads", "labels", "rails")

    def __init__(self, hwmon_dir: str):
        self.dir = hwmon_dir
        self.chip = chip_name(hwmon_dir)
        self.chip_type = clean_name(read_optional(os.path.join(hwmon_dir, "name")) or "")
        files: dict[str, dict[str, str]] = {}  # sensor -> element -> path
        types: dict[str, str] = {}
        subdirs = [""]  # file names are kept relative to the hwmon directory
        if os.path.exists(os.path.join(hwmon_dir, "device")):
            subdirs.append("device")
        for sub in subdirs:
            for fname in list_dir(os.path.join(hwmon_dir, sub)):
                parts = split_sensor_file(fname)
                if parts is None:
                    continue
                rel = os.path.join(sub, fname) if sub else fname
                if os.path.isdir(os.path.join(hwmon_dir, rel)):
                    continue
                stype, sensor, element = parts
                types[sensor] = stype
                files.setdefault(sensor, {})[element] = rel
        self.reads: list[tuple[str, tuple, str, float]] = []  # (metric, labels, file, scale)
        self.labels: dict[str, str] = {}  # sensor -> label file
        for sensor in sorted(files):
            stype, elements = types[sensor], files[sensor]
            lab = (("chip", self.chip), ("sensor", sensor))
            if "label" in elements:
                self.labels[sensor] = elements["label"]
            if stype in ("beep_enable", "vrm", "update_interval"):
                if "" in elements:
                    self.reads.append(_special(stype, lab, elements[""]))
                continue
            for element in sorted(elements):
                m = metric_for(stype, element, "" in elements)
                if m is not None:
                    self.reads.append((m[0], lab, elements[element], m[1]))
        # INA3221 (JetPack >= 5): bus voltage inN, current currN, labelled by rail.
        self.rails: list[tuple[str, str, str]] = []  # (label file, voltage file, current file)
        if self.chip_type == "ina3221":
            for n in (1, 2, 3):
                v, c = files.get(f"in{n}", {}).get("input"), files.get(f"curr{n}", {}).get("input")
                if v and c and f"in{n}" in self.labels:
                    self.rails.append((self.labels[f"in{n}"], v, c))


def _special(stype: str, labels: tuple, path: str) -> tuple[str, tuple, str, float]:
    if stype == "beep_enable":
        return "node_hwmon_beep_enabled", labels, path, 1.0
    if stype == "vrm":
        return "node_hwmon_voltage_regulator_version", labels, path, 1.0
    return "node_hwmon_update_interval_seconds", labels, path, -1000.0


def parse_number(raw: bytes) -> float:
    return float(raw)


class HwmonCollector(Collector):
    name = "hwmon"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._class = os.path.join(ctx.sysfs, "class", "hwmon")
        self._iio = os.path.join(ctx.sysfs, "bus", "iio", "devices")
        self._chips: dict[str, _Chip] = {}
        self._files = OpenAttributes(MAX_OPEN_FILES)
        self._iio_seen: set[str] = set()
        self.problems: list[str] = []

    def collect(self) -> list[Sample]:
        self.problems = []
        out: list[Sample] = []
        entries = list_dir(self._class)
        if set(entries) != set(self._chips):
            self._chips = {e: self._chips.get(e) or _Chip(os.path.join(self._class, e)) for e in entries}
        for entry in entries:
            out.extend(self._chip(entry))
        out.extend(self._iio_rails())
        self._files.retain({c.dir for c in self._chips.values()} | self._iio_seen)
        return out

    def close(self) -> None:
        self._files.close()

    def _chip(self, entry: str) -> list[Sample]:
        chip = self._chips[entry]
        files = self._files
        if not files.check(chip.dir):
            self._chips.pop(entry, None)  # unplugged; rebuilt if it returns
            return []
        out = [Sample("node_hwmon_chip_names", (("chip", chip.chip), ("chip_name", chip.chip_type)), 1.0)] \
            if chip.chip_type else []
        for sensor, rel in chip.labels.items():
            label = files.read_optional(chip.dir, rel)
            if label is not None:
                out.append(Sample("node_hwmon_sensor_label",
                                  (("chip", chip.chip), ("label", label), ("sensor", sensor)), 1.0))
        for metric, labels, rel, scale in chip.reads:
            try:
                raw = parse_number(files.read(chip.dir, rel))
            except (OSError, ValueError):
                continue  # e.g. a fan sensor answering EIO while its controller sleeps
            out.append(Sample(metric, labels, raw / -scale if scale < 0 else raw * scale))
        for label_rel, vrel, crel in chip.rails:
            rail = files.read_optional(chip.dir, label_rel)
            if rail:
                out.extend(_rail(files, chip.dir, rail, vrel, crel, None))
        return out

    def _iio_rails(self) -> list[Sample]:
        out = []
        self._iio_seen: set[str] = set()
        for dev in list_dir(self._iio):
            base = os.path.join(self._iio, dev)
            self._iio_seen.add(base)
            if not self._files.check(base):
                continue
            for fname in list_dir(base):
                m = _IIO_RAIL.match(fname)
                if m is None:
                    continue
                n = m.group(1)
                rail = self._files.read_optional(base, fname)
                if rail is None:
                    # L4T ships these root-only; a udev/tmpfiles rule must open them up.
                    self.problems.append(f"{dev}/{fname} is not readable (root-only on L4T)")
                    continue
                out.extend(_rail(self._files, base, rail, f"in_voltage{n}_input", f"in_current{n}_input",
                                 f"in_power{n}_input"))
        return out


def _rail(files: OpenAttributes, base: str, rail: str, vfile: str, cfile: str, pfile: str | None) -> list[Sample]:
    """Rail samples in volts/amps/watts from mV/mA/mW files; power is V*I when there is no file."""
    labels = (("rail", rail),)
    values = {}
    for key, name in (("v", vfile), ("i", cfile), ("p", pfile)):
        if name is None:
            continue
        try:
            values[key] = float(files.read(base, name)) / 1000.0
        except (OSError, ValueError):
            pass
    out = []
    if "v" in values:
        out.append(Sample("belabox_power_rail_voltage_volts", labels, values["v"]))
    if "i" in values:
        out.append(Sample("belabox_power_rail_current_amps", labels, values["i"]))
    if "p" not in values and "v" in values and "i" in values:
        values["p"] = round(values["v"] * values["i"], 6)
    if "p" in values:
        out.append(Sample("belabox_power_rail_power_watts", labels, values["p"]))
    return out
