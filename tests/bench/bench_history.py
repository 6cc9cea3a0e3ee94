"""`metrics-collector history --since 24h` on a full 64 MB spool: wall time and extra RSS.

    python tests/bench/bench_history.py [--keep DIR]

Two spools of the shared 300-series batches (tests/support/spoolgen.py) at a 10 s interval:

- full:    64 MB of pending batches (the uplink was down for days): no history rows survive
           (history gives way to pending), so the whole day is read from the batches;
- history: the normal case, uploads working: 24 h of history rows (one per 10 min) and the
           last 10 minutes pending.

Each is read by the real CLI in a child process (agent stopped: read-only spool), side by side
with ``history --since 1m`` on the same spool (same imports and open, almost no data) as the
baseline for RSS; ``--json`` and ``--html`` are timed too. Targets (issue 15): <= 2 s and
<= 30 MB extra RSS for the screen. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2] / "app"), str(HERE.parents[2])]

from belabox_metrics.config import StorageConfig  # noqa: E402
from belabox_metrics.samples import Batch  # noqa: E402
from belabox_metrics.spool.history import persist as h  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from tests.support.cli import cli_argv, cli_env  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402

STEP_MS = 10_000
DAY_BATCHES = 86400_000 // STEP_MS
TARGET_S, TARGET_MB = 2.0, 30.0


def _batches(now_ms: int, count: int, seed: int):
    gen = BatchGen(seed=seed)
    for k in range(count):
        b = gen.batch()
        wall = now_ms - (count - k) * STEP_MS
        yield Batch(b.samples, wall, b.boot_id, k * STEP_MS * 1_000_000, True)


def build_full(path: str, now_ms: int) -> dict:
    sp = Spool.open(path, StorageConfig(max_size_mb=64, commit_interval=3600.0))
    # Eight days at 10 s: more than 64 MB holds, so the oldest go and the file ends full.
    for n, b in enumerate(_batches(now_ms, 8 * DAY_BATCHES, 7), 1):
        sp.append(b)
        if n % 500 == 0:
            sp.flush()
    sp.flush()
    st = sp.stats()
    sp.close()
    return {"pending_batches": st.pending_batches, "dropped": dict(st.dropped)}


def build_history(path: str, now_ms: int) -> dict:
    sp = Spool.open(path, StorageConfig(max_size_mb=64, commit_interval=3600.0))
    chunk, rows = h.ChunkBuilder(), 0
    per_chunk = int(h.RIDE_AFTER * 1000 // STEP_MS)  # the most rows a day gets: every commit-carried write
    last10 = []
    for k, b in enumerate(_batches(now_ms, DAY_BATCHES + per_chunk, 8)):
        if k >= DAY_BATCHES:
            last10.append(b)
            continue
        chunk.add(b)
        if len(chunk) >= per_chunk:
            start, end, blob = chunk.encode()
            with sp.history_db() as conn:
                h.write_chunk(conn, start, end, blob, 0)
            chunk.reset()
            rows += 1
    for b in last10:
        sp.append(b)
    sp.flush()
    with sp.history_db() as conn:
        hist = conn.execute("SELECT count(*), sum(length(data)) FROM history").fetchone()
    sp.close()
    return {"history_rows": hist[0], "history_bytes": hist[1], "pending_batches": len(last10)}


def run(config: str, *args: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, output bytes) of one CLI run in a child (wait4: that child's own)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cli_argv("history", "--config", config, *args), stdout=out, stderr=err,
                             env=cli_env({"COLUMNS": "80", "LINES": "24"}))
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"history {' '.join(args)}: exit {p.returncode}: {err.read().decode()[-500:]}")
        return dt, usage.ru_maxrss / 1024, out.tell()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="build the spools here (reused when present)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-history-"))
    now_ms = int(time.time() * 1000)
    ok = True
    for name, build in (("full", build_full), ("history", build_history)):
        db = work / name / "metrics.db"
        cfg = work / f"{name}.yaml"
        cfg.write_text(f"device_id: bench\nstorage:\n  path: {db}\n  max_size_mb: 64\nhealth:\n  enabled: false\n")
        if not db.exists():
            t = time.perf_counter()
            facts = build(str(db), now_ms)
            print(f"{name}: built in {time.perf_counter() - t:.0f} s: {facts}")
        size = os.path.getsize(db) / 2**20
        base = run(str(cfg), "--since", "1m")
        screen = run(str(cfg), "--since", "24h")
        html = run(str(cfg), "--since", "24h", "--html", str(work / f"{name}.html"))
        js = run(str(cfg), "--since", "24h", "--json")
        extra = screen[1] - base[1]
        print(f"{name} spool ({size:.1f} MB):")
        print(f"  baseline  --since 1m      {base[0]:6.2f} s  max RSS {base[1]:6.1f} MB")
        print(f"  screen    --since 24h     {screen[0]:6.2f} s  max RSS {screen[1]:6.1f} MB  (+{extra:.1f} MB; "
              f"{screen[0] / TARGET_S:.2f} of the {TARGET_S:.0f} s target)")
        print(f"  --html    --since 24h     {html[0]:6.2f} s  ({os.path.getsize(work / f'{name}.html') // 1024} kB)")
        print(f"  --json    --since 24h     {js[0]:6.2f} s  ({js[2] // 1024} kB, all points; RSS after all "
              f"runs {js[1]:.1f} MB)")
        ok &= screen[0] <= TARGET_S and extra <= TARGET_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
