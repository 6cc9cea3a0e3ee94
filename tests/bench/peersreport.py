"""The markdown table of bench_peers (pure formatting) and the machine line it is headed with."""

from __future__ import annotations

import os
import platform
from datetime import datetime

MOUNT_VARIANTS = ("noatime", "noatime,lazytime", "noatime,commit=60")
PEERS = "node_exporter + vmagent"


def parse_cpu_model(cpuinfo: str) -> str:
    """x86 says "model name"; arm64 kernels often only "Hardware" or nothing (then: unknown)."""
    for key in ("model name", "Model", "Hardware"):
        for line in cpuinfo.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return "unknown CPU"


def parse_os_name(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown OS"


def machine_line(procfs: str = "/proc", etc: str = "/etc") -> str:
    def read(path: str) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    return (f"{parse_cpu_model(read(os.path.join(procfs, 'cpuinfo')))}, {os.cpu_count()} cores, "
            f"kernel {platform.release()} ({platform.machine()}), "
            f"{parse_os_name(read(os.path.join(etc, 'os-release')))}")


def _num(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def scenario_label(scen: str) -> str:
    link, iv = scen.split()
    return f"uplink {link}, every {iv} s"


def measures(ours: dict, peers: dict) -> list[tuple[str, float | None, float | None, int]]:
    """(measure, ours, peers, digits) rows for one scenario."""

    def per_cycle(r: dict) -> float | None:
        return r["delivered"] / r["cycles"] if "delivered" in r and r["cycles"] else None

    def us_per_sample(r: dict) -> float | None:
        return r["cpu_s"] / r["delivered"] * 1e6 if r.get("delivered") else None

    return [
        ("flash writes, MB/day", ours["mb_day"], peers["mb_day"], 2),
        ("CPU s in the window", ours["cpu_s"], peers["cpu_s"], 2),
        ("samples delivered per cycle", per_cycle(ours), per_cycle(peers), 0),
        ("CPU µs per delivered sample", us_per_sample(ours), us_per_sample(peers), 1),
        ("peak RSS (VmHWM), MB", ours["rss_mb"], peers["rss_mb"], 1),
        ("start to READY, s", ours.get("ready_s"), peers.get("ready_s"), 2),
    ]


def render(rows: dict, args, command: str, started: datetime, machine: str) -> str:
    window_min = args.minutes
    out = [
        f"### Footprint: our agent against {PEERS}",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine}",
        f"- Command: `{command}`",
        f"- Medians of {args.runs} run(s); a {window_min:g}-minute window per run, all stacks measured "
        "in the same window. MB/day = sectors written in the window (/sys/block/loopN/stat field 7, "
        f"ext4 journal included) x 512, extrapolated to 24 h. Each image: 256 MB ext4 with "
        f"{getattr(args, 'block_size', 1024)}-byte blocks.",
        "- Ours: `python -m belabox_metrics run`, default settings except paths, ports and intervals"
        + (f" (upload_interval {args.upload_interval:g} s)" if args.upload_interval else "")
        + ". Peers: node_exporter (default collectors) scraped by vmagent at the same interval. "
        "Both upload to VictoriaMetrics on 127.0.0.1; uplink down = a closed loopback port.",
        "- CPU = utime+stime (ours with its children, running or reaped); samples = those in VictoriaMetrics with "
        "timestamps in the window; peaks and start-up times are per stack (peers: the two summed; "
        "ready = both HTTP ports answer; ours: READY=1 on a test-owned NOTIFY_SOCKET).",
        "",
        f"| scenario | measure | ours | {PEERS} | ours / peers |",
        "|---|---|---:|---:|---:|",
    ]
    scenarios = [k[0] for k in rows if k[1] == "ours" and not k[0].startswith("mount ")]
    for scen in scenarios:
        for name, a, b, digits in measures(rows[scen, "ours"], rows[scen, "peers"]):
            out.append(f"| {scenario_label(scen)} | {name} | {_num(a, digits)} | {_num(b, digits)} | "
                       f"{_ratio(a, b)} |")
    iv = f"{args.intervals[0]:g}"
    base = rows[f"down {iv}", "ours"]
    out += [
        "",
        f"Data partition mount options (item 5): our agent, uplink down, every {iv} s; each on its own "
        "ext4 in the same window (defaults = the row above).",
        "",
        "| ext4 mount options | sectors written | MB/day | vs defaults |",
        "|---|---:|---:|---:|",
        f"| defaults | {base['sectors']:,.0f} | {base['mb_day']:.2f} | 1.00 |",
    ]
    for opts in MOUNT_VARIANTS:
        r = rows[f"mount {opts}", "ours"]
        out.append(f"| {opts} | {r['sectors']:,.0f} | {r['mb_day']:.2f} | {_ratio(r['mb_day'], base['mb_day'])} |")
    c = rows["control", "empty"]
    out.append(f"| (control: empty ext4, defaults, no process) | {c['sectors']:,.0f} | {c['mb_day']:.2f} | — |")
    return "\n".join(out)
