"""The series of one modem, from what discovery and ModemManager each know (no I/O but
the interface byte counters)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from belabox_metrics.collectors.modem.parse import (
    MODEM_STATES,
    REGISTRATION_STATES,
    ModemStatus,
    SignalReport,
    SimStatus,
    sim_locked,
)
from belabox_metrics.devices.model import Modem
from belabox_metrics.samples import Sample, sample

SIGNAL_METRICS = {"rssi": "belabox_modem_rssi_dbm", "rsrp": "belabox_modem_rsrp_dbm",
                  "rsrq": "belabox_modem_rsrq_db", "snr": "belabox_modem_snr_db"}
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


@dataclass
class Entry:
    """One modem of this cycle: what discovery and ModemManager each know about it."""

    key: str
    udev: Modem | None = None
    mm: ModemStatus | None = None
    signal: SignalReport | None = None
    sim: SimStatus | None = None
    interfaces: list[str] = field(default_factory=list)


def devpath(sysfs_path: str | None) -> str | None:
    if not sysfs_path:
        return None
    i = sysfs_path.find("/devices/")
    return sysfs_path[i:] if i >= 0 else None


def _bus(u: Modem | None, m: ModemStatus | None) -> tuple[str | None, str | None]:
    """("usb", "1-1.2") or ("pci", "0000:01:00.0"): the port the modem sits in, as the kernel
    log and lsusb/lspci name it (stable while it stays in that socket)."""
    path = u.usb_path if u else devpath(m.device if m else None)
    if not path:
        return None, None
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if u is not None:
        return u.bus, name
    return ("pci" if _PCI_ADDRESS.match(name) else "usb"), name


def _safe_ifname(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".")


def entry_samples(e: Entry, cfg: Any, sysfs: str) -> list[Sample]:
    """The series of one modem: identity and presence always, radio when ModemManager knows it."""
    m, u = e.mm, e.udev
    base = {"modem": e.key}
    info = dict(base)
    bus, bus_path = _bus(u, m)
    info.update({
        "manufacturer": (m.manufacturer if m else None) or (u.manufacturer if u else None),
        "model": (m.model if m else None) or (u.model if u else None),
        "firmware": m.revision if m else None,
        "interface": e.interfaces[0] if e.interfaces else None,
        "operator": m.operator_name if m else None,
        "access_tech": ",".join(m.access_techs) if m and m.access_techs else None,
        "driver": (u.driver if u else None) or (m.drivers[0] if m and m.drivers else None),
        "bus": bus, "bus_path": bus_path,
    })
    if cfg.expose_identifiers and m and m.equipment_id:
        info["imei"] = m.equipment_id
    # present: discovery or ModemManager sees it now; a modem gone has no series at all.
    out = [sample("belabox_modem_info", 1, info), sample("belabox_modem_present", 1, base)]
    if m is not None:
        if m.state in MODEM_STATES:
            out.append(sample("belabox_modem_state", MODEM_STATES[m.state], base))
        if m.signal_quality is not None:
            out.append(sample("belabox_modem_signal_quality_percent", m.signal_quality, base))
        if m.registration in REGISTRATION_STATES:
            out.append(sample("belabox_modem_registration_state", REGISTRATION_STATES[m.registration],
                              {**base, "state": m.registration}))
        out.extend(_sim_samples(e, cfg, base))
    if e.signal is not None:
        for tech, values in sorted(e.signal.values.items()):
            for key, value in sorted(values.items()):
                out.append(sample(SIGNAL_METRICS[key], value, {**base, "access_tech": tech}))
    for ifname in e.interfaces:
        out.extend(_bytes(sysfs, ifname, base))
    return out

def _sim_samples(e: Entry, cfg: Any, base: dict[str, str]) -> list[Sample]:
    m = e.mm
    assert m is not None
    out = []
    present: float | None = None
    if m.sim_path is None and m.state not in (None, "unknown", "initializing"):
        present = 0
    elif e.sim is not None:
        present = 1
    if present is not None:
        labels = dict(base)
        if present and cfg.expose_identifiers and e.sim and e.sim.iccid:
            labels["iccid"] = e.sim.iccid
        out.append(sample("belabox_modem_sim_present", present, labels))
    locked = sim_locked(m)
    if locked is not None and present != 0:
        out.append(sample("belabox_modem_sim_locked", 1 if locked else 0, base))
    return out

def _bytes(sysfs: str, ifname: str, base: dict[str, str]) -> list[Sample]:
    if not _safe_ifname(ifname):
        return []
    out = []
    stats = os.path.join(sysfs, "class", "net", ifname, "statistics")
    for direction, metric in (("rx", "belabox_modem_receive_bytes_total"),
                              ("tx", "belabox_modem_transmit_bytes_total")):
        try:
            with open(os.path.join(stats, f"{direction}_bytes"), encoding="ascii") as fh:
                value = int(fh.read().strip())
        except (OSError, ValueError):
            continue  # interface gone or counter unreadable: omitted, never 0
        out.append(sample(metric, value, {**base, "interface": ifname}))
    return out
