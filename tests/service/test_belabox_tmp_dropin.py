"""The belabox-tmp.conf drop-in: systemd accepts it, and it binds the host /tmp where the
belabox collector looks first.

Whether a file written to the host /tmp after the service started is seen under the bind
needs a booted systemd; that check belongs to the nspawn boot test (tests/image).
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from belabox_metrics.collectors.belabox import belaui_files

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = "usr/lib/systemd/system"
DROPIN = REPO / "overlays/common" / UNIT_DIR / "metrics-collector.service.d" / "belabox-tmp.conf"
# systemd's own targets and slices, which every unit's default dependencies name.
HOST_UNITS = Path("/lib/systemd/system")

# Used only until the image layer's unit is in this tree: the settings the drop-in relies on.
STAND_IN = """[Unit]
Description=stand-in for metrics-collector.service
[Service]
Type=notify
ExecStart=/usr/bin/metrics-collector run
User=metrics
RuntimeDirectory=belabox-metrics
PrivateTmp=yes
ProtectSystem=strict
"""


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    """A root with systemd's targets, our units (the overlay's, or the stand-in) and stub
    executables for every Exec line, so verify --root judges the unit and not the host."""
    r = tmp_path / "root"
    units = r / UNIT_DIR
    units.mkdir(parents=True)
    for f in HOST_UNITS.iterdir():
        if f.suffix in (".target", ".slice"):
            shutil.copy(f, units / f.name, follow_symlinks=True)
    ours = REPO / "overlays/common" / UNIT_DIR
    for f in ours.iterdir():
        if f.is_file():
            shutil.copy(f, units / f.name)
    if not (units / "metrics-collector.service").exists():
        (units / "metrics-collector.service").write_text(STAND_IN)
    shutil.copytree(DROPIN.parent, units / DROPIN.parent.name)
    for unit in units.glob("metrics-collector*.service"):
        for cmd in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", unit.read_text(), re.M):
            stub = r / cmd.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return r


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                           f"/{UNIT_DIR}/metrics-collector.service"], capture_output=True, text=True, timeout=60)


def test_dropin_verifies_cleanly(root):
    res = _verify(root)
    # verify's exit code ignores parse errors (feasibility §5): stderr is the verdict.
    assert res.stderr == "", res.stderr
    assert res.returncode == 0


def test_verify_reads_the_dropin(root):
    # The gate can fail: the same drop-in with a relative source is reported.
    conf = root / UNIT_DIR / "metrics-collector.service.d" / DROPIN.name
    conf.write_text(conf.read_text().replace("BindReadOnlyPaths=/tmp:", "BindReadOnlyPaths=tmp:"))
    assert "BindReadOnlyPaths=" in _verify(root).stderr


def test_dropin_binds_host_tmp_read_only_where_the_collector_looks():
    binds = _settings(DROPIN.read_text())["BindReadOnlyPaths"]
    assert binds == [f"/tmp:{belaui_files.HOST_TMP}"]
    assert DROPIN.read_text().startswith("# SPDX-License-Identifier:")


def test_the_unit_keeps_its_private_tmp(root):
    unit = _settings((root / UNIT_DIR / "metrics-collector.service").read_text())
    dropin = _settings(DROPIN.read_text())
    assert unit.get("PrivateTmp") == ["yes"]
    assert "PrivateTmp" not in dropin and "ProtectSystem" not in dropin
