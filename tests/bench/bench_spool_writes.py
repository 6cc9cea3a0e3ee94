"""Flash wear of the spool: bytes written per day, ours against a one-row-per-sample layout.

Run: ``python tests/bench/bench_spool_writes.py [--cycles 600] [--procfs /proc]``

Both layouts get the same accelerated day: 300 series collected every 10 s (an injected
clock), committed every storage.commit_interval, uploaded and acknowledged every 60 s. Bytes
come from ``<procfs>/self/io`` ``write_bytes``: what this process sent towards the block
device, including SQLite's WAL, checkpoints and the -shm index.

The kernel counts a page cache page once per clean-to-dirty transition, and an accelerated
run would let pages stay dirty across many simulated cycles. So every simulated writeback
period the files are fsync'ed: 30 s is the kernel's default dirty_expire_centisecs (what a
device does); 10 s means every commit reaches the flash on its own (the worst case).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for p in (str(REPO / "app"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from belabox_metrics.config import StorageConfig  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402

DAY_S = 86_400
START = 1000.0  # monotonic seconds at the start of a simulated run
TARGET_MB_PER_DAY = 60
# Simulated seconds between writebacks: the kernel's default dirty_expire_centisecs (30 s) first,
# then the worst case of every 10-s commit reaching the flash on its own.
WRITEBACK_S = (30.0, 10.0)


def write_bytes(procfs: str) -> int:
    with open(os.path.join(procfs, "self", "io")) as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError(f"{procfs}/self/io has no write_bytes (kernel without task IO accounting?)")


def _sync(paths: list[str]) -> None:
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class OurSpool:
    name = "spool (row per batch)"

    def __init__(self, path: str, commit_interval: float):
        self.path = path
        # The simulated clock starts at START; the spool must share it or it never sees a
        # commit_interval pass.
        self.spool = Spool.open(path, StorageConfig(commit_interval=commit_interval), clock=lambda: START)

    commits = 0

    def files(self) -> list[str]:
        return [self.path, self.path + "-wal", self.path + "-shm"]

    def cycle(self, now: float, batch) -> None:
        self.spool.append(batch)
        self.commits += self.spool.maybe_commit(now) > 0
        self.spool.maintain(now)

    def upload(self) -> int:
        n = 0
        while sl := self.spool.take_oldest(2500):
            self.spool.ack(sl)
            n += sum(len(s.samples) for s in sl)
        return n

    def close(self) -> None:
        self.spool.close()


class SharedLockSpool(OurSpool):
    """Our spool with SQLite's default shared locking: the WAL index lives in an mmap'd -shm file.
    Kept to show why the spool holds its file exclusively."""

    name = "spool, shared -shm index"

    def __init__(self, path: str, commit_interval: float):
        from belabox_metrics.spool import opening as store  # Spool.open's configure lives there

        real = store.configure

        class NoExclusive:
            def __init__(self, conn):
                self.conn = conn

            def execute(self, sql, *args):
                if "locking_mode" in sql:
                    sql = "PRAGMA locking_mode"
                return self.conn.execute(sql, *args)

        store.configure = lambda conn, budget: real(NoExclusive(conn), budget)
        try:
            super().__init__(path, commit_interval)
        finally:
            store.configure = real


class RowPerSample:
    """tidewatch's layout (upstream.md §3.2): a row per sample, six indexes, a sha256 dedup key,
    one transaction per batch, uploaded rows flagged (tidewatch never deletes them)."""

    name = "row per sample + indexes"

    def __init__(self, path: str, commit_interval: float):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "temp_store=MEMORY"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.executescript("""
            CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp_ms INTEGER NOT NULL,
                metric_name TEXT NOT NULL, metric_value REAL, device_id TEXT,
                uploaded INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL DEFAULT 1, session_id TEXT,
                dedup_key TEXT, tags_json TEXT, value_text TEXT, value_type INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX idx_timestamp ON metrics(timestamp_ms);
            CREATE INDEX idx_name_time ON metrics(metric_name, timestamp_ms);
            CREATE INDEX idx_device_time ON metrics(device_id, timestamp_ms);
            CREATE INDEX idx_name_dev_time ON metrics(metric_name, device_id, timestamp_ms);
            CREATE INDEX idx_uploaded ON metrics(uploaded, timestamp_ms);
            CREATE UNIQUE INDEX idx_dedup_key ON metrics(dedup_key);
        """)
        self.session = 0

    def files(self) -> list[str]:
        return [self.path, self.path + "-wal", self.path + "-shm"]

    def cycle(self, now: float, batch) -> None:
        self.session += 1
        rows = []
        for s in batch.resolved():
            tags = json.dumps(dict(s.labels), sort_keys=True, separators=(",", ":")) if s.labels else ""
            key = hashlib.sha256(json.dumps({"name": s.name, "timestamp_ms": s.ts_ms, "device_id": "dev",
                                             "tags": dict(s.labels), "value_type": 0},
                                            separators=(",", ":")).encode()).hexdigest()
            rows.append((s.ts_ms, s.name, s.value, "dev", f"session_{self.session}", key, tags))
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO metrics (timestamp_ms, metric_name, metric_value, device_id, session_id, dedup_key,"
            " tags_json, value_text) VALUES (?, ?, ?, ?, ?, ?, ?, '') ON CONFLICT (dedup_key) DO NOTHING", rows)
        self.conn.execute("COMMIT")

    def upload(self) -> int:
        n = 0
        while True:
            ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM metrics WHERE uploaded = 0 AND value_type = 0 "
                "ORDER BY priority DESC, timestamp_ms ASC LIMIT 2500")]
            if not ids:
                return n
            self.conn.execute("BEGIN")
            self.conn.execute(f"UPDATE metrics SET uploaded = 1 WHERE id IN ({','.join('?' * len(ids))})", ids)
            self.conn.execute("COMMIT")
            n += len(ids)

    def close(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def run_layout(cls, workdir: str, cycles: int, procfs: str, writeback_s: float,
               interval_s: float = 10.0, upload_s: float = 60.0, commit_s: float = 10.0) -> dict:
    path = os.path.join(workdir, cls.__name__ + ".db")
    layout = cls(path, commit_s)
    gen = BatchGen(seed=7)
    before = write_bytes(procfs)
    t0 = time.perf_counter()
    uploaded = 0
    now = START
    next_upload, next_sync = now + upload_s, now + writeback_s
    for _ in range(cycles):
        now += interval_s
        layout.cycle(now, gen.batch())
        if now >= next_upload:
            uploaded += layout.upload()
            next_upload += upload_s
        if now >= next_sync:
            _sync(layout.files())
            next_sync += writeback_s
    _sync(layout.files())
    written = write_bytes(procfs) - before
    elapsed = time.perf_counter() - t0
    layout.close()
    simulated = cycles * interval_s
    return {"name": cls.name, "written": written, "simulated_s": simulated, "uploaded": uploaded,
            "mb_day": written / simulated * DAY_S / 1e6, "cpu_ms_per_cycle": elapsed / cycles * 1000}


def decode_throughput(workdir: str, samples: int = 1_000_000) -> dict:
    """take_oldest + ack over a spool of `samples` samples, and the decode alone (iter_pending)."""
    path = os.path.join(workdir, "decode.db")
    sp = Spool.open(path, StorageConfig())
    gen = BatchGen(seed=3)
    for _ in range(-(-samples // 300)):
        sp.append(gen.batch())
    sp.flush()
    t0 = time.perf_counter()
    n = sum(len(s.samples) for s in sp.iter_pending())
    decode = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    taken = 0
    while sl := sp.take_oldest(2500):
        sp.ack(sl)
        taken += sum(len(s.samples) for s in sl)
    take_ack = taken / (time.perf_counter() - t0)
    sp.close()
    return {"samples": n, "decode_per_s": decode, "take_ack_per_s": take_ack}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=600, help="10-s collection cycles to simulate")
    ap.add_argument("--procfs", default="/proc")
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temp dir on /var/tmp)")
    ap.add_argument("--decode-samples", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    layouts = (OurSpool, SharedLockSpool, RowPerSample)
    with tempfile.TemporaryDirectory(dir=args.dir or "/var/tmp", prefix="bench-spool-") as work:
        results = {}
        for writeback in WRITEBACK_S:
            for cls in layouts:
                results[writeback, cls] = run_layout(cls, work, args.cycles, args.procfs, writeback)
                for f in Path(work).glob("*.db*"):
                    f.unlink()
        dec = decode_throughput(work, args.decode_samples)
    print(f"spool writes: 300 series every 10 s, commit every 10 s, upload every 60 s, "
          f"{args.cycles} cycles ({args.cycles * 10 / 3600:.1f} h simulated)")
    print(f"{'writeback':>9}  {'layout':<28} {'MB/day':>9} {'vs ours':>8} {'ms/cycle':>9}")
    for writeback in WRITEBACK_S:
        ours = results[writeback, OurSpool]["mb_day"]
        for cls in layouts:
            r = results[writeback, cls]
            print(f"{writeback:>8.0f}s  {r['name']:<28} {r['mb_day']:>9.1f} {r['mb_day'] / ours:>7.1f}x "
                  f"{r['cpu_ms_per_cycle']:>9.2f}")
    headline = results[WRITEBACK_S[0], OurSpool]["mb_day"]
    ok = headline <= TARGET_MB_PER_DAY
    print(f"target: <= {TARGET_MB_PER_DAY} MB/day at the kernel's default writeback (30 s): "
          f"{headline:.1f}, {'met' if ok else 'MISSED'}; 10 s = every commit reaches the flash on its own")
    print(f"decode: {dec['decode_per_s']:,.0f} samples/s (iter_pending), "
          f"{dec['take_ack_per_s']:,.0f} samples/s (take_oldest + ack) over {dec['samples']:,} samples")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
