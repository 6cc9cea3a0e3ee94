"""Footprint side by side: our agent against node_exporter + vmagent, both uploading to a real
VictoriaMetrics on loopback; flash writes at the block layer, CPU, samples, RSS, start-up.

    PYTHONPATH=app:. python tests/bench/bench_peers.py [--runs 3] [--minutes 10] [--quick]

Every stack (one agent, or one node_exporter with a vmagent scraping it at the same interval)
keeps its data directory (our spool; vmagent's -remoteWrite.tmpDataPath) on its own
file-backed ext4 on its own loop device. Scenarios: uplink up (VictoriaMetrics) and down (a
closed loopback port) at each collection interval; beside them our agent with the uplink down
on ext4 mounted with other options, and an empty ext4 as control. All stacks of a run are
started one after another (start to READY is timed each), then measured over the same window:
sectors written (/sys/block/loopN/stat field 7, journal included; sync before both readings),
CPU (utime+stime, ours with its children, running or reaped), peak RSS (VmHWM), samples that reached
VictoriaMetrics with timestamps inside the window. Medians over the runs. MB/day is the
window's writes extrapolated to 24 h. Needs root (loop devices). Exit 1 when a side fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import requests

HERE = Path(__file__).resolve()
for p in (str(HERE.parents[2] / "app"), str(HERE.parents[2])):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.bench.loopfs import BLOCK_SIZE, SECTOR, LoopFs, LoopFsError  # noqa: E402
from tests.bench.peersreport import MOUNT_VARIANTS, machine_line, render  # noqa: E402
from tests.bench.peerstack import NotifyListener, OurStack, PeerStack, StackError, compile_like_the_deb  # noqa: E402
from tests.support.vm import VictoriaMetrics, VMError, free_port  # noqa: E402

DAY_S = 86_400


def count_delivered(vm: VictoriaMetrics, device_id: str, start: float, end: float) -> int:
    """Samples of one device in VictoriaMetrics with timestamps in [start, end)."""
    r = vm.http.post(f"{vm.base}/api/v1/export",
                     data={"match[]": f'{{device_id="{device_id}"}}', "start": f"{start:.3f}",
                           "end": f"{end + 60:.3f}"}, timeout=60)
    r.raise_for_status()
    lo, hi = start * 1000, end * 1000
    n = 0
    for line in r.text.splitlines():
        if line.strip():
            n += sum(1 for t in _timestamps(line) if lo <= t < hi)
    return n


def _timestamps(line: str) -> list[int]:
    return json.loads(line)["timestamps"]


class Run:
    """One run: every stack on its own loop device, measured over one shared window."""

    def __init__(self, work: Path, args, vm: VictoriaMetrics):
        self.work, self.args, self.vm = work, args, vm
        self.closed_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the uplink is down
        self.stacks: list[tuple[str, object, LoopFs]] = []  # (scenario, stack, fs)
        self.control: LoopFs | None = None

    def build(self, es: ExitStack) -> None:
        notify = NotifyListener()
        es.callback(notify.close)
        n = 0

        def fs(tag: str, options: str = "") -> LoopFs:
            nonlocal n
            n += 1
            lf = LoopFs(self.work / f"{n:02d}-{tag}.img", self.work / f"{n:02d}-{tag}", options,
                        block_size=self.args.block_size)
            es.callback(lf.close)  # registered before open: a half-built one is torn down too
            return lf.open()

        up_import, up_write = self.vm.import_url, f"{self.vm.base}/api/v1/write"
        for link in ("up", "down"):
            for iv in self.args.intervals:
                scen = f"{link} {iv:g}"
                ours_url = up_import if link == "up" else f"{self.closed_url}/api/v1/import"
                peer_url = up_write if link == "up" else f"{self.closed_url}/api/v1/write"
                d = fs(f"ours-{link}-{iv:g}")
                ours = OurStack(f"ours-{link}-{iv:g}", self.work, d.mountpoint, iv, ours_url, notify,
                                self.args.upload_interval, self.args.commit_interval)
                es.callback(ours.stop)
                self.stacks.append((scen, ours, d))
                d = fs(f"peers-{link}-{iv:g}")
                peers = PeerStack(f"peers-{link}-{iv:g}", self.work, d.mountpoint, iv, peer_url)
                es.callback(peers.stop)
                self.stacks.append((scen, peers, d))
        iv = self.args.intervals[0]
        for opts in MOUNT_VARIANTS:
            d = fs("mount-" + opts.replace(",", "_").replace("=", ""), opts)
            ours = OurStack(f"ours-mount-{len(self.stacks)}", self.work, d.mountpoint, iv,
                            f"{self.closed_url}/api/v1/import", notify, self.args.upload_interval,
                            self.args.commit_interval)
            es.callback(ours.stop)
            self.stacks.append((f"mount {opts}", ours, d))
        self.control = fs("control")

    def measure(self) -> dict:
        for _, stack, _ in self.stacks:  # one at a time, so start-up is timed without the others'
            stack.start()
            stack.wait_ready()
        time.sleep(self.args.warmup)
        devices = [d for _, _, d in self.stacks] + [self.control]
        os.sync()  # what was dirtied before the window is written before it
        t0, w0 = time.monotonic(), time.time()
        sec0 = [d.sectors_written() for d in devices]
        cpu0 = [s.cpu_seconds() for _, s, _ in self.stacks]
        time.sleep(self.args.minutes * 60)
        cpu1 = [s.cpu_seconds() for _, s, _ in self.stacks]
        os.sync()  # and what was dirtied inside it, inside
        sec1 = [d.sectors_written() for d in devices]
        window, w1 = time.monotonic() - t0, time.time()
        rss = [s.peak_rss_mb() for _, s, _ in self.stacks]
        self._drain()
        self.vm.force_flush()
        out = {"window_s": window, "rows": {}}
        for i, (scen, stack, _) in enumerate(self.stacks):
            written = (sec1[i] - sec0[i]) * SECTOR
            row = {"sectors": sec1[i] - sec0[i], "mb_day": written / window * DAY_S / 1e6,
                   "cpu_s": cpu1[i] - cpu0[i], "rss_mb": rss[i], "ready_s": stack.ready_s,
                   "cycles": window / stack.interval}
            if scen.startswith("up "):
                row["delivered"] = count_delivered(self.vm, stack.name, w0, w1)
            out["rows"][scen, stack.side] = row
        c = sec1[-1] - sec0[-1]
        out["rows"]["control", "empty"] = {"sectors": c, "mb_day": c * SECTOR / window * DAY_S / 1e6}
        return out

    def _drain(self) -> None:
        """Let the uplink-up stacks deliver what they collected inside the window."""
        bound = (self.args.upload_interval or 60.0) + 20
        deadline = time.monotonic() + bound
        for scen, stack, _ in self.stacks:
            if not scen.startswith("up "):
                continue
            while time.monotonic() < deadline:
                try:
                    if stack.pending() == 0:
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.5)
        time.sleep(3)  # vmagent flushes every second; VictoriaMetrics then needs force_flush


def median_rows(runs: list[dict]) -> dict:
    keys = runs[0]["rows"].keys()
    out = {}
    for k in keys:
        fields = runs[0]["rows"][k].keys()
        out[k] = {f: statistics.median(r["rows"][k][f] for r in runs) for f in fields
                  if all(r["rows"][k][f] is not None for r in runs)}
    return out


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Needs root: each data directory is an ext4 on a loop device.")
    ap.add_argument("--runs", type=int, default=3, help="runs; the table shows medians (default 3)")
    ap.add_argument("--minutes", type=float, default=10.0, help="measured window per run (default 10)")
    ap.add_argument("--intervals", default="30,10", help="collection intervals in seconds (default 30,10)")
    ap.add_argument("--upload-interval", type=float, default=None,
                    help="our upload_interval in seconds (default: the agent's default)")
    ap.add_argument("--commit-interval", type=float, default=None,
                    help="our storage.commit_interval in seconds (default: the agent's default)")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds between READY and the window")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run of about a minute: 1 run, 0.4-min window, intervals 10,5, upload every 5 s, "
                         "commit every 5 s (the default 2m would write nothing in the window)")
    ap.add_argument("--dir", default="/var/tmp", help="where images and logs go (default /var/tmp)")
    ap.add_argument("--block-size", type=int, default=BLOCK_SIZE, choices=(1024, 2048, 4096),
                    help=f"ext4 block size of every image (default {BLOCK_SIZE}, what a card's data partition "
                         "gets; runs before 2026-12-08 03:00 UTC had mke2fs's 1024 for a 256 MB image)")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.minutes, args.intervals, args.warmup = 1, 0.4, "10,5", 3.0
        args.upload_interval = args.upload_interval or 5.0
        args.commit_interval = args.commit_interval or 5.0
    try:
        args.intervals = [float(x) for x in args.intervals.split(",")]
    except ValueError:
        ap.error(f"--intervals: not a comma-separated list of seconds: {args.intervals!r}")
    if args.runs < 1 or args.minutes <= 0 or not args.intervals or min(args.intervals) <= 0:
        ap.error("--runs, --minutes and --intervals must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "PYTHONPATH=app:. python tests/bench/bench_peers.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    started = datetime.now(timezone.utc)
    runs = []
    try:
        compile_like_the_deb()
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-peers-") as tmp:
            work = Path(tmp)
            for i in range(args.runs):
                rdir = work / f"run{i + 1}"
                rdir.mkdir()
                # A VictoriaMetrics per run: one run's series never count in another's.
                with VictoriaMetrics(rdir / "vm") as vm, ExitStack() as es:
                    run = Run(rdir, args, vm)
                    run.build(es)
                    try:
                        runs.append(run.measure())
                    except requests.RequestException as e:
                        state = "running" if vm.proc and vm.proc.poll() is None else (
                            f"exited with {vm.proc.returncode if vm.proc else '?'}")
                        raise VMError(f"run {i + 1}: VictoriaMetrics did not answer ({e.__class__.__name__}); "
                                      f"it is {state}; log tail:\n{vm.log_tail()}") from None
                print(f"run {i + 1}/{args.runs} done ({runs[-1]['window_s']:.0f} s window)", file=sys.stderr)
    except (LoopFsError, StackError, VMError) as e:
        print(f"bench_peers: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_peers: interrupted; everything set up was torn down", file=sys.stderr)
        return 1
    print(render(median_rows(runs), args, command, started, machine_line()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
