"""`metrics-collector devices` on a sysfs tree (no umockdev needed; the watch and udev
paths are covered under umockdev in umockdev_cases/case_cli.py)."""

from __future__ import annotations

import json

import pytest

from tests.devices.conftest import GENERIC
from tests.devices.umockdev_tree import materialize
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return materialize(GENERIC, tmp_path_factory.mktemp("cli") / "sys", strip_udev=True)


def test_listing_groups_and_reasons(tree, tmp_path):
    result = run_cli("devices", "--sysfs", str(tree), "--udev-dir", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"discovery: sysfs (sysfs root {tree} is not the live sysfs")
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sections[1:] == ["Disks", "Network interfaces", "Modems", "Excluded"]
    assert "  wwan0          modem     network interface of modem " in out
    assert "  usb0           interface USB gadget: this board's own side of a USB link to a host" in out
    assert "  mmcblk0boot0   disk      eMMC hardware partition (boot or RPMB) of mmcblk0" in out
    assert "2c7c:0125 Quectel EC25  interfaces wwan0  ports cdc-wdm0,ttyUSB0,ttyUSB1,ttyUSB2,ttyUSB3" in out


def test_json(tree, tmp_path):
    result = run_cli("devices", "--json", "--sysfs", str(tree), "--udev-dir", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"mode", "discovery", "disks", "interfaces", "modems", "excluded", "modemmanager"}
    assert data["discovery"]["mode"] == "sysfs"
    assert {(n["name"], n["kind"]) for n in data["interfaces"]} == {
        ("eth0", "ethernet"), ("eth1", "modem"), ("usb1", "tether"), ("wlan0", "wifi"), ("wwan0", "modem")}
    modem = next(m for m in data["modems"] if m["vendor_id"] == "2c7c")
    assert set(modem) == {"key", "usb_path", "vendor_id", "product_id", "manufacturer", "model", "driver",
                          "interfaces", "ports", "reason", "bus"}
    assert len(modem["key"]) == 12
    assert all(set(e) == {"name", "kind", "reason"} for e in data["excluded"])


def test_bad_sysfs_and_bad_config(tmp_path):
    result = run_cli("devices", "--sysfs", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"devices: sysfs root {tmp_path / 'missing'} is not a directory"
    bad = tmp_path / "config.yaml"
    bad.write_text("modem:\n  max_modems: lots\n")
    result = run_cli("devices", "--config", str(bad), "--sysfs", str(tmp_path))
    assert result.returncode == 78
    assert result.stderr.strip() == "config.yaml: modem.max_modems: must be a whole number, got 'lots'"


def test_listed_in_help():
    result = run_cli("--help")
    assert "devices" in result.stdout
