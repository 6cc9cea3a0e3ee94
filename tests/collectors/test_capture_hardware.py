"""scripts/capture-hardware on this machine (a real kernel): the recorded tree gives the same
series as the live system, with identifiers left out."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.collectors.support import REPO, collect_once, env, parse_text


def series(text: str) -> set:
    return {k for k in parse_text(text) if not k[0].startswith("metrics_collector_")}


def test_recorded_tree_reproduces_the_live_host(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts/capture-hardware", tmp_path / "scripts/capture-hardware")
    run = subprocess.run(["sh", str(tmp_path / "scripts/capture-hardware"), "this-host"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tree = tmp_path / "hardware/this-host"
    assert (tree / "RECORDED").read_text().startswith("recorded: ")

    recorded = collect_once(tree)
    live = subprocess.run([sys.executable, "-m", "belabox_metrics", "collect", "--once"], env=env(),
                          capture_output=True, text=True, timeout=60)
    assert recorded.returncode == 0 and live.returncode == 0, recorded.stderr + live.stderr
    got, want = series(recorded.stdout), series(live.stdout)
    assert len(want) > 50
    assert got == want, f"only live: {sorted(want - got)[:10]} only recorded: {sorted(got - want)[:10]}"

    # No serial numbers or UUIDs were read; a second run replaces the first (idempotent).
    assert not [p for p in tree.rglob("*") if "serial" in p.name or "uuid" in p.name]
    again = subprocess.run(["sh", str(tmp_path / "scripts/capture-hardware"), "this-host"], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "hardware/this-host").iterdir()) == ["RECORDED", "ip-addr.json", "proc",
                                                                                    "root", "sys"]


def test_capture_script_passes_shellcheck():
    run = subprocess.run(["shellcheck", str(REPO / "scripts/capture-hardware")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
