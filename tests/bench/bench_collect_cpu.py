"""CPU per collection cycle: ours (in-process, time.process_time over many cycles) against one
node_exporter 1.5 scrape with the comparable collectors (utime+stime from /proc/<pid>/stat over
many scrapes), on the generic board tree and on this host, side by side.

Target: our cycle uses at most half of node_exporter's CPU per scrape. Prints the ratios and
exits 1 when a ratio is above 0.5.

    PYTHONPATH=app:. python3 tests/bench/bench_collect_cpu.py [--cycles N] [--scrapes N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from belabox_metrics import config
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.registry import build_collectors
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.health.registry import Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform.board import detect_profile
from tests.collectors.support import HARDWARE, NodeExporter

OURS = ["cpu", "meminfo", "netdev", "diskstats", "filesystem", "loadavg", "thermal", "hwmon", "pressure"]
THEIRS = ("cpu", "meminfo", "netdev", "diskstats", "filesystem", "loadavg", "thermal_zone", "hwmon", "pressure")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def our_cycle_seconds(procfs: str, sysfs: str, rootfs: str, cycles: int) -> tuple[float, int]:
    cfg = config.Config()
    ctx = CollectorContext(config=cfg, procfs=procfs, sysfs=sysfs, rootfs=rootfs, selfmetrics=SelfMetrics(),
                           profile=detect_profile(procfs, sysfs))
    runner = CollectorRunner(build_collectors(ctx, only=OURS), cfg, Registry(), ctx.selfmetrics)
    try:
        n = len(runner.run_all())  # warm caches (interface classes, hwmon layouts) as a running agent has
        for _ in range(20):
            runner.run_all()
        t0 = time.process_time()
        for _ in range(cycles):
            runner.run_all()
        return (time.process_time() - t0) / cycles, n
    finally:
        runner.close()


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def node_exporter_scrape_seconds(tree: Path | None, scrapes: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as udev:
        ne = NodeExporter(tree, Path(udev), THEIRS) if tree else _host_node_exporter(Path(udev))
        with ne:
            url = f"http://127.0.0.1:{ne.port}/metrics"
            body = ""
            for _ in range(20):
                body = urllib.request.urlopen(url, timeout=10).read().decode()
            series = sum(1 for line in body.splitlines() if line.startswith("node_"))
            c0 = process_cpu_seconds(ne.proc.pid)
            for _ in range(scrapes):
                urllib.request.urlopen(url, timeout=10).read()
            return (process_cpu_seconds(ne.proc.pid) - c0) / scrapes, series


def _host_node_exporter(udev: Path) -> NodeExporter:
    ne = NodeExporter.__new__(NodeExporter)
    NodeExporter.__init__(ne, Path("/"), udev, THEIRS)
    return ne


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=2000)
    p.add_argument("--scrapes", type=int, default=1000)
    args = p.parse_args()
    tree = HARDWARE / "generic"
    rows = []
    for label, roots, ne_tree in (
        ("generic tree", (str(tree / "proc"), str(tree / "sys"), str(tree / "root")), tree),
        ("this host", ("/proc", "/sys", "/"), None),
    ):
        ours, n_ours = our_cycle_seconds(*roots, args.cycles)
        theirs, n_theirs = node_exporter_scrape_seconds(ne_tree, args.scrapes)
        rows.append((label, ours, n_ours, theirs, n_theirs))
    print(f"{'':14} {'ours/cycle':>12} {'series':>7} {'node_exporter/scrape':>21} {'series':>7} {'ratio':>6}")
    worst = 0.0
    for label, ours, n_ours, theirs, n_theirs in rows:
        ratio = ours / theirs if theirs else float("inf")
        worst = max(worst, ratio)
        print(f"{label:14} {ours * 1000:9.3f} ms {n_ours:7} {theirs * 1000:18.3f} ms {n_theirs:7} {ratio:6.2f}")
    print(f"(node_exporter CPU from /proc/<pid>/stat at {CLK_TCK} ticks/s over {args.scrapes} scrapes; "
          f"ours with time.process_time over {args.cycles} cycles, in-process)")
    return 0 if worst <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
