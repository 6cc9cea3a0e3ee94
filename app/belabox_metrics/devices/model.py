"""What discovery knows about devices: raw device records in, disks/interfaces/modems out.

``DeviceInfo`` is one kernel device as read from udev or sysfs (both readers fill the same
fields, so classification is one pure function, see classify.py). ``DeviceRegistry`` keeps
the current set, thread-safe: the udev monitor thread writes, collectors and the CLI read,
and subscribers hear about every classified change.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# Subsystems discovery watches. usbmisc holds the cdc-wdm control ports of QMI/MBIM modems;
# wwan the kernel's WWAN framework devices (PCIe/MHI modems' wwan0mbim0, wwan0at0... ports).
SUBSYSTEMS = ("block", "net", "tty", "usb", "usbmisc", "wwan")

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
# PCI functions (PCIe modems) name themselves by vendor/device and subsystem ids.
PARENT_ATTRS = ("idVendor", "idProduct", "serial", "manufacturer", "product", "type", "name",
                "model", "vendor", "device", "subsystem_vendor", "subsystem_device")

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
    """One modem as udev/sysfs show it. ``usb_path`` is the sysfs path of the device that
    groups its interfaces and ports: the USB device, or the PCI function (``bus`` "pci")
    of an M.2/PCIe modem (kept under its old name: collectors and JSON already use it)."""

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
    bus: str = "usb"  # usb | pci


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
