"""Devices and board for ``diagnose``: from the agent's /metrics, or a one-off collection.

Interface throughput comes from two readings of the sysfs byte counters ``rate_seconds``
apart: the agent's own counters may be a whole collection cycle old.
"""

from __future__ import annotations

import os
import time
from typing import Any

from belabox_metrics import config as configmod
from belabox_metrics.diagnose import facts as diagnose_facts

# Collectors whose output the report shows; the rest are not worth a one-off run.
DEVICE_COLLECTORS = ("netdev", "filesystem", "modem", "thermal", "belabox")


def roots(cfg: configmod.Config, args) -> tuple[str, str, str]:
    return (getattr(args, "procfs", None) or cfg.host.procfs, getattr(args, "sysfs", None) or cfg.host.sysfs,
            getattr(args, "rootfs", None) or cfg.host.rootfs)


def device_facts(cfg: configmod.Config, args, samples, running: bool) -> dict[str, Any]:
    source = "the agent's /metrics"
    if not running:
        samples, source = one_off_samples(cfg, args), "a one-off collection"
    ifaces = diagnose_facts.interfaces(samples)
    rate_s = getattr(args, "rate_seconds", 1.0) or 0.0
    if ifaces and rate_s > 0:
        sysfs = roots(cfg, args)[1]
        before = read_if_counters(sysfs, [i["device"] for i in ifaces])
        for i in ifaces:  # both readings from sysfs: the agent's counters may be a cycle old
            if i["device"] in before:
                i["rx_bytes"], i["tx_bytes"] = before[i["device"]]
        time.sleep(rate_s)
        diagnose_facts.add_rates(ifaces, read_if_counters(sysfs, list(before)), rate_s)
    return {"source": source, "modems": diagnose_facts.modems(samples),
            "filesystems": diagnose_facts.filesystems(samples), "interfaces": ifaces,
            "temperatures": diagnose_facts.temperatures(samples), "stream": diagnose_facts.stream(samples),
            "modemmanager_up": next((s.value for s in samples if s.name == "belabox_modemmanager_up"), None)}


def read_if_counters(sysfs: str, devices: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for dev in devices:
        base = os.path.join(sysfs, "class", "net", dev, "statistics")
        try:
            with open(os.path.join(base, "rx_bytes")) as rx, open(os.path.join(base, "tx_bytes")) as tx:
                out[dev] = (float(rx.read()), float(tx.read()))
        except (OSError, ValueError):
            continue
    return out


def one_off_samples(cfg: configmod.Config, args) -> list:
    """What the device collectors see right now (no discovery thread, no spool)."""
    from belabox_metrics.collectors import CollectorContext
    procfs, sysfs, rootfs = roots(cfg, args)
    try:
        from belabox_metrics.collectors.registry import build_collectors
    except ImportError:
        return []
    ctx = CollectorContext(config=cfg, procfs=procfs, sysfs=sysfs, rootfs=rootfs, profile=_profile(procfs, sysfs))
    out: list = []
    for name in DEVICE_COLLECTORS:
        try:
            collectors = build_collectors(ctx, only=[name])
        except ValueError:  # not a collector of this build (registry.UnknownCollector)
            continue
        for c in collectors:
            try:
                out.extend(c.collect())
            except Exception:  # one broken source must not cost the operator the whole report
                pass
            finally:
                c.close()
    return out


def _profile(procfs: str, sysfs: str):
    try:
        from belabox_metrics.platform import board as hardware
        return hardware.detect_profile(procfs, sysfs)
    except Exception:  # unknown board: the report says so rather than failing
        return None


def board_facts(cfg: configmod.Config, args) -> dict[str, Any]:
    procfs, sysfs, _ = roots(cfg, args)
    prof = _profile(procfs, sysfs)
    if prof is None:
        return {"text": "no board profile matched (generic collectors only)"}
    ident = getattr(prof, "id", None) or getattr(prof, "board", None) or getattr(prof, "name", None) or str(prof)
    name = getattr(prof, "name", None)
    text = f"{ident} ({name})" if name and name != ident else str(ident)
    return {"id": str(ident), "text": text}
