"""The ``device_id`` label: the configured value, or one derived from the board's identity.

``device_id: auto`` (the default, so one image fits every box) uses the device-tree serial
number (RK3588 boards and the Jetson Nano publish one) or else ``/etc/machine-id``, never
raw: it goes through HMAC-SHA256 with a fixed application key, as systemd's
``sd_id128_get_machine_app_specific()`` does for machine-ids, so the label is stable but
cannot be turned back into the serial or matched with other services' ids.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

APP_KEY = b"belabox-metrics device id v1"
PREFIX = "bb-"
# Values firmware puts where it has no real serial.
_PLACEHOLDERS = frozenset({"", "0", "unknown", "none", "default string", "to be filled by o.e.m."})


class DeviceIdError(ValueError):
    """``device_id: auto`` found nothing to derive from: a configuration problem (exit 78),
    since only setting ``device_id`` fixes it. ``problems`` has the shape of ConfigError's,
    so the command line reports both alike."""

    def __init__(self, line: str):
        super().__init__(line)
        self.problems = [line]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4096)
    except OSError:
        return ""
    # Device-tree strings end in NUL.
    return raw.replace(b"\0", b"").decode("ascii", "replace").strip()


def _usable_serial(value: str) -> bool:
    v = value.lower()
    return v not in _PLACEHOLDERS and set(v) != {"0"}


def board_serial(procfs: str, sysfs: str) -> str:
    """The device-tree serial number, or "" when the board has none."""
    for path in (os.path.join(procfs, "device-tree/serial-number"),
                 os.path.join(sysfs, "firmware/devicetree/base/serial-number")):
        value = _read(path)
        if _usable_serial(value):
            return value
    return ""


def machine_id(rootfs: str) -> str:
    value = _read(os.path.join(rootfs, "etc/machine-id")).lower()
    # "uninitialized" is what systemd writes before first boot completes (machine-id(5)).
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value) and set(value) != {"0"}:
        return value
    return ""


def hashed_id(kind: str, value: str) -> str:
    digest = hmac.new(APP_KEY, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:12]


def derive_device_id(cfg: Any, procfs: str, sysfs: str, rootfs: str) -> str:
    """The configured ``device_id``, or for ``auto`` ``bb-<12 hex>`` from the board serial,
    else the machine-id. Raises DeviceIdError when ``auto`` finds neither."""
    configured = (cfg.device_id or "").strip()
    if configured and configured != "auto":
        return configured
    serial = board_serial(procfs, sysfs)
    if serial:
        return hashed_id("serial", serial)
    mid = machine_id(rootfs)
    if mid:
        return hashed_id("machine-id", mid)
    raise DeviceIdError("device_id: auto found no device-tree serial number and no usable "
                        f"{os.path.join(rootfs, 'etc/machine-id')}; set device_id in the config")
