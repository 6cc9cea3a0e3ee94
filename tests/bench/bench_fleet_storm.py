"""Fleet reconnect storm: N simulated boxes behind real vmauth and VictoriaMetrics after an outage.

    scripts/bench fleet_storm
    python tests/bench/bench_fleet_storm.py --devices 1000 --procs 4 --aligned

Every box is the agent's real upload path (upload.Uploader with its own SQLite spool,
delivery, wire encoding, transport over boundedhttp, its own kept-alive connection and its
own token), many boxes per process (``--procs`` worker processes share the boxes). A feeder
in each worker appends one collection batch per box per ``--collection-interval``, as the
collectors would. Every spool starts with ``--outage`` seconds of backlog; vmauth is down
while the uploaders start (their cycles fail, data stays spooled), then comes back: t=0.

Boxes start at random phases within one upload interval, as a fleet that booted at different
times; ``--aligned`` starts them all in the same instant (a fleet-wide power cut or upgrade).

Measured: server-side import requests per second (VictoriaMetrics' own
``vm_http_requests_total{path="/api/v1/import"}``, sampled every second), wire bytes per
second (the boxes' ``metrics_collector_uploaded_bytes_total``), the time until no box holds
a sample older than t=0 (drain), and the steady state after the drain. Printed: the peak 1-s
requests/s and the peak averaged over one upload interval, as ratios to the steady state,
and the largest per-box bytes/s against the per-box cap (remote.max_bytes_per_second).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import multiprocessing as mp
import queue
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2] / "app"), str(HERE.parents[2])]

from belabox_metrics import config  # noqa: E402
from belabox_metrics.fleet import vmauth as vmauth_cfg  # noqa: E402
from belabox_metrics.fleet.registry import Device, FleetDir, Settings, new_token  # noqa: E402
from belabox_metrics.health.registry import Registry  # noqa: E402
from belabox_metrics.health.selfmetrics import SelfMetrics  # noqa: E402
from belabox_metrics.platform.token_file import TokenState  # noqa: E402
from belabox_metrics.samples import Batch  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from belabox_metrics.upload.uploader import Uploader  # noqa: E402
from tests.fleet.stack import Vmauth  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402
from tests.support.vm import VictoriaMetrics, free_port  # noqa: E402

BYTES = "metrics_collector_uploaded_bytes_total"


class FixedToken:
    def __init__(self, token: str):
        self.state = TokenState(token, "bench")

    def get(self) -> TokenState:
        return self.state


class Box:
    def __init__(self, i: int, work: Path, token: str, cfg, series: int):
        self.id = f"box-{i:04d}"
        self.gen = BatchGen(seed=i)
        self.series = series
        self.spool = Spool.open(str(work / f"{self.id}.db"), config.StorageConfig(max_size_mb=64))
        self.sm = SelfMetrics()
        self.up = Uploader(cfg, self.spool, Registry(), self.sm, device_id=self.id, token=FixedToken(token))

    def collect(self, wall_ms: int) -> None:
        b = self.gen.batch()
        self.spool.append(Batch(b.samples[:self.series], wall_ms, b.boot_id, b.boottime_ns, True))


def worker(ids, tokens, url, work, args, ready, go_at, back_ms, stop, reports) -> None:
    """One process's boxes: fill, start at their phases, report every second until stopped."""
    logging.basicConfig(level=logging.ERROR)  # each failed attempt of 1,000 boxes is a warning
    cfg = config.from_mapping({"upload_interval": f"{args.upload_interval:g}s", "remote": {
        "url": url, "max_bytes_per_second": args.cap, "retry": {"max_attempts": 2, "initial_backoff": "1s"}}},
        environ={})
    boxes = [Box(i, Path(work), tok, cfg, args.series) for i, tok in zip(ids, tokens, strict=True)]
    now_ms = int(time.time() * 1000)
    step_ms = int(args.backlog_interval * 1000)
    for b in boxes:
        for k in range(int(args.outage / args.backlog_interval), 0, -1):
            b.collect(now_ms - k * step_ms)
        b.spool.flush()
    ready.put(sum(b.spool.stats().pending_samples for b in boxes))
    # 250 boxes in one heap: a full collection of it stops all of them at once and they then
    # send together, which real boxes (each its own small heap) never do. Set-up objects stay put.
    gc.freeze()
    while go_at.value == 0:
        time.sleep(0.05)

    rng = random.Random(ids[0])
    phased = sorted(((0.0 if args.aligned else rng.uniform(0, args.upload_interval), b) for b in boxes),
                    key=lambda x: x[0])

    def feeder():
        # Each box collects at its own phase, as real boxes do, and commits like the agent's loop
        # (held in memory until commit_interval). Collecting all boxes of a process in one instant
        # was a CPU burst every interval that bunched the uploads right after it.
        ci = args.collection_interval
        feed = sorted(((off % ci, b) for off, b in phased), key=lambda x: x[0])
        k = 0
        while True:
            off, b = feed[k % len(feed)]
            due = go_at.value + (k // len(feed) + 1) * ci + off
            if stop.wait(max(0.0, due - time.time())):
                return
            b.collect(int(time.time() * 1000))
            b.spool.maybe_commit(time.monotonic())
            k += 1
    threading.Thread(target=feeder, daemon=True).start()
    for off, b in phased:
        time.sleep(max(0.0, go_at.value + off - time.time()))
        b.up.start()
    w = max(1, round(args.upload_interval))
    history: list[tuple[float, list[float]]] = []
    box_peak = 0.0
    while not stop.is_set():
        per_box = [b.sm.value(BYTES) for b in boxes]
        t = time.time()
        history.append((t, per_box))
        if len(history) > w:
            t0, old = history.pop(0)
            box_peak = max(box_peak, max((y - x) / (t - t0) for x, y in zip(old, per_box, strict=True)))
        drained = back_ms.value > 0 and all((b.spool.stats().oldest_wall_ms or 1 << 62) >= back_ms.value
                                            for b in boxes)
        reports.put((ids[0], t, sum(per_box), drained, box_peak))
        stop.wait(max(0.0, math.ceil(t) + 1 - time.time()))
    for b in boxes:
        b.up.stop(timeout=2, final_upload=False)
    reports.put((ids[0], time.time(), sum(b.sm.value(BYTES) for b in boxes), True, box_peak))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4, help="worker processes sharing the boxes")
    ap.add_argument("--outage", type=float, default=3600, help="seconds of backlog per box at t=0")
    ap.add_argument("--backlog-interval", type=float, default=60, help="collection interval of the backlog")
    ap.add_argument("--collection-interval", type=float, default=10, help="of the feeder after the start")
    ap.add_argument("--upload-interval", type=float, default=10)
    ap.add_argument("--series", type=int, default=30, help="series per collection batch")
    ap.add_argument("--cap", type=int, default=50_000, help="remote.max_bytes_per_second per box")
    ap.add_argument("--down", type=float, default=None, help="seconds vmauth stays down after the start "
                                                             "(default: 1.5 upload intervals)")
    ap.add_argument("--steady", type=float, default=None, help="seconds of steady state after the drain "
                                                               "(default: 6 intervals)")
    ap.add_argument("--aligned", action="store_true", help="all boxes start in the same instant")
    ap.add_argument("--timeout", type=float, default=600, help="give up draining after this long")
    args = ap.parse_args(argv)
    down = args.down if args.down is not None else 1.5 * args.upload_interval
    interval = max(args.upload_interval, args.collection_interval)
    steady_s = args.steady if args.steady is not None else 6 * interval
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 3 fds per box (db, wal, socket)
    ctx = mp.get_context("fork")  # before any thread: the workers inherit only this setup
    go_at, back_ms, stop = ctx.Value("d", 0.0), ctx.Value("d", 0.0), ctx.Event()
    ready, reports = ctx.Queue(), ctx.Queue()

    # tmpfs: 1,000 SQLite spools on a disk spend minutes in fsync before the benchmark begins.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-fleet-", dir=shm) as tmp:
        work = Path(tmp)
        vm = VictoriaMetrics(work / "vm").start()
        vma, procs = None, []
        try:
            listen = f"127.0.0.1:{free_port()}"
            fleet = FleetDir.create(work / "fleet", Settings(vm.base, vm.base, f"http://{listen}", listen))
            tokens = []
            for i in range(args.devices):
                d = Device(f"box-{i:04d}", created=time.time())
                fleet.devices[d.id] = d
                tokens.append(new_token())
                fleet.add_token(d, tokens[-1], "enrolled")
            fleet.save()
            vmauth_cfg.write(fleet)
            t0 = time.perf_counter()
            for p in range(args.procs):
                ids = list(range(p, args.devices, args.procs))
                procs.append(ctx.Process(target=worker, daemon=True, args=(
                    ids, [tokens[i] for i in ids], f"http://{listen}/api/v1/import", str(work), args,
                    ready, go_at, back_ms, stop, reports)))
                procs[-1].start()
            backlog = sum(ready.get(timeout=1800) for _ in procs)
            print(f"{args.devices} boxes in {args.procs} processes, {backlog:,} backlog samples ({args.outage:g}s "
                  f"at {args.backlog_interval:g}s x {args.series} series), spools filled in "
                  f"{time.perf_counter() - t0:.1f}s; upload_interval={args.upload_interval:g}s cap={args.cap} B/s "
                  f"per box; collection every {args.collection_interval:g}s; "
                  f"{'aligned' if args.aligned else 'random'} phases; "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
            go_at.value = time.time() + 0.5
            time.sleep(max(0.0, go_at.value + down - time.time()))
            vma = Vmauth(fleet.path, work / "vmauth.log").start()  # the server comes back: t=0
            t_back = time.time()
            back_ms.value = t_back * 1000

            samples = []  # (t, requests, bytes)
            latest: dict[int, tuple] = {}
            drained_at = None
            while time.time() < t_back + args.timeout:
                try:
                    req = vm.metric("vm_http_requests_total", 'path="/api/v1/import", protocol="vmimport"')
                except requests.RequestException as e:  # a loaded machine: skip this sample
                    print(f"  (t={time.time() - t_back:.0f}s: VictoriaMetrics /metrics: {e.__class__.__name__})")
                    req = None
                try:
                    while True:
                        r = reports.get_nowait()
                        latest[r[0]] = r
                except queue.Empty:
                    pass
                t = time.time() - t_back
                if req is not None and len(latest) == len(procs):
                    samples.append((t, req, sum(r[2] for r in latest.values())))
                if drained_at is None and len(latest) == len(procs) and all(r[3] for r in latest.values()):
                    drained_at = t
                if drained_at is not None and t >= drained_at + steady_s:
                    break
                time.sleep(max(0.0, t_back + math.ceil(t + 1e-3) - time.time()))
        finally:
            stop.set()
            box_peak = 0.0
            deadline = time.time() + 60
            # Keep reading while the workers stop: a worker blocked on a full queue never exits.
            while any(p.is_alive() for p in procs) and time.time() < deadline:
                try:
                    box_peak = max(box_peak, reports.get(timeout=0.5)[4])
                except queue.Empty:
                    pass
            try:
                while True:
                    box_peak = max(box_peak, reports.get_nowait()[4])
            except queue.Empty:
                pass
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
            if vma is not None:
                vma.stop()
            vm.stop()

    if drained_at is None:
        print(f"NOT DRAINED within {args.timeout:g}s")
        return 1
    rates = [(b[0], (b[1] - a[1]) / (b[0] - a[0]), (b[2] - a[2]) / (b[0] - a[0]))
             for a, b in zip(samples, samples[1:], strict=False)]
    storm = [r for r in rates if r[0] <= drained_at + interval]
    steady = [r for r in rates if r[0] > drained_at + interval]
    w = max(1, round(args.upload_interval))
    steady_rps = sum(r[1] for r in steady) / max(1, len(steady))
    steady_bps = sum(r[2] for r in steady) / max(1, len(steady))
    peak_rps = max(r[1] for r in storm)
    peak_win = max(sum(r[1] for r in storm[i:i + w]) / w for i in range(max(1, len(storm) - w + 1)))
    peak_bps = max(r[2] for r in storm)
    print(f"drain: all backlog older than t=0 delivered after {drained_at:.1f}s "
          f"({backlog / max(drained_at, 1e-9):,.0f} samples/s)")
    print(f"steady state after the drain: {steady_rps:.1f} requests/s, {steady_bps / 1e3:.1f} kB/s "
          f"(expected {args.devices / interval:.1f} requests/s)")
    print(f"storm peak: {peak_rps:.0f} requests/s in 1 s ({peak_rps / max(steady_rps, 1e-9):.2f}x steady), "
          f"{peak_win:.1f} requests/s over {w} s ({peak_win / max(steady_rps, 1e-9):.2f}x steady)")
    if steady:  # the simulator's own noise: the same measure where nothing is storming
        print(f"steady state's busiest second: {max(r[1] for r in steady):.0f} requests/s "
              f"({max(r[1] for r in steady) / max(steady_rps, 1e-9):.2f}x its mean); the storm's busiest second "
              f"against it: {peak_rps / max(r[1] for r in steady):.2f}x")
    top = sorted(storm, key=lambda r: -r[1])[:5]
    print("busiest seconds (t since the server came back: requests/s): "
          + ", ".join(f"t={r[0]:.0f}s: {r[1]:.0f}" for r in sorted(top)))
    print(f"storm peak bytes: {peak_bps / 1e6:.2f} MB/s in 1 s; largest per-box rate over {w} s: "
          f"{box_peak / 1e3:.1f} kB/s (cap {args.cap / 1e3:.1f} kB/s: "
          f"{'within' if box_peak <= args.cap * (1 + 1 / w) else 'OVER'} cap + 1 s burst)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
