"""Modems listed from udev/sysfs alone, without ModemManager: a Sierra EM7455 (USB, cdc_mbim),
a Huawei HiLink on rndis_host, and two M.2 modems on the MHI bus (Quectel RM520N-GL with
mhi_wwan_mbim and /sys/class/wwan ports, Sierra EM9191 with mhi_net), next to a PCIe WiFi
card that must stay WiFi. The tree is tests/devices/data/modems-no-mm.umockdev (reconstructed
from the kernel's sysfs layout: class devices under mhiN/wwan/wwanN, net devices DEVTYPE=wwan).

No ModemManager here: the system bus address points at nothing, so no mmcli runs at all.
"""

from __future__ import annotations

import json

import pytest

from belabox_metrics.devices.classify import classify
from belabox_metrics.devices.sysfsscan import SysfsScanner
from tests.collectors.support import parse_text
from tests.devices.conftest import HERE
from tests.devices.test_udev_rules import RULES, Dev, evaluate, parse_rules
from tests.devices.umockdev_tree import materialize
from tests.support.cli import run_cli

TREE = HERE / "data" / "modems-no-mm.umockdev"
SIERRA_USB = "/devices/platform/fc800000.usb/usb1/1-1"
HILINK = "/devices/platform/fc800000.usb/usb1/1-2"
RM520N = "/devices/platform/a40000000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0"
EM9191 = "/devices/platform/a41000000.pcie/pci0001:10/0001:10:00.0/0001:11:00.0"
NO_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/system_bus_socket"}
NOT_RUNNING = "ModemManager not running: radio metrics unavailable"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return materialize(TREE, tmp_path_factory.mktemp("nomm") / "sys", strip_udev=True)


def expected_modems(inv):
    modems = {m.usb_path: m for m in inv.modems}
    assert set(modems) == {SIERRA_USB, HILINK, RM520N, EM9191}
    s, h, q, e = (modems[p] for p in (SIERRA_USB, HILINK, RM520N, EM9191))
    assert (s.bus, s.vendor_id, s.product_id, s.model, s.driver) == ("usb", "1199", "9079", "EM7455", "cdc_mbim")
    assert (s.interfaces, s.ports) == (("wwan1",), ("cdc-wdm0", "ttyUSB0", "ttyUSB1"))
    assert (h.bus, h.vendor_id, h.driver, h.interfaces, h.ports) == ("usb", "12d1", "rndis_host", ("usb0",), ())
    # One PCIe modem = its PCI function: the wwan ports and the net interface grouped under it.
    assert (q.bus, q.vendor_id, q.product_id, q.manufacturer) == ("pci", "1eac", "1007", "Quectel")
    assert (q.interfaces, q.ports) == (("wwan0",), ("wwan0at0", "wwan0mbim0", "wwan0qcdm0"))
    assert (e.bus, e.vendor_id, e.manufacturer, e.driver) == ("pci", "17cb", "Sierra Wireless", "mhi_net")
    assert (e.interfaces, e.ports) == (("mhi_hwip0",), ("wwan1at0", "wwan1mbim0"))
    ifs = {n.name: n for n in inv.interfaces}
    assert {n: (i.kind, i.modem_key) for n, i in ifs.items()} == {
        "eth0": ("ethernet", None), "wlan0": ("wifi", None),
        "wwan1": ("modem", s.key), "usb0": ("modem", h.key), "wwan0": ("modem", q.key), "mhi_hwip0": ("modem", e.key)}
    assert len({m.key for m in inv.modems}) == 4
    return modems


def test_classified_from_kernel_facts_and_from_udev_properties(tree, tmp_path):
    bare = classify(SysfsScanner(str(tree)).scan())
    full = classify(SysfsScanner(str(materialize(TREE, tmp_path / "full"))).scan())
    assert bare == full
    expected_modems(bare)
    assert not bare.excluded  # the wwan0 device holding the ports is neither a port nor excluded


def test_keys_stable_across_a_rescan_and_a_renamed_interface(tree, tmp_path):
    before = {m.usb_path: m.key for m in classify(SysfsScanner(str(tree)).scan()).modems}
    renamed = materialize(TREE, tmp_path / "sys", strip_udev=True,
                          replace={"net/wwan0": "net/wwan9", "INTERFACE=wwan0": "INTERFACE=wwan9"})
    after = {m.usb_path: (m.key, m.interfaces) for m in classify(SysfsScanner(str(renamed)).scan()).modems}
    assert after[RM520N] == (before[RM520N], ("wwan9",))


