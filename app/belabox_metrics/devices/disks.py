"""Which block devices are disks worth counting: part of classify(), pure like it.

Partitions, eMMC boot/RPMB areas, loop/zram/device-mapper and empty card readers are
excluded with a reason; the bus comes from udev's ID_BUS, else sysfs topology.
"""

from __future__ import annotations

import re

from belabox_metrics.devices.model import DeviceInfo, Disk, Excluded

KIND_PROPERTY = "BELABOX_METRICS_KIND"
_ATA = re.compile(r"/ata\d+/")
_NESTED_DISK = re.compile(r"/block/[^/]+/[^/]+$")
_USB_DEVICE = re.compile(r"^(.*/usb\d+(?:/\d+-[\d.]+)+)/\d+-[\d.]+:\d+\.\d+/")
_PATH_BUS = (("/nvme/", "nvme"), ("/mmc_host/", "mmc"), ("/virtio", "virtio"))


def disk(d: DeviceInfo) -> Disk | Excluded:
    kind_prop = d.prop(KIND_PROPERTY)
    if d.devtype == "partition" or "partition" in d.flags:
        return Excluded(d.name, "disk", f"partition of {d.devpath.rsplit('/', 2)[-2]} (the whole disk is counted)")
    if d.parent("block") is not None or _NESTED_DISK.search(d.devpath):
        host = d.devpath.rsplit("/", 2)[-2]
        return Excluded(d.name, "disk", f"eMMC hardware partition (boot or RPMB) of {host}")
    if kind_prop == "ignore":
        return Excluded(d.name, "disk", f"udev rule: {KIND_PROPERTY}=ignore")
    if d.devpath.startswith("/devices/virtual/"):  # where the kernel puts parentless devices
        return Excluded(d.name, "disk", _virtual_disk_reason(d))
    if d.parent("mtd") is not None or "/mtd/" in d.devpath:
        return Excluded(d.name, "disk", "raw MTD flash (SPI NOR/NAND), not a block disk")
    if d.attrs.get("size") == "0":
        return Excluded(d.name, "disk", "no medium (size 0)")
    bus = _bus(d)
    if bus is None:
        if kind_prop == "disk":
            bus = "unknown"
        else:
            return Excluded(d.name, "disk", "no hardware bus behind it")
    card = d.parent("mmc")
    card_type = card.attrs.get("type") if card else None
    removable = d.attrs.get("removable") == "1" or card_type == "SD" or bus == "usb"
    if bus == "mmc":
        what = {"SD": "SD card", "MMC": "eMMC"}.get(card_type or "", "MMC device")
        reason = f"{what} on the mmc bus"
    else:
        reason = f"whole disk on the {bus} bus"
    if kind_prop == "disk":
        reason += f" (udev rule: {KIND_PROPERTY}=disk)"
    return Disk(d.name, d.devpath, bus, _model(d), removable, reason)


def _virtual_disk_reason(d: DeviceInfo) -> str:
    if "loop" in d.flags:
        return "loop device (image or snap mount)"
    if "comp_algorithm" in d.flags:
        return "zram: compressed RAM (reported as memory)"
    if "dm" in d.flags:
        return "device-mapper volume (its disks are counted)"
    if "md" in d.flags:
        return "software RAID (its disks are counted)"
    return "virtual block device (RAM disk or similar)"


def _bus(d: DeviceInfo) -> str | None:
    prop = d.prop("ID_BUS")
    if prop:
        return prop
    subsystems = [p.subsystem for p in d.parents]
    if "usb" in subsystems:
        return "usb"
    for sub in ("nvme", "mmc", "virtio"):
        if sub in subsystems:
            return sub
    if "scsi" in subsystems:
        return "ata" if _ATA.search(d.devpath) else "scsi"
    if _USB_DEVICE.match(d.devpath):
        return "usb"
    for marker, bus in _PATH_BUS:
        if marker in d.devpath:
            return bus
    if _ATA.search(d.devpath):
        return "ata"
    if "/target" in d.devpath:
        return "scsi"
    return None


def _model(d: DeviceInfo) -> str | None:
    prop = d.prop("ID_MODEL")
    if prop:
        return prop.replace("_", " ").strip()
    for p in d.parents:
        for attr in ("model", "name"):
            if p.subsystem in ("mmc", "nvme", "scsi") and p.attrs.get(attr):
                return p.attrs[attr].strip()
    return None
