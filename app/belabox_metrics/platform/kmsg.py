"""Kernel log lines that matter on a streaming encoder, classified into (kind, device).

Pure functions over the text of one kernel message (the journal's MESSAGE, without dmesg's
timestamp). The messages are the kernel's own printk formats:
- USB core (drivers/usb/core/hub.c): ``usb 1-1: USB disconnect, device number 5``,
  ``usb 1-1.2: reset high-speed USB device number 3 using xhci-hcd``, enumeration errors
  (``device descriptor read/64, error -71``, ``device not accepting address``), and
  ``usb usb1-port1: over-current condition``. A modem that browns out or a bad cable
  shows here first.
- RK3588 HDMI input (vendor rk_hdmirx driver), as belaUI watches them (belabox-image.md
  §1.6): ``hdmirx_wait_lock_and_get_timing signal not lock``, ``hdmirx_delayed_work_audio:
  audio underflow``, ``hdmirx-controller: Err, timing is invalid``.
- Jetson ``soctherm: OC ALARM 0x00000001``: belaUI's under-voltage signal; other bits are
  over-current alarms.
- Thermal: x86 therm_throt ``CPU0: Core temperature above threshold, cpu clock throttled``
  and the thermal core's ``critical temperature reached``.
- Storage: ``mmc0: Timeout waiting for hardware interrupt.``, ``mmcblk0: error -110 ...``,
  the block layer's ``I/O error, dev mmcblk0, sector ...`` and ``EXT4-fs error (device ...)``.
- OOM killer (mm/oom_kill.c): ``Out of memory: Killed process 1234 (belacoder) ...``
  (``Kill process`` before Linux 4.19), also under a memory cgroup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = (
    "usb_disconnect", "usb_reset", "usb_error", "usb_overcurrent",
    "hdmirx_signal_lost", "hdmirx_audio_underflow", "hdmirx_invalid_timing",
    "under_voltage", "over_current", "thermal_throttle", "thermal_critical",
    "mmc_error", "io_error", "filesystem_error", "oom_kill",
)

_USB_DEV = r"(\d+-[\d.]+|usb\d+)"
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("usb_disconnect", re.compile(rf"^usb {_USB_DEV}: USB disconnect, device number \d+")),
    ("usb_reset", re.compile(rf"^usb {_USB_DEV}: reset .*USB device number \d+")),
    ("usb_error", re.compile(
        rf"^usb {_USB_DEV}: (?:device descriptor read/\w+, error|device not accepting address"
        r"|unable to enumerate USB device|Device not responding to setup address|can't set config"
        r"|string descriptor 0 read error)")),
    ("hdmirx_signal_lost", re.compile(r"hdmirx_wait_lock_and_get_timing signal not lock")),
    ("hdmirx_audio_underflow", re.compile(r"hdmirx_delayed_work_audio: audio underflow")),
    ("hdmirx_invalid_timing", re.compile(r"hdmirx-controller: Err, timing is invalid")),
    ("thermal_throttle", re.compile(r"^(CPU\d+): (?:Core|Package) temperature above threshold, cpu clock throttled")),
    ("thermal_critical", re.compile(
        r"^(?:thermal )?(thermal_zone\d+|[\w-]+): (?:[\w-]+: )?critical temperature reached")),
    ("mmc_error", re.compile(
        r"^(mmc\d+): .*(?:\berror\b|[Tt]imeout|never left busy|[Ss]tuck|failed|CRC)")),
    ("mmc_error", re.compile(r"^(mmcblk\d+)(?:p\d+|boot\d+|rpmb)?: error -?\d+")),
    ("filesystem_error", re.compile(r"^(?:EXT4-fs|EXT3-fs|EXT2-fs|F2FS-fs|BTRFS) error \(device ([\w.-]+)\)")),
    ("oom_kill", re.compile(r"^(?:Memory cgroup )?[Oo]ut of memory: Kill(?:ed)? process \d+ \(([^)]*)\)")),
)
_HUB_PORT = re.compile(r"^usb (usb\d+|\d+-[\d.]+)-port(\d+): (.*)$")
_IO_ERROR = re.compile(r"I/O error, dev ([\w.-]+), sector")
_SOCTHERM = re.compile(r"soctherm: OC ALARM (0x[0-9a-fA-F]+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class KernelEvent:
    kind: str
    device: str
    usb_port: str | None = None  # the USB device path (``1-1.2``), for mapping to a modem


def _device_label(text: str) -> str:
    """Label-safe, bounded: process names in OOM lines are chosen by whoever ran them."""
    return _UNSAFE.sub("_", text)[:32] or "unknown"


def port_path(hub: str, port: str) -> str:
    """The device path below a hub port: ``usb1`` port 2 is ``1-2``, ``1-1`` port 2 is ``1-1.2``."""
    if hub.startswith("usb"):
        return f"{hub[3:]}-{port}"
    return f"{hub}.{port}"


def classify(message: str) -> KernelEvent | None:
    """The event one kernel message reports, or None for the other 99.9% of the log."""
    if not message:
        return None
    m = _HUB_PORT.match(message)
    if m:
        path = port_path(m.group(1), m.group(2))
        rest = m.group(3)
        if rest.startswith("over-current"):
            return KernelEvent("usb_overcurrent", path, path)
        if rest.startswith(("cannot reset", "unable to enumerate", "disabled by hub", "Cannot enable")):
            return KernelEvent("usb_error", path, path)
        return None
    m = _SOCTHERM.search(message)
    if m:
        # Bit 0 is the under-voltage comparator belaUI alarms on; the rest are OC limits.
        kind = "under_voltage" if int(m.group(1), 16) & 1 else "over_current"
        return KernelEvent(kind, "soctherm")
    for kind, rule in _RULES:
        m = rule.search(message)
        if not m:
            continue
        if kind.startswith("usb_"):
            dev = m.group(1)
            return KernelEvent(kind, dev, None if dev.startswith("usb") else dev)
        if kind.startswith("hdmirx_"):
            return KernelEvent(kind, "hdmirx")
        return KernelEvent(kind, _device_label(m.group(1)))
    m = _IO_ERROR.search(message)
    if m:
        dev = m.group(1)
        return KernelEvent("mmc_error" if dev.startswith("mmcblk") else "io_error", _device_label(dev))
    return None


def journal_message(entry: object) -> str | None:
    """MESSAGE of one ``journalctl -o json`` entry. journald stores a field that is not
    valid UTF-8 as an array of byte values (journalctl(1), "json")."""
    if not isinstance(entry, dict):
        return None
    msg = entry.get("MESSAGE")
    if isinstance(msg, str):
        return msg
    if isinstance(msg, list) and all(isinstance(b, int) and 0 <= b < 256 for b in msg):
        return bytes(msg).decode("utf-8", "replace")
    return None
