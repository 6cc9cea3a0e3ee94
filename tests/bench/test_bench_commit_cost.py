"""The commit-cost benchmark still runs (two commits 3 s apart; the real run is scripts/bench).

It tests the harness, not the figures: every variant is measured at the block layer, a growing
WAL costs more than a reused one (block allocation), and a checkpoint writes something.
"""

from __future__ import annotations

import re

from tests.bench import bench_commit_cost as bench


def test_short_run_measures_every_variant(tmp_path, capsys):
    assert bench.main(["--commits", "2", "--gap", "3", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {m[0].strip(): [float(x) for x in m[1:]] for m in
            re.findall(r"^  (\w[\w, ]+?)\s+([\d.]+)\s+([\d.]+)\s+(\d+)m\s+([\d.]+)\s+([\d.]+)x$", out, re.M)}
    assert set(rows) == {v.name for v in bench.variants()}, out
    assert rows["growing"][0] > rows["reused"][0] > 0, out
    assert rows["reused"][1] > 0 and rows["growing"][1] == 0, out
    assert [rows[n][2] for n in ("reused", "reused, 6 batches", "reused, 10 batches")] == [2, 3, 5]
    assert rows["reused"][4] == 1.0
