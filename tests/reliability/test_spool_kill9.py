"""kill -9 of a process that appends, commits and acknowledges in a loop: after a reopen every
committed batch is there exactly once, and no acknowledged sample comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool.store import Spool

APP = Path(__file__).resolve().parents[2] / "app"

# Batch i holds 10 samples valued i*100 + k. Lines are printed only after the call returned:
#   C i        batch i committed
#   T v v ...  about to acknowledge these values
#   A          ... acknowledged
CHILD = r"""
import sys
from belabox_metrics.config import StorageConfig
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.store import Spool

path, first = sys.argv[1], int(sys.argv[2])
sp = Spool.open(path, StorageConfig(commit_interval=3600.0))
out = sys.stdout
i = first
while True:
    sp.append(Batch(tuple(sample("kill_test", i * 100 + k, {"k": k}) for k in range(10)),
                    1_750_000_000_000 + i, "boot", i, True))
    sp.flush()
    out.write(f"C {i}\n"); out.flush()
    if i % 3 == 0:
        taken = sp.take_oldest(25)
        out.write("T " + " ".join(str(int(s.value)) for sl in taken for s in sl.samples) + "\n"); out.flush()
        sp.ack(taken)
        out.write("A\n"); out.flush()
    i += 1
"""


def run_child_and_kill(path: str, first: int, min_commits: int, rng_delay: float) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(APP))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(first)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while sum(1 for x in lines if x.startswith("C ")) < min_commits:
            line = proc.stdout.readline()
            assert line, f"child died early: {proc.stderr.read()}"
            lines.append(line.rstrip("\n"))
            assert time.monotonic() < deadline, "child too slow"
        time.sleep(rng_delay)  # land the kill anywhere in the loop
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # Not communicate(): it reads the pipe's file descriptor and would skip what readline()
    # already buffered.
    rest, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    lines.extend(x for x in rest.splitlines() if x)  # each line is one write below PIPE_BUF: whole
    return lines


@pytest.mark.timeout(120)
def test_kill9_loses_no_committed_batch_and_resends_no_acknowledged_sample(tmp_path):
    path = str(tmp_path / "metrics.db")
    committed: set[int] = set()
    acked: set[int] = set()
    maybe_acked: set[int] = set()  # printed as taken, killed before the ack was confirmed
    first = 0
    for round_no, delay in enumerate((0.0, 0.003, 0.011, 0.02)):
        lines = run_child_and_kill(path, first, 60, delay)
        taken: list[int] = []
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "C":
                committed.update(int(rest) * 100 + k for k in range(10))
                first = int(rest) + 1
            elif kind == "T":
                taken = [int(v) for v in rest.split()] if rest else []
            elif kind == "A":
                acked.update(taken)
                taken = []
        maybe_acked.update(taken)
        # The batch being committed when the kill landed may or may not be there.
        in_flight = {first * 100 + k for k in range(10)}

        sp = Spool.open(path, StorageConfig())
        values = Counter(int(s.value) for sl in sp.iter_pending() for s in sl.samples)
        sp.close()
        assert max(values.values(), default=1) == 1, f"round {round_no}: a sample came back twice"
        pending = set(values)
        assert not pending & acked, f"round {round_no}: acknowledged samples re-appeared"
        missing = committed - acked - maybe_acked - pending
        assert not missing, f"round {round_no}: committed samples lost: {sorted(missing)[:10]}"
        assert pending <= committed | in_flight, f"round {round_no}: samples nobody committed"
        # What the interrupted ack did is settled now: the next child starts from the spool.
        acked |= maybe_acked - pending
        maybe_acked.clear()
        committed |= pending & in_flight
        first = max(first, max(pending, default=0) // 100 + 1)
    assert len(committed) >= 4 * 60 * 10
