"""Drain benchmark: a spool of 1,000,000 samples (300 series per batch) into a local VictoriaMetrics.

    python tests/bench/bench_drain.py                      # bench settings (large requests)
    python tests/bench/bench_drain.py --batch-size 2500 --chunk-size 50   # the shipped defaults
    python tests/bench/bench_drain.py --levels             # gzip levels compared on one body

Measures the uploader's CPU time (time.process_time of this process while ``Uploader.drain``
runs: spool reads, validation, JSON, gzip, HTTP; VictoriaMetrics is a separate process) and
wall time, the bytes on the wire per sample, and checks the count in VictoriaMetrics after
``/internal/force_flush``. Targets (task brief): >= 100,000 samples/s on one core and
<= 6 bytes per sample. Exit status 1 when a target or the count check fails.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2] / "app"), str(HERE.parents[2])]

from belabox_metrics import config  # noqa: E402
from belabox_metrics.health.registry import Registry  # noqa: E402
from belabox_metrics.health.selfmetrics import SelfMetrics  # noqa: E402
from belabox_metrics.platform.token_file import TokenSource  # noqa: E402
from belabox_metrics.samples import Batch  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from belabox_metrics.upload.uploader import Uploader  # noqa: E402
from belabox_metrics.upload.wire import Encoder, gzip_bytes, whole  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402
from tests.support.vm import VictoriaMetrics  # noqa: E402

TARGET_RATE = 100_000
TARGET_BYTES = 6.0


def fill_spool(spool: Spool, total: int) -> int:
    """Batches of the shared 300-series generator (tests/support/spoolgen.py), whose counters,
    gauges and temperatures move like a BELABOX's: harder to compress than a synthetic ramp."""
    gen = BatchGen(seed=7)
    n = b = 0
    while n < total:
        batch = gen.batch()
        if n + len(batch) > total:
            batch = Batch(batch.samples[:total - n], batch.wall_ms, batch.boot_id, batch.boottime_ns, True)
        spool.append(batch)
        n += len(batch)
        b += 1
        if b % 500 == 0:
            spool.flush()
    spool.flush()
    return b


def compare_levels(spool: Spool, batch_size: int, chunk_size: int) -> None:
    slices = spool.take_oldest(batch_size)
    enc = Encoder("bench-device", {"fleet": "bench"}, chunk_size)
    raw = ("\n".join(enc.lines([whole(s) for s in slices])) + "\n").encode()
    n = sum(len(s.samples) for s in slices)
    print(f"gzip levels on one body of {n} samples ({len(raw) / n:.1f} raw bytes/sample):")
    for level in (1, 2, 3, 4, 5, 6, 9):
        t0 = time.process_time()
        for _ in range(5):
            data = gzip_bytes(raw, level)
        cpu = (time.process_time() - t0) / 5
        print(f"  level {level}: {len(data) / n:5.2f} B/sample, {cpu * 1e6 / n:5.2f} µs/sample")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=50_000, help="remote.batch_size for the run")
    ap.add_argument("--chunk-size", type=int, default=1_000, help="remote.chunk_size for the run")
    ap.add_argument("--levels", action="store_true", help="compare gzip levels and exit")
    ap.add_argument("--workdir", help="keep files here instead of a temporary directory")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        spool = Spool.open(str(work / "metrics.db"), config.StorageConfig(max_size_mb=1024))
        t0 = time.perf_counter()
        batches = fill_spool(spool, args.samples)
        pending = spool.stats().pending_samples
        print(f"spool: {pending} samples in {batches} batches, filled in {time.perf_counter() - t0:.1f}s, "
              f"{sum(f.stat().st_size for f in work.glob('metrics.db*')) / 1e6:.1f} MB on disk")
        if args.levels:
            compare_levels(spool, args.batch_size, args.chunk_size)
            return 0
        with VictoriaMetrics(work / "vm") as vm:
            cfg = config.from_mapping({"remote": {
                "url": vm.import_url, "batch_size": args.batch_size, "chunk_size": args.chunk_size,
                "max_bytes_per_second": 0, "extra_labels": {"fleet": "bench"}}}, environ={})
            sm = SelfMetrics()
            up = Uploader(cfg, spool, Registry(), sm, device_id="bench-device", token=TokenSource(cfg, {}))
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            cpu0, wall_t0 = time.process_time(), time.perf_counter()
            res = up.drain()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall_t0
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            vm.force_flush()
            stored = vm.count_samples('{device_id="bench-device"}')
        ok = res.ok and res.sent_samples == pending and stored == pending
        rate_cpu = res.sent_samples / cpu if cpu else float("inf")
        rate_wall = res.sent_samples / wall if wall else float("inf")
        bps = res.wire_bytes / max(1, res.sent_samples)
        print(f"batch_size={args.batch_size} chunk_size={args.chunk_size}: {res.requests} requests, "
              f"{res.sent_samples} samples, {res.wire_bytes / 1e6:.2f} MB on the wire")
        print(f"uploader CPU  {cpu:6.2f} s  -> {rate_cpu:10,.0f} samples/s  "
              f"({rate_cpu / TARGET_RATE:.2f}x the {TARGET_RATE:,}/s target)  "
              f"[user {ru1.ru_utime - ru0.ru_utime:.2f} s, sys {ru1.ru_stime - ru0.ru_stime:.2f} s]")
        print(f"wall          {wall:6.2f} s  -> {rate_wall:10,.0f} samples/s (VictoriaMetrics included)")
        print(f"wire          {bps:6.2f} B/sample ({bps / TARGET_BYTES:.2f}x the {TARGET_BYTES:g} B target)")
        print(f"in VictoriaMetrics after force_flush: {stored} of {pending} "
              f"({'OK' if stored == pending else 'MISMATCH'})")
        spool.close()
        if not ok:
            print(f"FAILED: {res.error or 'count mismatch'}")
            return 1
        if rate_cpu < TARGET_RATE or bps > TARGET_BYTES:
            print("BELOW TARGET")
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
