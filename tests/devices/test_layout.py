"""Boundaries of the device code (design §2, §8)."""

from __future__ import annotations

import re

from tests.devices.conftest import REPO

APP = REPO / "app" / "belabox_metrics"
MINE = ["devices/discovery.py", "devices/model.py", "devices/registry.py", "devices/classify.py",
        "devices/sysfsscan.py", "commands/devices.py", "collectors/modem/collector.py", "collectors/modem/parse.py",
        "devices/disks.py", "collectors/modem/schedule.py", "collectors/modem/series.py",
        "collectors/modem/matching.py"]


def test_only_discovery_imports_pyudev():
    users = sorted(str(p.relative_to(APP)) for p in APP.rglob("*.py")
                   if re.search(r"^\s*(import pyudev|from pyudev)|import_module\(.pyudev", p.read_text(), re.M)
                   or "\n    import pyudev" in p.read_text())
    assert users == ["devices/discovery.py"]


def test_only_the_modem_collector_runs_mmcli():
    runners = sorted(str(p.relative_to(APP)) for p in APP.rglob("*.py")
                     if "subprocess" in p.read_text() and "mmcli" in p.read_text())
    assert runners == ["collectors/modem/collector.py"]


def test_no_host_paths_and_small_modules():
    for name in MINE:
        text = (APP / name).read_text()
        assert '"/sys/' not in text and '"/proc/' not in text and "'/sys/" not in text, name
        assert len(text.splitlines()) < 400, f"{name} has {len(text.splitlines())} lines"
