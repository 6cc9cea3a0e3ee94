"""``metrics-collector collect --once``: one collection cycle printed, nothing stored."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.registry import SYSTEM_COLLECTOR_NAMES, UnknownCollector, build_collectors
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.commands.common import add_roots, load_config
from belabox_metrics.health.exposition import format_samples
from belabox_metrics.health.registry import ERROR, Registry
from belabox_metrics.health.selfmetrics import SelfMetrics


def build_context(cfg: configmod.Config, args: argparse.Namespace,
                  selfmetrics: SelfMetrics | None) -> CollectorContext:
    """Roots from the command line over ``host.*``; the board profile detected from them."""
    from belabox_metrics.platform.board import detect_profile

    procfs = getattr(args, "procfs", None) or cfg.host.procfs
    sysfs = getattr(args, "sysfs", None) or cfg.host.sysfs
    rootfs = getattr(args, "rootfs", None) or cfg.host.rootfs
    return CollectorContext(config=cfg, procfs=procfs, sysfs=sysfs, rootfs=rootfs,
                            selfmetrics=selfmetrics, profile=detect_profile(procfs, sysfs))


def setup(p: argparse.ArgumentParser) -> None:
    add_roots(p)
    p.add_argument("--once", action="store_true", help="one cycle, printed, nothing stored (the default)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the Prometheus text format")
    p.add_argument("--collector", action="append", metavar="NAME", help="only these collectors")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args)  # a ConfigError becomes exit 78 in cli.main
    # Collector failures are summarised below from health; the log adds only tracebacks of bugs.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    selfmetrics = SelfMetrics()
    ctx = build_context(cfg, args, selfmetrics)
    try:
        collectors = build_collectors(ctx, only=args.collector)
    except UnknownCollector as e:
        print(f"unknown collector {e.args[0]!r}; known: {', '.join(SYSTEM_COLLECTOR_NAMES)}", file=sys.stderr)
        return exitcodes.USAGE
    if args.collector:
        # Asked for by name: run even when the config disables it.
        overrides = {n: configmod.CollectorConfig(enabled=True, interval=c.interval, timeout=c.timeout)
                     for n, c in ((n, cfg.collectors.get(n)) for n in args.collector)}
        cfg = dataclasses.replace(cfg, collectors=dataclasses.replace(
            cfg.collectors, overrides={**cfg.collectors.overrides, **overrides}))
    health = Registry()
    runner = CollectorRunner(collectors, cfg, health, selfmetrics)
    try:
        samples = runner.run_all()
    finally:
        runner.close()
    if args.json:
        rows = sorted(samples, key=lambda s: (s.name, s.labels))
        out = "".join(json.dumps({"name": s.name, "labels": dict(s.labels), "value": s.value},
                                 sort_keys=True) + "\n" for s in rows)
    else:
        out = format_samples(samples)
    sys.stdout.write(out)
    sys.stdout.flush()
    failed = 0
    for name, comp in sorted(health.components().items()):
        if comp.status != "ok":
            print(f"{name}: {comp.status}: {comp.message}", file=sys.stderr)
        failed += comp.status == ERROR
    return exitcodes.FAILURE if collectors and failed == len(collectors) else exitcodes.OK
