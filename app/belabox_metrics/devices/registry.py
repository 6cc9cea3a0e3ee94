"""The device registry: what discovery found, classified, for collectors and the CLI to ask."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from belabox_metrics.devices.classify import base_identity
from belabox_metrics.devices.classify import classify as classify_fn
from belabox_metrics.devices.model import DeviceChange, DeviceInfo, Disk, Excluded, Inventory, Modem, NetIf

log = logging.getLogger(__name__)


class DeviceRegistry:
    """The current devices and their classification; safe to use from any thread."""

    def __init__(self, classify: Callable[..., Inventory] | None = None):
        self._classify = classify or classify_fn
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceInfo] = {}
        self._equipment: dict[str, str] = {}  # modem base identity -> equipment id (IMEI)
        self._inventory = Inventory()
        self._subscribers: list[Callable[[DeviceChange], None]] = []
        self.mode = "none"  # set by Discovery: udev | sysfs

    # --- writers (discovery) ----------------------------------------------------------

    def replace_all(self, devices: Iterable[DeviceInfo]) -> list[DeviceChange]:
        """A full enumeration or rescan: the new set replaces the old one."""
        with self._lock:
            self._devices = {d.devpath: d for d in devices}
            changes = self._reclassify()
        self._notify(changes)
        return changes

    def update(self, device: DeviceInfo) -> list[DeviceChange]:
        with self._lock:
            self._devices[device.devpath] = device
            changes = self._reclassify()
        self._notify(changes)
        return changes

    def update_many(self, devices: Iterable[DeviceInfo]) -> list[DeviceChange]:
        with self._lock:
            for d in devices:
                self._devices[d.devpath] = d
            changes = self._reclassify()
        self._notify(changes)
        return changes

    def devpaths_below(self, devpath: str) -> list[str]:
        prefix = devpath.rstrip("/") + "/"
        with self._lock:
            return [p for p in self._devices if p.startswith(prefix)]

    def remove(self, devpath: str) -> list[DeviceChange]:
        """Drop a device and everything below it (children go with their USB parent)."""
        prefix = devpath.rstrip("/") + "/"
        with self._lock:
            gone = [p for p in self._devices if p == devpath or p.startswith(prefix)]
            if not gone:
                return []
            for p in gone:
                del self._devices[p]
            changes = self._reclassify()
        self._notify(changes)
        return changes

    def learn_equipment_id(self, usb_path: str, equipment_id: str) -> None:
        """ModemManager told us the modem's IMEI: from now on its key derives from it."""
        with self._lock:
            modem = next((m for m in self._inventory.modems if m.usb_path == usb_path), None)
            if modem is None:
                return
            base = base_identity(self._devices.values(), usb_path)
            if base is None or self._equipment.get(base) == equipment_id:
                return
            self._equipment[base] = equipment_id
            changes = self._reclassify()
        self._notify(changes)

    # --- readers (collectors, CLI) ----------------------------------------------------

    def disks(self) -> list[Disk]:
        with self._lock:
            return list(self._inventory.disks)

    def interfaces(self) -> list[NetIf]:
        with self._lock:
            return list(self._inventory.interfaces)

    def modems(self) -> list[Modem]:
        with self._lock:
            return list(self._inventory.modems)

    def excluded(self) -> list[Excluded]:
        with self._lock:
            return list(self._inventory.excluded)

    def inventory(self) -> Inventory:
        with self._lock:
            return self._inventory

    def snapshot(self) -> dict[str, Any]:
        """Plain data for `devices --json` and diagnostics (no raw hardware identifiers)."""
        inv = self.inventory()
        return {
            "mode": self.mode,
            "disks": [asdict(d) for d in inv.disks],
            "interfaces": [asdict(n) for n in inv.interfaces],
            "modems": [asdict(m) for m in inv.modems],
            "excluded": [e._asdict() for e in inv.excluded],
        }

    def subscribe(self, callback: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` for every later change; returns the unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    # --- internals ----------------------------------------------------------------------

    def _reclassify(self) -> list[DeviceChange]:
        # A full re-classification per event is cheap (tens of devices) and keeps grouping
        # right: a modem's netdev and its tty ports arrive as separate events.
        new = self._classify(self._devices.values(), self._equipment)
        changes = diff(self._inventory, new)
        self._inventory = new
        return changes

    def _notify(self, changes: list[DeviceChange]) -> None:
        if not changes:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            for change in changes:
                try:
                    cb(change)
                except Exception:  # a broken subscriber must not stop discovery
                    log.exception("device subscriber failed on %s %s", change.action, change.name)


def diff(old: Inventory, new: Inventory) -> list[DeviceChange]:
    before, after = old.items(), new.items()
    out = [DeviceChange("remove", k[0], name, item) for k, (name, item) in before.items() if k not in after]
    for k, (name, item) in after.items():
        if k not in before:
            out.append(DeviceChange("add", k[0], name, item))
        elif before[k][1] != item:
            out.append(DeviceChange("change", k[0], name, item))
    return out


class ScannedRegistry(DeviceRegistry):
    """The registry without udev's events: a sysfs scan, redone when the lists of network
    interfaces or block devices change. `collect --once`, `diagnose` and any collector built
    without discovery use it, so every path classifies devices with the same rules as `run`."""

    def __init__(self, sysfs: str):
        from belabox_metrics.devices.sysfsscan import SysfsScanner
        super().__init__()
        self._scanner = SysfsScanner(sysfs)
        self._listing: tuple | None = None
        self.mode = "sysfs"

    def _refresh(self) -> None:
        listing = self._scanner.listing()  # the same change check discovery's sysfs mode uses
        if listing != self._listing:
            self._listing = listing
            self.replace_all(self._scanner.scan())

    def disks(self) -> list[Disk]:
        self._refresh()
        return super().disks()

    def interfaces(self) -> list[NetIf]:
        self._refresh()
        return super().interfaces()

    def modems(self) -> list[Modem]:
        self._refresh()
        return super().modems()

    def inventory(self) -> Inventory:
        self._refresh()
        return super().inventory()
