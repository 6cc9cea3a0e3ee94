"""`metrics-collector devices [--json] [--watch] [--sysfs DIR]`: what discovery sees, and why.

Lists disks, network interfaces and modems with the reason each was included, then
everything excluded with its reason. ``--watch`` prints every add/remove/change as it
happens (the current devices first, as adds) until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from belabox_metrics import exitcodes
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.modem.collector import NOT_RUNNING, ModemCollector
from belabox_metrics.commands.common import load_config
from belabox_metrics.devices.discovery import DEFAULT_UDEV_RUN_DIR, Discovery
from belabox_metrics.devices.model import DeviceChange, Disk, Excluded, Modem, NetIf
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.diagnose.secrets import redactor
from belabox_metrics.redact import Redactor


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON (one object; JSON lines with --watch)")
    p.add_argument("--watch", action="store_true", help="print add/remove/change events until Ctrl-C or SIGTERM")
    p.add_argument("--sysfs", metavar="DIR", help="sysfs root to read (default: host.sysfs), e.g. a copied tree")
    p.add_argument("--udev-dir", metavar="DIR", default=DEFAULT_UDEV_RUN_DIR,
                   help=f"udev's runtime directory (default {DEFAULT_UDEV_RUN_DIR}); without it "
                        "discovery rescans sysfs instead of following udev")


def _modem_line(m: Modem) -> str:
    names = dict.fromkeys(x for x in (m.manufacturer, m.model) if x)  # HiLinks say HUAWEI_MOBILE twice
    ident = " ".join([f"{m.vendor_id}:{m.product_id}", *names])
    parts = [f"{m.key:<14} {ident}"]
    if m.interfaces:
        parts.append("interfaces " + ",".join(m.interfaces))
    if m.ports:
        parts.append("ports " + ",".join(m.ports))
    return "  ".join(parts)


def describe(item: Any) -> str:
    """One human line for a disk, interface, modem or excluded device."""
    if isinstance(item, Disk):
        model = f"  model {item.model}" if item.model else ""
        return f"{item.name:<14} {item.bus:<9} {item.reason}{model}"
    if isinstance(item, NetIf):
        return f"{item.name:<14} {item.kind:<9} {item.reason}"
    if isinstance(item, Modem):
        return f"{_modem_line(item)}  ({item.reason})"
    if isinstance(item, Excluded):
        return f"{item.name:<14} {item.kind:<9} {item.reason}"
    return str(item)


def modemmanager(cfg: Any, sysfs: str) -> dict[str, Any]:
    """Whether ModemManager answers (the modem collector's own check: one mmcli call at most)."""
    collector = ModemCollector(CollectorContext(config=cfg, sysfs=sysfs, registry=DeviceRegistry()))
    try:
        running, message = collector.modemmanager_running()
    finally:
        collector.close()
    return {"running": running, "message": message}


def render(registry: DeviceRegistry, discovery: Discovery, mm: dict[str, Any] | None = None) -> str:
    inv = registry.inventory()
    lines = [f"discovery: {discovery.mode} ({discovery.message})", ""]
    for title, items in (("Disks", inv.disks), ("Network interfaces", inv.interfaces)):
        lines.append(title)
        lines += [f"  {describe(i)}" for i in items] or ["  (none)"]
        lines.append("")
    lines.append("Modems")
    for m in inv.modems:
        lines += [f"  {_modem_line(m)}", f"  {'':<14} {m.reason}"]
    if not inv.modems:
        lines.append("  (none)")
    elif mm is not None and mm.get("running") is False:
        # Once for all modems: they are listed from udev; only their radio side is missing.
        lines.append(f"  {NOT_RUNNING}")
        if mm.get("message"):
            lines.append(f"  {'':<14} {mm['message']}")
    lines += ["", "Excluded"]
    lines += [f"  {describe(e)}" for e in inv.excluded] or ["  (none)"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args)  # a ConfigError becomes exit 78 in cli.main
    sysfs = args.sysfs or cfg.host.sysfs
    if not os.path.isdir(sysfs):
        print(f"devices: sysfs root {sysfs} is not a directory", file=sys.stderr)
        return exitcodes.USAGE
    registry = DeviceRegistry()
    discovery = Discovery(registry, sysfs=sysfs, udev_run_dir=args.udev_dir)
    red = redactor(cfg)  # USB serials and MACs follow modem.expose_identifiers, as everywhere
    if args.watch:
        return _watch(registry, discovery, args.json, red)
    discovery.scan_once()
    mm = modemmanager(cfg, sysfs)
    if args.json:
        data = registry.snapshot()
        data["discovery"] = {"mode": discovery.mode, "message": discovery.message}
        data["modemmanager"] = mm
        print(json.dumps(red.tree(data), indent=2))
    else:
        print(red.text(render(registry, discovery, mm)))
    return exitcodes.OK


def _watch(registry: DeviceRegistry, discovery: Discovery, as_json: bool, red: Redactor) -> int:
    stop = threading.Event()
    out_lock = threading.Lock()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    def show(change: DeviceChange) -> None:
        if as_json:
            line = json.dumps(red.tree(change.to_json()), sort_keys=True)
        else:
            line = red.text(f"{change.action:<7} {change.kind:<10} {describe(change.item)}")
        with out_lock:
            print(line, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        registry.subscribe(show)  # before start: the devices present now arrive as adds
        discovery.start()
        print(f"watching: {discovery.mode} ({discovery.message}); Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        discovery.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return exitcodes.OK
