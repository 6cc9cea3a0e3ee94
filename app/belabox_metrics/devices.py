"""What discovery knows about devices: raw device records in, disks/interfaces/modems out.

``DeviceInfo`` is one kernel device as read from udev or sysfs (both readers fill the same
fields, so classification is one pure function, see classify.py). ``DeviceRegistry`` keeps
the current set, thread-safe: the udev monitor thread writes, collectors and the CLI read,
and subscribers hear about every classified change.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# Subsystems discovery watches. usbmisc holds the cdc-wdm control ports of QMI/MBIM modems.
SUBSYSTEMS = ("block", "net", "tty", "usb", "usbmisc")

# sysfs attributes read for a device of each subsystem (missing ones are simply absent).
OWN_ATTRS = {
    "net": ("type", "ifindex", "iflink"),
    "block": ("removable", "size"),
    "usb": ("idVendor", "idProduct", "serial", "manufacturer", "product", "bInterfaceNumber"),
}
# Files whose mere existence tells what a device is (wireless/ for WiFi, loop/ for loop...).
OWN_FLAGS = {
    "net": ("device", "wireless", "phy80211", "bridge", "tun_flags", "bonding"),
    "block": ("device", "partition", "loop", "comp_algorithm", "dm", "md"),
    "tty": ("device",),
    "usbmisc": ("device",),
}
# Attributes read on ancestors: USB identity, MMC card type/name, SCSI/NVMe model.
PARENT_ATTRS = ("idVendor", "idProduct", "serial", "manufacturer", "product", "type", "name",
                "model", "vendor")

@dataclass(frozen=True)
class Node:
    """An ancestor of a device (nearest first in ``DeviceInfo.parents``)."""

    devpath: str
    subsystem: str | None
    devtype: str | None = None
    driver: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceInfo:
    """One kernel device. ``devpath`` is below the sysfs root (``/devices/...``)."""

    subsystem: str
    devpath: str
    name: str
    devtype: str | None = None
    driver: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    attrs: Mapping[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    parents: tuple[Node, ...] = ()

    def prop(self, key: str) -> str | None:
        value = self.properties.get(key)
        return value if value else None

    def parent(self, subsystem: str, devtype: str | None = None) -> Node | None:
        for p in self.parents:
            if p.subsystem == subsystem and (devtype is None or p.devtype == devtype):
                return p
        return None


@dataclass(frozen=True)
class DeviceEvent:
    """A udev (or kernel) event turned into our own value; pyudev types stay in discovery.py."""

    action: str
    subsystem: str
    sys_path: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Disk:
    name: str
    devpath: str
    bus: str
    model: str | None
    removable: bool
    reason: str


@dataclass(frozen=True)
class NetIf:
    name: str
    devpath: str
    kind: str  # ethernet | wifi | modem | tether | other
    usb_path: str | None
    modem_key: str | None
    reason: str


@dataclass(frozen=True)
class Modem:
    key: str
    usb_path: str
    vendor_id: str | None
    product_id: str | None
    manufacturer: str | None
    model: str | None
    driver: str | None
    interfaces: tuple[str, ...]
    ports: tuple[str, ...]
    reason: str


class Excluded(NamedTuple):
    name: str
    kind: str  # disk | interface | port
    reason: str


@dataclass(frozen=True)
class Inventory:
    disks: tuple[Disk, ...] = ()
    interfaces: tuple[NetIf, ...] = ()
    modems: tuple[Modem, ...] = ()
    excluded: tuple[Excluded, ...] = ()

    def items(self) -> dict[tuple[str, str], tuple[str, Any]]:
        """(kind, identity) -> (name, item): the units of change reported to subscribers."""
        out: dict[tuple[str, str], tuple[str, Any]] = {}
        out.update({("disk", d.name): (d.name, d) for d in self.disks})
        out.update({("interface", n.name): (n.name, n) for n in self.interfaces})
        out.update({("modem", m.key): (m.key, m) for m in self.modems})
        out.update({("excluded", f"{e.kind}:{e.name}"): (e.name, e) for e in self.excluded})
        return out


@dataclass(frozen=True)
class DeviceChange:
    """What subscribers get: one classified item added, removed or changed."""

    action: str  # add | remove | change
    kind: str  # disk | interface | modem | excluded
    name: str
    item: Any = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        item = self.item._asdict() if isinstance(self.item, Excluded) else asdict(self.item)
        return {"action": self.action, "kind": self.kind, "name": self.name, "item": item}


def modem_key(identity: str) -> str:
    """Stable short label for a modem: a hash, so the raw IMEI/serial never becomes a label.

    It is pseudonymous, not anonymous: an IMEI space can be enumerated. Raw identifiers
    appear only with ``modem.expose_identifiers: true``.
    """
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


class DeviceRegistry:
    """The current devices and their classification; safe to use from any thread."""

    def __init__(self, classify: Callable[..., Inventory] | None = None):
        if classify is None:
            from belabox_metrics.classify import classify as classify_fn
            classify = classify_fn
        self._classify = classify
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
            from belabox_metrics.classify import base_identity
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
