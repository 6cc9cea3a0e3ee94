"""The fleet storm benchmark still runs end to end, on 20 boxes for a few seconds (the real run
is `scripts/bench fleet_storm`): real vmauth and VictoriaMetrics, every line of its report there,
the backlog delivered and the steady state near what the boxes should send."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env

BENCH = Path(__file__).resolve().parent / "bench_fleet_storm.py"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_small_storm_drains_and_reports_every_figure():
    p = subprocess.run([sys.executable, str(BENCH), "--devices", "20", "--procs", "2", "--outage", "120",
                        "--backlog-interval", "30", "--upload-interval", "2", "--collection-interval", "2",
                        "--steady", "6", "--timeout", "60"],
                       env=cli_env(), capture_output=True, text=True, timeout=110)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr[-2000:]
    assert "20 boxes in 2 processes, 2,400 backlog samples" in out
    assert re.search(r"drain: all backlog older than t=0 delivered after [\d.]+s", out), out
    steady = float(re.search(r"steady state after the drain: ([\d.]+) requests/s", out).group(1))
    assert 5.0 <= steady <= 12.0, out  # 20 boxes every 2 s: 10 requests/s
    assert re.search(r"storm peak: \d+ requests/s in 1 s .* over 2 s", out), out
    assert re.search(r"the storm's busiest second against it: [\d.]+x", out), out
    assert "within cap" in out, out
