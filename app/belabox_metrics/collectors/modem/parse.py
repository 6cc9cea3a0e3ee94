"""Pure parsers for ``mmcli -J`` output (ModemManager 1.20 JSON; no I/O here).

mmcli prints every value as a string and ``--`` for unknown (feasibility.md §4):
``"signal-quality": {"value": "67", "recent": "yes"}``, ``"rsrp": "-95.00"``. The 5G
signal section is named ``5g`` while the access technology is ``5gnr``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

# MMModemState (ModemManager-enums.h)
MODEM_STATES = {
    "failed": -1, "unknown": 0, "initializing": 1, "locked": 2, "disabled": 3, "disabling": 4,
    "enabling": 5, "enabled": 6, "searching": 7, "registered": 8, "disconnecting": 9,
    "connecting": 10, "connected": 11,
}
# MMModem3gppRegistrationState
REGISTRATION_STATES = {
    "idle": 0, "home": 1, "searching": 2, "denied": 3, "unknown": 4, "roaming": 5,
    "home-sms-only": 6, "roaming-sms-only": 7, "emergency-only": 8,
    "home-csfb-not-preferred": 9, "roaming-csfb-not-preferred": 10, "attached-rlos": 11,
}
# `--signal-get` section -> access technology label, as `generic.access-technologies` names it.
SIGNAL_SECTIONS = {"gsm": "gsm", "umts": "umts", "lte": "lte", "5g": "5gnr", "cdma1x": "cdma1x",
                   "evdo": "evdo"}
SIGNAL_KEYS = ("rssi", "rsrp", "rsrq", "snr")


class MmcliFormatError(ValueError):
    """mmcli printed something that is not the JSON we know."""


@dataclass(frozen=True)
class ModemStatus:
    path: str
    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
    equipment_id: str | None = None
    device: str | None = None  # sysfs path of the USB (or PCI) device
    drivers: tuple[str, ...] = ()
    ports: tuple[tuple[str, str], ...] = ()  # (name, type) e.g. ("wwan0", "net")
    state: str | None = None
    access_techs: tuple[str, ...] = ()
    signal_quality: float | None = None
    operator_name: str | None = None
    registration: str | None = None
    sim_path: str | None = None
    unlock_required: str | None = None

    @property
    def index(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def net_ports(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.ports if kind == "net")


@dataclass(frozen=True)
class SignalReport:
    rate: int | None = None  # seconds between ModemManager's polls; 0 = polling off
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # access tech -> key -> value


@dataclass(frozen=True)
class SimStatus:
    path: str | None = None
    active: bool | None = None
    iccid: str | None = None
    operator_name: str | None = None


def _load(text: str, top: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MmcliFormatError(f"not JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(data, dict) or not isinstance(data.get(top), (dict, list)):
        raise MmcliFormatError(f"JSON without a {top!r} object")
    return data


def _str(value: Any) -> str | None:
    """A present mmcli value, or None for ``--``, empty and non-strings."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return None if value in ("", "--") else value


def _num(value: Any) -> float | None:
    text = _str(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _dict(parent: Any, key: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(s for s in (_str(v) for v in value) if s)


def parse_modem_list(text: str) -> list[str]:
    """``mmcli -L -J`` -> modem object paths (mmcli may list Modem/1 before Modem/0)."""
    data = _load(text, "modem-list")
    paths = data["modem-list"]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise MmcliFormatError("'modem-list' is not a list of object paths")
    return sorted(paths, key=lambda p: (len(p), p))


def _parse_ports(values: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for entry in _strings(values):
        name, _, rest = entry.partition(" (")
        out.append((name.strip(), rest.rstrip(")").strip() or "unknown"))
    return tuple(out)


def parse_modem(text: str) -> ModemStatus:
    """``mmcli -m N -J``."""
    modem = _load(text, "modem")["modem"]
    if not isinstance(modem, dict):
        raise MmcliFormatError("'modem' is not an object")
    path = _str(modem.get("dbus-path"))
    if path is None:
        raise MmcliFormatError("modem without a dbus-path")
    gen, gpp = _dict(modem, "generic"), _dict(modem, "3gpp")
    quality = _dict(gen, "signal-quality")
    sim = _str(gen.get("sim"))
    return ModemStatus(
        path=path,
        manufacturer=_str(gen.get("manufacturer")),
        model=_str(gen.get("model")),
        revision=_str(gen.get("revision")),
        equipment_id=_str(gen.get("equipment-identifier")) or _str(gpp.get("imei")),
        device=_str(gen.get("device")),
        drivers=_strings(gen.get("drivers")),
        ports=_parse_ports(gen.get("ports")),
        state=_str(gen.get("state")),
        access_techs=_strings(gen.get("access-technologies")),
        signal_quality=_num(quality.get("value")),
        operator_name=_str(gpp.get("operator-name")),
        registration=_str(gpp.get("registration-state")),
        sim_path=sim if sim and sim != "/" else None,
        unlock_required=_str(gen.get("unlock-required")),
    )


def parse_signal(text: str) -> SignalReport:
    """``mmcli -m N --signal-get -J``: only the values the modem reports."""
    signal = _dict(_load(text, "modem")["modem"], "signal")
    if not signal:
        raise MmcliFormatError("no 'signal' object")
    rate = _num(_dict(signal, "refresh").get("rate"))
    values: dict[str, dict[str, float]] = {}
    for section, tech in SIGNAL_SECTIONS.items():
        got = {}
        for key in SIGNAL_KEYS:
            number = _num(_dict(signal, section).get(key))
            if number is not None:
                got[key] = number
        if got:
            values[tech] = got
    return SignalReport(rate=int(rate) if rate is not None else None, values=values)


def parse_sim(text: str) -> SimStatus:
    """``mmcli -i N -J``."""
    sim = _load(text, "sim")["sim"]
    props = _dict(sim, "properties")
    active = _str(props.get("active"))
    return SimStatus(
        path=_str(sim.get("dbus-path")) if isinstance(sim, dict) else None,
        active=None if active is None else active == "yes",
        iccid=_str(props.get("iccid")),
        operator_name=_str(props.get("operator-name")),
    )


def sim_locked(status: ModemStatus) -> bool | None:
    """True when a PIN/PUK is needed; None when mmcli cannot tell.

    mmcli prints ``--`` both for "no lock" and "unknown", so an unknown lock with a known,
    non-locked modem state counts as unlocked.
    """
    if status.state == "locked" or (status.unlock_required not in (None, "none")):
        return True
    if status.state in (None, "unknown"):
        return None
    return False
