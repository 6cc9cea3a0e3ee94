"""Our node_* series are node_exporter 1.5's: same names, same label sets, same values.

Debian's node_exporter runs on the same board tree. Every series we emit under a node_
name must be in its output with identical labels; values must match except where they
depend on the moment (the clock) or on the host (statvfs of the tree's mount points).
"""

from __future__ import annotations

import math
import os

import pytest

from tests.collectors.support import BOARDS, HARDWARE, NODE_EXPORTER, NodeExporter, collect_once, parse_text

# Read at slightly different moments or from the host's disk, not from the tree.
MOMENTARY = {"node_time_seconds": 5.0}
HOST_FS = {"node_filesystem_free_bytes", "node_filesystem_avail_bytes", "node_filesystem_files_free"}


@pytest.mark.parametrize("board", BOARDS)
def test_same_series_as_node_exporter(board, tmp_path):
    assert os.access(NODE_EXPORTER, os.X_OK), f"{NODE_EXPORTER} missing: apt-get install prometheus-node-exporter"
    tree = HARDWARE / board
    (tmp_path / "udev").mkdir()
    with NodeExporter(tree, tmp_path / "udev") as ne:
        theirs = parse_text(ne.scrape())
        run = collect_once(tree)
        theirs_after = parse_text(ne.scrape())
    assert run.returncode == 0, run.stderr
    ours = {k: v for k, v in parse_text(run.stdout).items() if k[0].startswith("node_")}
    assert len(ours) > 150, "too few node_ series: did the tree load?"

    missing = sorted(f"{n}{dict(lab)}" for n, lab in ours if (n, lab) not in theirs)
    assert not missing, "series node_exporter does not have:\n" + "\n".join(missing)

    wrong = []
    for key, value in ours.items():
        name = key[0]
        if name in HOST_FS:
            # The host's disk moves between the reads; bracket our value by theirs.
            lo, hi = sorted((theirs[key], theirs_after[key]))
            if not lo * 0.99 <= value <= hi * 1.01:
                wrong.append((key, value, theirs[key]))
        elif name in MOMENTARY:
            if abs(value - theirs[key]) > MOMENTARY[name]:
                wrong.append((key, value, theirs[key]))
        elif not math.isclose(value, theirs[key], rel_tol=1e-9, abs_tol=1e-9):
            wrong.append((key, value, theirs[key]))
    assert not wrong, "values differ (ours, node_exporter's):\n" + "\n".join(map(str, wrong))
