"""`collect --once` on every board tree, diffed against a reviewed expected file.

Regenerate after a deliberate change with BELABOX_UPDATE_GOLDEN=1 and review the diff.
Values that come from the host rather than the tree (the clock, statvfs of the tree's
mount points, how long a collector took) are written as HOST.
"""

from __future__ import annotations

import difflib
import json
import os
import re

import pytest

from tests.collectors.support import BOARDS, HARDWARE, collect_once

EXPECTED = os.path.join(os.path.dirname(__file__), "expected")
HOST_DEPENDENT = re.compile(
    r"^(node_time_seconds|node_filesystem_(size|free|avail)_bytes|node_filesystem_files(_free)?"
    r"|metrics_collector_collector_duration_seconds)[ {]")


def normalise(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if HOST_DEPENDENT.match(line):
            line = line.rsplit(" ", 1)[0] + " HOST"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("board", BOARDS)
def test_board_output_matches_expected(board):
    run = collect_once(HARDWARE / board)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr  # every collector healthy on a board tree
    got = normalise(run.stdout)
    path = os.path.join(EXPECTED, f"{board}.prom")
    if os.environ.get("BELABOX_UPDATE_GOLDEN"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(got)
    with open(path, encoding="utf-8") as fh:
        want = fh.read()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), f"expected/{board}.prom",
                                        "collect --once"))
    assert not diff, "output changed (BELABOX_UPDATE_GOLDEN=1 to accept):\n" + diff


def test_json_lines_carry_the_same_series():
    run = collect_once(HARDWARE / "generic", "--json")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    names = {r["name"] for r in rows}
    assert {"node_cpu_seconds_total", "node_network_receive_bytes_total", "node_hwmon_temp_celsius"} <= names
    cpu0_idle = [r for r in rows
                 if r["name"] == "node_cpu_seconds_total" and r["labels"] == {"cpu": "0", "mode": "idle"}]
    assert len(cpu0_idle) == 1 and cpu0_idle[0]["value"] > 0
