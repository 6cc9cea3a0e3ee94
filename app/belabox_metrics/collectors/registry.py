"""The collectors the agent knows, in one explicit table, and how they are built.

No import-time registration: a collector exists because it is listed here. Modules are
imported only when enabled, so a box without ModemManager never imports the modem code.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging

from belabox_metrics.collectors import Collector, CollectorContext

log = logging.getLogger(__name__)

# name -> (module, class). The order is the order of a cycle and of `collect --once` output.
COLLECTORS: tuple[tuple[str, str, str], ...] = (
    ("cpu", "belabox_metrics.collectors.cpu", "CpuCollector"),
    ("cpufreq", "belabox_metrics.collectors.cpufreq", "CpufreqCollector"),
    ("meminfo", "belabox_metrics.collectors.meminfo", "MeminfoCollector"),
    ("pressure", "belabox_metrics.collectors.pressure", "PressureCollector"),
    ("diskstats", "belabox_metrics.collectors.diskstats", "DiskstatsCollector"),
    ("filesystem", "belabox_metrics.collectors.filesystem", "FilesystemCollector"),
    ("netdev", "belabox_metrics.collectors.netdev", "NetdevCollector"),
    ("thermal", "belabox_metrics.collectors.thermal", "ThermalCollector"),
    ("hwmon", "belabox_metrics.collectors.hwmon", "HwmonCollector"),
    ("loadavg", "belabox_metrics.collectors.loadavg", "LoadavgCollector"),
    ("modem", "belabox_metrics.collectors.modem.collector", "ModemCollector"),
    ("selfstats", "belabox_metrics.collectors.selfstats", "SelfstatsCollector"),
    ("belabox", "belabox_metrics.collectors.belabox.collector", "BelaboxCollector"),
    ("kernel_events", "belabox_metrics.collectors.kernel_events", "KernelEventsCollector"),
    ("srt", "belabox_metrics.collectors.belabox.srt", "SrtCollector"),
)
SYSTEM_COLLECTOR_NAMES = tuple(name for name, _, _ in COLLECTORS)


class UnknownCollector(ValueError):
    pass


def collector_class(name: str) -> type[Collector] | None:
    """The class for ``name``; None when its module is not part of this build."""
    for n, module, cls in COLLECTORS:
        if n == name:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name == module:
                    return None
                raise
            return getattr(mod, cls)
    raise UnknownCollector(name)


def build_collectors(ctx: CollectorContext, only: list[str] | None = None) -> list[Collector]:
    """Every enabled collector (``collectors.<name>.enabled``) that has something to do here
    (``configured(config)``: the SRT poller needs a URL), or exactly ``only`` when given (then
    both are ignored: asking for one by name means wanting it)."""
    if ctx.registry is None:
        # Without discovery (collect --once, diagnose, tests) devices come from a sysfs scan
        # classified by the same rules as in `run`: one classifier for every path.
        from belabox_metrics.devices.registry import ScannedRegistry
        ctx = dataclasses.replace(ctx, registry=ScannedRegistry(ctx.sysfs))
    names = list(only) if only else [n for n in SYSTEM_COLLECTOR_NAMES if ctx.config.collectors.get(n).enabled]
    out = []
    for name in names:
        cls = collector_class(name)
        if cls is None:
            log.debug("collector %s is not part of this build", name)
            continue
        if not only and not cls.configured(ctx.config):
            log.debug("collector %s has nothing to do with this configuration", name)
            continue
        out.append(cls(ctx))
    return out
