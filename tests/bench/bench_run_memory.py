"""Resident memory of `metrics-collector run`: an empty spool against a 1,000,000-sample backlog.

    python tests/bench/bench_run_memory.py [--samples 1000000] [--seconds 25]

Both agents run the same config against one local VictoriaMetrics; the backlog one drains
its backlog (unthrottled) while collecting. RSS (VmRSS of the process) is sampled every
0.25 s. Targets (issue: the spine): peak RSS under 40 MB, and no growth with the backlog:
the backlog agent's peak within 5 MB of the empty one's. Exit status 1 when a target fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2] / "app"), str(HERE.parents[2])]

from belabox_metrics import config  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from tests.support.agent import AgentProcess  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402
from tests.support.vm import VictoriaMetrics  # noqa: E402

TARGET_RSS_MB = 40.0
TARGET_GROWTH_MB = 5.0


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fill(db: Path, total: int) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    cfg = config.StorageConfig(max_size_mb=512)
    spool = Spool.open(str(db), cfg)
    gen, n = BatchGen(seed=3), 0
    while n < total:
        batch = gen.batch()
        spool.append(batch)
        n += len(batch)
        if n % 30_000 < 300:
            spool.flush()
    spool.close()


def watch(agent: AgentProcess, seconds: float) -> tuple[float, list[float]]:
    series, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        r = rss_mb(agent.proc.pid)
        if r is not None:
            series.append(r)
        time.sleep(0.25)
    return max(series), series


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=25.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        work = Path(tmp)
        backlog_db = work / "backlog" / "data" / "metrics.db"
        t0 = time.monotonic()
        fill(backlog_db, args.samples)
        print(f"spool of {args.samples:,} samples built in {time.monotonic() - t0:.1f}s "
              f"({backlog_db.stat().st_size / 1e6:.1f} MB)")
        with VictoriaMetrics(work / "vm") as vm:
            settings = {"collection_interval": "2s", "upload_interval": "2s",
                        "logging": {"level": "info"},
                        "remote": {"url": vm.import_url, "max_bytes_per_second": 0},
                        "storage": {"max_size_mb": 512}}
            results = {}
            for name in ("empty", "backlog"):
                agent = AgentProcess(work / name, settings, name=name)
                with agent:
                    peak, series = watch(agent, args.seconds)
                    health = agent.health()
                    pending = health["components"]["storage"]["details"]["pending_count"]
                    agent.stop()
                results[name] = peak
                print(f"{name:8s} peak RSS {peak:5.1f} MB  (start {series[0]:.1f}, end {series[-1]:.1f}), "
                      f"pending at the end {pending:,}")
    growth = results["backlog"] - results["empty"]
    ok = max(results.values()) < TARGET_RSS_MB and growth < TARGET_GROWTH_MB
    print(f"backlog/empty peak ratio {results['backlog'] / results['empty']:.2f}; growth {growth:+.1f} MB "
          f"(targets: peak < {TARGET_RSS_MB:.0f} MB, growth < {TARGET_GROWTH_MB:.0f} MB): "
          f"{'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
