"""Running ``metrics-collector collect --once`` and node_exporter on a tree, and reading
the Prometheus text format back."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARDWARE = REPO / "hardware"
BOARDS = ("rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano", "generic")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# node_exporter collectors comparable to ours (netclass holds the link attributes,
# stat the boot time and counters, time the clock).
NE_COLLECTORS = ("cpu", "cpufreq", "meminfo", "pressure", "diskstats", "filesystem", "netdev", "netclass",
                 "thermal_zone", "hwmon", "loadavg", "stat", "time")

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = tuple[str, tuple[tuple[str, str], ...]]


def parse_text(text: str) -> dict[Series, float]:
    """Series -> value from the text exposition format (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, f"not an exposition line: {line!r}"
        labels = tuple(sorted((k, bytes(v, "utf-8").decode("unicode_escape")) for k, v in
                              _LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "app")
    e.pop("BELABOX_METRICS_CONFIG", None)
    # ModemManager is the host's, never the tree's: a board tree must not show the machine's modems
    # (or its missing ModemManager). Modems are tested under tests/devices against dbusmock.
    e["BELABOX_METRICS_COLLECTORS_MODEM_ENABLED"] = "false"
    return e


def collect_once(tree: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "belabox_metrics", "collect", "--once",
           "--procfs", str(tree / "proc"), "--sysfs", str(tree / "sys"), "--rootfs", str(tree / "root"), *extra]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeExporter:
    """node_exporter pointed at a tree, on a free loopback port; stopped by PID."""

    def __init__(self, tree: Path, udev_dir: Path, collectors=NE_COLLECTORS):
        self.port = free_port()
        args = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}", "--collector.disable-defaults",
                f"--path.procfs={tree / 'proc'}", f"--path.sysfs={tree / 'sys'}",
                f"--path.rootfs={tree / 'root'}", f"--path.udev.data={udev_dir}"]
        args += [f"--collector.{c}" for c in collectors]
        if "netdev" in collectors:
            # netlink would read the host's interfaces, not the tree's /proc/net/dev.
            args.append("--no-collector.netdev.netlink")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> NodeExporter:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node_exporter exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("node_exporter did not listen within 10 s")

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __exit__(self, *exc) -> None:
        self.stop()
