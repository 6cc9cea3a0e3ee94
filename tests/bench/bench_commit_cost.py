"""What one spool commit costs the card, at the block layer, when the uplink is down.

    scripts/bench commit_cost [--commits 10] [--gap 45] [--block-size 4096]

With the uplink down every ``storage.commit_interval`` writes the batches collected meanwhile,
and on flash the cost is mostly fixed per commit: whole filesystem blocks for a few KB of WAL
frames, the ext4 journal's own blocks, and block allocation while the WAL file still grows (its
first hour; after the first checkpoint later commits overwrite its blocks). bench_peers measures
the agent as a whole in one window; this isolates the commit, so that the default interval can
be chosen from a measured cost per commit rather than from a guess.

Each variant is a real Spool on its own ext4 on a loop device (tests/bench/loopfs.py), all fed
the same realistic batches (300 series, tests/support/spoolgen.py) side by side:

- ``growing``: a fresh spool, whose WAL grows with every commit;
- ``reused``: the WAL grown once and checkpointed (RESTART), as after the agent's first hour;
- ``reused, lazytime``: the same on a filesystem mounted with lazytime;
- ``reused, N batches``: commits of 3 and 5 minutes of 30-s batches.

Commits are ``--gap`` seconds apart, longer than the kernel's dirty_expire (30 s) plus a journal
commit (5 s), so that each one's writeback and journal are its own, as with the agent's 2-minute
commits; a sync at the end of each gap counts what a shorter gap left unwritten (with a short gap
the kernel then writes a commit's data and journal together, which costs less than on a device).
The last step checkpoints each reused WAL, which copies its pages into the main file
once: that cost is reported per commit's worth of data. Needs root.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve()
for p in (str(HERE.parents[2] / "app"), str(HERE.parents[2])):
    if p not in sys.path:
        sys.path.insert(0, p)

from belabox_metrics.config import StorageConfig  # noqa: E402
from belabox_metrics.spool.store import Spool  # noqa: E402
from tests.bench.loopfs import BLOCK_SIZE, SECTOR, LoopFs  # noqa: E402
from tests.support.spoolgen import BatchGen  # noqa: E402

DAY_S = 86_400
BATCH_S = 30.0  # the default collection interval: batches per commit = commit_interval / 30 s
GROW_BATCHES = 400  # how much the reused variants' WAL holds before its checkpoint (about 1 MB)


@dataclass
class Variant:
    name: str
    batches: int  # per commit
    options: str = ""
    reused: bool = True
    sectors: list[int] = field(default_factory=list)  # per commit
    checkpoint: int = 0  # sectors of the final checkpoint
    fs: LoopFs | None = None
    spool: Spool | None = None
    gen: BatchGen | None = None

    @property
    def commit_interval_s(self) -> float:
        return self.batches * BATCH_S


def variants() -> list[Variant]:
    return [Variant("growing", 4, reused=False), Variant("reused", 4), Variant("reused, lazytime", 4, "lazytime"),
            Variant("reused, 6 batches", 6), Variant("reused, 10 batches", 10)]


def setup(v: Variant, work: Path, block_size: int, es: ExitStack) -> None:
    tag = v.name.replace(", ", "-").replace(" ", "")
    v.fs = LoopFs(work / f"{tag}.img", work / tag, v.options, block_size=block_size)
    es.callback(v.fs.close)
    v.fs.open()
    # commit_interval 0: every flush() is a commit (the agent's loop decides when; here the bench does).
    v.spool = Spool.open(str(v.fs.mountpoint / "metrics.db"), StorageConfig(commit_interval=0.0))
    es.callback(v.spool.close)
    v.gen = BatchGen(seed=3)
    if v.reused:
        for _ in range(GROW_BATCHES):
            v.spool.append(v.gen.batch())
        v.spool.flush()
        checkpoint(v.spool)


_AHEAD = itertools.count(1)


def checkpoint(sp: Spool) -> None:
    # maintain() checkpoints once wal_checkpoint_interval has passed since the last one: a time
    # ever further ahead makes it due now, through the agent's own code (RESTART, keeping the
    # WAL's blocks).
    sp.maintain(time.monotonic() + 10 * DAY_S * next(_AHEAD))


def run(vs: list[Variant], commits: int, gap: float) -> None:
    os.sync()
    time.sleep(min(gap, 6.0))  # the set-up's journal commit is not the first commit's
    before = [v.fs.sectors_written() for v in vs]
    for _ in range(commits):
        for v in vs:
            for _ in range(v.batches):
                v.spool.append(v.gen.batch())
            v.spool.flush()
        time.sleep(gap)
        os.sync()  # after a 45-s gap nothing is left to write; a short --gap would count nothing
        after = [v.fs.sectors_written() for v in vs]
        for v, b, a in zip(vs, before, after, strict=True):
            v.sectors.append(a - b)
        before = after
    for v in vs:
        if v.reused:
            checkpoint(v.spool)
    time.sleep(gap)
    os.sync()
    for v, b in zip(vs, before, strict=True):
        v.checkpoint = v.fs.sectors_written() - b if v.reused else 0


def report(vs: list[Variant], commits: int, gap: float, block_size: int) -> str:
    lines = [f"{commits} commits {gap:g} s apart, ext4 with {block_size}-byte blocks, sectors at the block layer",
             "", f"  {'variant':22s} {'KB/commit':>10s} {'+checkpoint':>12s} {'interval':>9s} {'MB/day':>8s} "
             f"{'vs reused':>9s}"]
    rows = []
    for v in vs:
        per = statistics.median(v.sectors[1:] or v.sectors) * SECTOR / 1024  # the first may carry set-up
        ckpt = v.checkpoint * SECTOR / 1024 / commits
        per_day = DAY_S / v.commit_interval_s
        rows.append((v, per, ckpt, (per + ckpt) * 1024 * per_day / 1e6))
    base = next(mb for v, _, _, mb in rows if v.name == "reused") or 1.0
    for v, per, ckpt, mb in rows:
        lines.append(f"  {v.name:22s} {per:10.1f} {ckpt:12.1f} {v.commit_interval_s / 60:8.0f}m {mb:8.2f} "
                     f"{mb / base:8.2f}x")
    lines += ["", "MB/day = (median KB per commit + checkpoint KB per commit's data) x commits a day at that "
              "interval (30-s batches); history rows and the uplink-up case are not in it."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Needs root (loop devices).")
    ap.add_argument("--commits", type=int, default=10, help="commits per variant (default 10)")
    ap.add_argument("--gap", type=float, default=45.0,
                    help="seconds between commits (default 45: past dirty_expire and a journal commit)")
    ap.add_argument("--block-size", type=int, default=BLOCK_SIZE, choices=(1024, 2048, 4096),
                    help=f"ext4 block size (default {BLOCK_SIZE}, a card's data partition)")
    ap.add_argument("--dir", default="/var/tmp", help="where the images go (default /var/tmp)")
    args = ap.parse_args(argv)
    if args.commits < 2 or args.gap <= 0:
        ap.error("--commits must be at least 2 and --gap positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    vs = variants()
    with tempfile.TemporaryDirectory(prefix="bench-commit-", dir=args.dir) as tmp, ExitStack() as es:
        for v in vs:
            setup(v, Path(tmp), args.block_size, es)
        run(vs, args.commits, args.gap)
        print(report(vs, args.commits, args.gap, args.block_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
