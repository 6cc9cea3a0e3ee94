"""The peers benchmark still runs end to end (its --quick mode; the real run is scripts/bench).

This tests the harness, not performance: every row is there, the numbers are sane, and both
sides were really measured.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.bench import bench_peers as bench
from tests.bench.loopfs import parse_block_stat
from tests.bench.peersreport import MOUNT_VARIANTS, parse_cpu_model, parse_os_name
from tests.bench.peerstack import cpu_seconds, parse_cpu_ticks, parse_vm_hwm_kb, tree_cpu_seconds

MEASURES = ("flash writes, MB/day", "CPU s in the window", "samples delivered per cycle",
            "CPU µs per delivered sample", "peak RSS (VmHWM), MB", "start to READY, s")


def test_a_running_child_counts_before_it_is_reaped():
    """Our agent's `journalctl -f` never ends: cutime alone would leave its CPU out."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
                              "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tree_cpu_seconds(os.getpid()) - cpu_seconds(os.getpid(), True) < 0.25:
            time.sleep(0.05)
        assert tree_cpu_seconds(os.getpid()) - cpu_seconds(os.getpid(), True) >= 0.25
    finally:
        child.kill()
        child.wait()


def test_parsers_read_the_kernel_formats():
    assert parse_block_stat("  134 0 2788 30 18 71 8970 21 0 36 57 2 0 131074 0 5 4\n") == 8970
    with pytest.raises(RuntimeError, match="unexpected"):
        parse_block_stat("1 2 3")
    stat = "42 (python3 (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 4 0 1000 0 0"
    assert parse_cpu_ticks(stat, children=False) == 280
    assert parse_cpu_ticks(stat, children=True) == 290
    assert parse_vm_hwm_kb("Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t   30720 kB\nVmRSS:\t 100 kB\n") == 30720
    assert parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC\n") == "AMD EPYC"
    assert parse_cpu_model("processor\t: 0\nBogoMIPS\t: 48.00\n") == "unknown CPU"
    assert parse_os_name('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == \
        "Debian GNU/Linux 12 (bookworm)"


def _num(cell: str) -> float | None:
    cell = cell.strip()
    return None if cell == "—" else float(cell.replace(",", ""))


@pytest.mark.slow
@pytest.mark.long  # over 40 s: `scripts/test --long` (CI runs it after the suite)
@pytest.mark.timeout(240)
def test_quick_run_prints_every_row_with_both_sides_measured(tmp_path, capsys):
    rc = bench.main(["--quick", "--dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert re.search(r"^- Machine: .+, \d+ cores, kernel ", out, re.M)
    assert "- Command: `PYTHONPATH=app:. python tests/bench/bench_peers.py --quick --dir" in out
    rows = {}
    for scen, measure, ours, peers, ratio in re.findall(
            r"^\| (uplink (?:up|down), every \d+ s) \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$", out, re.M):
        rows[scen, measure] = (_num(ours), _num(peers), _num(ratio))
    scenarios = {f"uplink {link}, every {iv} s" for link in ("up", "down") for iv in (10, 5)}
    assert set(rows) == {(s, m) for s in scenarios for m in MEASURES}
    for (scen, measure), (ours, peers, _) in rows.items():
        delivered = measure.startswith(("samples", "CPU µs"))
        if delivered and "down" in scen:
            assert ours is None and peers is None, (scen, measure)
            continue
        assert ours is not None and peers is not None, (scen, measure)
        assert ours >= 0 and peers >= 0, (scen, measure)
        if measure.startswith(("samples", "peak RSS", "start to READY")):
            assert ours > 0 and peers > 0, (scen, measure)  # both sides really ran and delivered
    assert sum(rows[s, "CPU s in the window"][0] for s in scenarios) > 0
    assert sum(rows[s, "CPU s in the window"][1] for s in scenarios) > 0
    # --quick commits every 5 s (the default 2m would write nothing in 24 s): the block-layer count works.
    assert sum(rows[s, "flash writes, MB/day"][0] for s in scenarios if "down" in s) > 0

    mounts = dict(re.findall(r"^\| ([^|]+?) \| ([\d,]+) \| [\d.]+ \| [^|]+ \|$", out, re.M))
    assert set(mounts) == {"defaults", *MOUNT_VARIANTS, "(control: empty ext4, defaults, no process)"}
    assert all(_num(v) >= 0 for v in mounts.values())


def test_bad_arguments_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--intervals", "thirty"])
    assert e.value.code == 2
    assert "--intervals" in capsys.readouterr().err


def test_profile_counts_self_and_inclusive_samples_per_function():
    from tests.bench.profile_agent import parse_collapsed, short
    raw = ("process 1:\"python\";main (/r/app/belabox_metrics/agent.py);read (/r/app/belabox_metrics/x.py) 3\n"
           "process 1:\"python\";main (/r/app/belabox_metrics/agent.py) 2\n"
           "garbage\n")
    own, incl, total = parse_collapsed(raw)
    main, read = "main (/r/app/belabox_metrics/agent.py)", "read (/r/app/belabox_metrics/x.py)"
    assert total == 5
    assert own == {read: 3, main: 2}
    assert incl == {main: 5, read: 3}
    assert short(read) == "read (belabox_metrics/x.py)"
