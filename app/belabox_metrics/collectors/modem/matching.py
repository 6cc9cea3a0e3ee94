"""Joining ModemManager's modems to the modems udev discovery found: one Entry per modem.

A modem is matched by its USB device path, else by one of its network interfaces. Its key
is the one discovery derives from the IMEI when ModemManager knows it, so a modem keeps one
``modem`` label whichever source saw it first; a udev modem ModemManager does not know (a
HiLink stick) still gets an entry of its own. Pure apart from teaching the registry an IMEI.
"""

from __future__ import annotations

from typing import Any

from belabox_metrics.collectors.modem.parse import ModemStatus, SignalReport, SimStatus
from belabox_metrics.collectors.modem.series import Entry, devpath
from belabox_metrics.devices.model import Modem, modem_key

Reported = tuple[ModemStatus, "SignalReport | None", "SimStatus | None"]


def match_entries(mm: list[Reported], udev: list[Modem], registry: Any = None) -> list[Entry]:
    """Entries sorted by key; ``registry`` (if any) learns each matched modem's IMEI."""
    by_path = {m.usb_path: m for m in udev}
    by_if = {i: m for m in udev for i in m.interfaces}
    entries: dict[str, Entry] = {}
    matched: set[str] = set()
    for status, sig, sim in mm:
        reg = by_path.get(devpath(status.device) or "") or next(
            (by_if[n] for n in status.net_ports if n in by_if), None)
        if status.equipment_id:
            key = modem_key(f"imei:{status.equipment_id}")  # the key discovery derives too
            if reg is not None and registry is not None:
                registry.learn_equipment_id(reg.usb_path, status.equipment_id)
        elif reg is not None:
            key = reg.key
        else:
            key = modem_key(f"device:{status.device or status.path}")
        if reg is not None:
            matched.add(reg.usb_path)
        ifaces = list(dict.fromkeys([*status.net_ports, *(reg.interfaces if reg else ())]))
        entries[key] = Entry(key, reg, status, sig, sim, ifaces)
    for reg in udev:
        if reg.usb_path not in matched and reg.key not in entries:
            entries[reg.key] = Entry(reg.key, reg, interfaces=list(reg.interfaces))
    return [entries[k] for k in sorted(entries)]
