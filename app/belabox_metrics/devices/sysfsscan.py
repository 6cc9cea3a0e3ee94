"""Device records read straight from a sysfs tree, for when udev is not running.

Without udevd there is no udev database, so the only properties are the kernel's own
``uevent`` keys (feasibility.md §2); classification then relies on topology and
attributes. The same reader lets `devices --sysfs DIR` run against a recorded tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from belabox_metrics.devices.model import OWN_ATTRS, OWN_FLAGS, PARENT_ATTRS, SUBSYSTEMS, DeviceInfo, Node


def parse_uevent(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a sysfs ``uevent`` file (Documentation/ABI/testing/sysfs-uevent)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            out[key.strip()] = value.strip()
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:  # absent, unreadable or an attribute the driver refuses to read
        return None


def _link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


class SysfsScanner:
    """Reads device records below ``sysfs`` (the live ``/sys`` or any copy of it)."""

    def __init__(self, sysfs: str):
        self.root = os.path.abspath(sysfs)
        self._devices_dir = os.path.join(self.root, "devices")

    def scan(self) -> list[DeviceInfo]:
        seen: dict[str, DeviceInfo] = {}
        for subsystem, path in self._candidates():
            info = self.describe(path, subsystem)
            if info is not None:
                seen.setdefault(info.devpath, info)
        return list(seen.values())

    def listing(self, follow: bool = True) -> tuple:
        """The names under each subsystem's folder: a few listdirs, so a periodic check costs
        almost nothing when nothing was plugged or unplugged (a full scan reads hundreds of files).
        ``follow`` also follows each class link, so that a device gone below a link left behind
        counts as gone; that costs ten times the listdirs (1 ms on a machine with 100 ttys and
        loops), so the discovery thread follows the links only every few checks."""
        out = []
        for subsystem in SUBSYSTEMS:
            base = os.path.join(self.root, "bus", "usb", "devices") if subsystem == "usb" else \
                os.path.join(self.root, "class", subsystem)
            try:
                names = os.listdir(base)
                if follow:
                    names = [n for n in names if os.path.exists(os.path.join(base, n))]
                out.append((subsystem, tuple(sorted(names))))
            except OSError:
                out.append((subsystem, None))
        return tuple(out)

    def _candidates(self) -> Iterator[tuple[str, str]]:
        for subsystem in SUBSYSTEMS:
            if subsystem == "usb":
                base = os.path.join(self.root, "bus", "usb", "devices")
            elif subsystem == "block" and not os.path.isdir(os.path.join(self.root, "class", "block")):
                base = os.path.join(self.root, "block")  # older layout: disks only, partitions inside
            else:
                base = os.path.join(self.root, "class", subsystem)
            try:
                names = sorted(os.listdir(base))
            except OSError:
                continue
            for name in names:
                path = os.path.join(base, name)
                # Virtual consoles and ptys have no device behind them: not ours, and 60+ of them.
                if subsystem == "tty" and not os.path.exists(os.path.join(path, "device")):
                    continue
                yield subsystem, path
                if base.endswith(os.sep + "block") and subsystem == "block":
                    for child in sorted(os.listdir(path)) if os.path.isdir(path) else ():
                        if os.path.isfile(os.path.join(path, child, "partition")):
                            yield subsystem, os.path.join(path, child)

    def devpath(self, real: str) -> str:
        return "/" + os.path.relpath(real, self.root).replace(os.sep, "/")

    def describe(self, path: str, subsystem: str | None = None) -> DeviceInfo | None:
        """One record for the device at ``path`` (a class link or a devices/ directory)."""
        real = os.path.realpath(path)
        text = _read(os.path.join(real, "uevent"))
        if text is None:
            return None
        props = parse_uevent(text)
        subsystem = _link_name(os.path.join(real, "subsystem")) or props.get("SUBSYSTEM") or subsystem
        if subsystem not in SUBSYSTEMS:
            return None
        devtype = props.get("DEVTYPE")
        if subsystem == "usb" and devtype != "usb_device":
            return None  # interfaces matter only as parents of netdevs and ports
        attrs = self._attrs(real, OWN_ATTRS.get(subsystem, ()))
        flags = frozenset(f for f in OWN_FLAGS.get(subsystem, ()) if os.path.exists(os.path.join(real, f)))
        props.setdefault("SUBSYSTEM", subsystem)
        return DeviceInfo(
            subsystem=subsystem, devpath=self.devpath(real), name=os.path.basename(real),
            devtype=devtype, driver=_link_name(os.path.join(real, "driver")) or props.get("DRIVER"),
            properties=props, attrs=attrs, flags=flags, parents=self._parents(real, path),
        )

    def _attrs(self, real: str, names: tuple[str, ...]) -> dict[str, str]:
        out = {}
        for name in names:
            value = _read(os.path.join(real, name))
            if value is not None:
                out[name] = value.strip()
        return out

    def _parents(self, real: str, path: str) -> tuple[Node, ...]:
        if real.startswith(self._devices_dir + os.sep):
            chain = []
            current = os.path.dirname(real)
            while current.startswith(self._devices_dir + os.sep):
                chain.append(current)
                current = os.path.dirname(current)
        else:
            # A tree copied without symlinks: only the `device` directory says what is behind it.
            device = os.path.join(path, "device")
            chain = [os.path.realpath(device)] if os.path.isdir(device) else []
        return tuple(node for node in map(self._node, chain) if node is not None)

    def _node(self, real: str) -> Node | None:
        text = _read(os.path.join(real, "uevent"))
        if text is None:
            return None  # a grouping directory such as net/ or block/, not a device
        props = parse_uevent(text)
        return Node(
            devpath=self.devpath(real),
            subsystem=_link_name(os.path.join(real, "subsystem")) or props.get("SUBSYSTEM"),
            devtype=props.get("DEVTYPE"),
            driver=_link_name(os.path.join(real, "driver")) or props.get("DRIVER"),
            attrs=self._attrs(real, PARENT_ATTRS),
        )