def test_udev_rules_mark_the_same_modems(tree, tmp_path):
    rules = parse_rules(RULES.read_text())
    kinds = {}
    for sub in ("net", "tty", "usbmisc", "wwan"):
        for entry in sorted((tree / "class" / sub).iterdir()):
            dev = Dev(tree, entry)
            kinds[f"{sub}:{entry.name}"] = evaluate(rules, dev).get("BELABOX_METRICS_KIND")
    assert {k: v for k, v in kinds.items() if v} == {
        "net:wwan0": "modem", "net:wwan1": "modem", "net:mhi_hwip0": "modem", "net:usb0": "modem",
        "usbmisc:cdc-wdm0": "modem-port", "tty:ttyUSB0": "modem-port", "tty:ttyUSB1": "modem-port",
        "wwan:wwan0at0": "modem-port", "wwan:wwan0mbim0": "modem-port", "wwan:wwan0qcdm0": "modem-port",
        "wwan:wwan1at0": "modem-port", "wwan:wwan1mbim0": "modem-port",
    }
    # Fed back as udev properties, they change nothing (properties first, same answer).
    marked = materialize(TREE, tmp_path / "marked", strip_udev=True)
    for sub in ("net", "tty", "usbmisc", "wwan"):
        for entry in (marked / "class" / sub).iterdir():
            dev = Dev(marked, entry)
            with open(dev.path / "uevent", "a") as fh:
                fh.writelines(f"{k}={v}\n" for k, v in evaluate(rules, dev).items())
    with_props = classify(SysfsScanner(str(marked)).scan())
    without = classify(SysfsScanner(str(tree)).scan())
    assert [(m.key, m.interfaces, m.ports) for m in with_props.modems] == \
        [(m.key, m.interfaces, m.ports) for m in without.modems]
    assert all("udev rule" in m.reason for m in with_props.modems)


def test_collect_once_reports_every_modem(tree):
    result = run_cli("collect", "--once", "--collector", "modem", "--sysfs", str(tree), env=NO_BUS)
    assert result.returncode == 0, result.stderr
    series = parse_text(result.stdout)
    keys = {m.usb_path: m.key for m in classify(SysfsScanner(str(tree)).scan()).modems}
    info = {dict(labels)["modem"]: dict(labels) for (name, labels), v in series.items()
            if name == "belabox_modem_info" and v == 1}
    assert info == {
        keys[SIERRA_USB]: {"modem": keys[SIERRA_USB], "manufacturer": "Sierra Wireless, Incorporated",
                           "model": "EM7455", "driver": "cdc_mbim", "bus": "usb", "bus_path": "1-1",
                           "interface": "wwan1"},
        keys[HILINK]: {"modem": keys[HILINK], "manufacturer": "HUAWEI MOBILE", "model": "HUAWEI MOBILE",
                       "driver": "rndis_host", "bus": "usb", "bus_path": "1-2", "interface": "usb0"},
        keys[RM520N]: {"modem": keys[RM520N], "manufacturer": "Quectel", "driver": "mhi-pci-generic",
                       "bus": "pci", "bus_path": "0000:01:00.0", "interface": "wwan0"},
        keys[EM9191]: {"modem": keys[EM9191], "manufacturer": "Sierra Wireless", "driver": "mhi_net",
                       "bus": "pci", "bus_path": "0001:11:00.0", "interface": "mhi_hwip0"},
    }
    present = {dict(labels)["modem"]: v for (name, labels), v in series.items() if name == "belabox_modem_present"}
    assert present == {k: 1 for k in keys.values()}
    assert series[("belabox_modemmanager_up", ())] == 0
    assert series[("belabox_modem_receive_bytes_total", (("interface", "wwan0"), ("modem", keys[RM520N])))] \
        == 987654321
    # No radio series without ModemManager; the collector says so once, degraded.
    assert not [n for n, _ in series if n in ("belabox_modem_state", "belabox_modem_rsrp_dbm")]
    assert result.stderr.count("ModemManager is not running") == 1, result.stderr
    assert "collector.modem: degraded:" in result.stderr


def test_devices_groups_them_and_says_once_that_modemmanager_is_missing(tree, tmp_path):
    result = run_cli("devices", "--sysfs", str(tree), "--udev-dir", str(tmp_path / "none"), env=NO_BUS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    modems = out.split("\nModems\n")[1].split("\n\n")[0]
    assert out.count(NOT_RUNNING) == 1 and modems.count(NOT_RUNNING) == 1
    assert "1eac:1007 Quectel  interfaces wwan0  ports wwan0at0,wwan0mbim0,wwan0qcdm0" in modems
    assert "17cb:0306 Sierra Wireless  interfaces mhi_hwip0  ports wwan1at0,wwan1mbim0" in modems
    assert "1199:9079 Sierra Wireless, Incorporated EM7455  interfaces wwan1  ports cdc-wdm0,ttyUSB0,ttyUSB1" in modems
    assert "12d1:14db HUAWEI MOBILE  interfaces usb0" in modems
    assert "no D-Bus system bus at /nonexistent/system_bus_socket" in modems

    result = run_cli("devices", "--json", "--sysfs", str(tree), "--udev-dir", str(tmp_path / "none"), env=NO_BUS)
    data = json.loads(result.stdout)
    assert data["modemmanager"]["running"] is False
    assert sorted((m["bus"], m["vendor_id"]) for m in data["modems"]) == [
        ("pci", "17cb"), ("pci", "1eac"), ("usb", "1199"), ("usb", "12d1")]


@pytest.mark.slow
def test_diagnose_says_it_once(tree, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host:\n  sysfs: {tree}\nstorage:\n  path: {tmp_path}/spool.db\n")
    result = run_cli("diagnose", "--config", str(cfg), "--rate-seconds", "0", "--url", "http://127.0.0.1:9",
                     env={**NO_BUS, "NO_COLOR": ""})
    assert result.stdout.count(NOT_RUNNING) == 1, result.stdout
    rows = result.stdout.split("Modems", 1)[1].split("Disks", 1)[0]
    assert rows.count("operator ?") == 4 and NOT_RUNNING in rows
