"""Turn a umockdev description into a plain sysfs-shaped directory tree.

Lets the sysfs fallback (and `devices --sysfs DIR`) be tested against the very same
hardware/<board>/devices.umockdev files that umockdev replays, without LD_PRELOAD.
``strip_udev`` drops the properties only a udev database would add (``ID_*``, our
``BELABOX_METRICS_*``), leaving what the kernel's own uevent files hold.
"""

from __future__ import annotations

import os
from pathlib import Path

CLASS_SUBSYSTEMS = {"net", "block", "tty", "usbmisc", "nvme", "mmc_host", "gadget", "wwan"}
BUS_SUBSYSTEMS = {"usb", "pci", "platform", "mmc", "scsi", "usb-serial", "mhi"}


def parse(text: str) -> list[dict]:
    devices = []
    for block in text.strip().split("\n\n"):
        dev: dict = {"props": {}, "attrs": {}, "links": {}}
        for line in block.splitlines():
            tag, _, value = line.partition(": ")
            if tag == "P":
                dev["path"] = value.strip()
            elif tag == "N":
                dev["node"] = value.strip()
            elif tag == "E":
                k, _, v = value.partition("=")
                dev["props"][k] = v
            elif tag == "A":
                k, _, v = value.partition("=")
                dev["attrs"][k] = v
            elif tag == "L":
                k, _, v = value.partition("=")
                dev["links"][k] = v
        devices.append(dev)
    return devices


def materialize(description: str | Path, root: Path, *, strip_udev: bool = False,
                replace: dict[str, str] | None = None) -> Path:
    text = Path(description).read_text() if isinstance(description, Path) else description
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    for dev in parse(text):
        path = root / dev["path"].lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        props = {k: v for k, v in dev["props"].items()
                 if not (strip_udev and (k.startswith("ID_") or k.startswith("BELABOX_METRICS_")))}
        (path / "uevent").write_text("".join(f"{k}={v}\n" for k, v in props.items() if k != "SUBSYSTEM"))
        for name, value in dev["attrs"].items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(value + "\n")
        for name, target in dev["links"].items():
            link = path / name
            if not link.is_symlink():
                link.symlink_to(target)
        subsystem = props.get("SUBSYSTEM")
        if subsystem:
            parent = root / ("class" if subsystem in CLASS_SUBSYSTEMS else "bus") / subsystem
            parent.mkdir(parents=True, exist_ok=True)
            if not (path / "subsystem").is_symlink():
                (path / "subsystem").symlink_to(os.path.relpath(parent, path))
            entry = (parent / "devices" if subsystem in BUS_SUBSYSTEMS else parent) / path.name
            entry.parent.mkdir(parents=True, exist_ok=True)
            if not entry.is_symlink():
                entry.symlink_to(os.path.relpath(path, entry.parent))
    return root
