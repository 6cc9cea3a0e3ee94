"""Modems without ModemManager under umockdev: the real pyudev lists the `wwan` class and
groups the PCIe modems' ports with their net interface, in udev and in sysfs mode."""

from __future__ import annotations

import os

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.modem.collector import ModemCollector
from belabox_metrics.devices.discovery import Discovery
from belabox_metrics.devices.registry import DeviceRegistry

from .conftest import HERE

TREE = HERE.parent / "data" / "modems-no-mm.umockdev"
RM520N = "/devices/platform/a40000000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0"
EM9191 = "/devices/platform/a41000000.pcie/pci0001:10/0001:10:00.0/0001:11:00.0"


@pytest.fixture
def modems_testbed():
    assert "umockdev-preload" in os.environ.get("LD_PRELOAD", ""), "run under umockdev-wrapper"
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev
    tb = UMockdev.Testbed.new()
    assert tb.add_from_file(str(TREE))
    yield tb
    del tb


@pytest.mark.parametrize("mode", ["udev", "sysfs"])
def test_modems_from_udev_alone(modems_testbed, udev_dir, mode, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    registry = DeviceRegistry()
    discovery = Discovery(registry, sysfs="/sys", udev_run_dir=udev_dir if mode == "udev" else udev_dir + "/absent")
    discovery.start()
    try:
        assert discovery.mode == mode
        modems = {m.usb_path: m for m in registry.modems()}
        assert len(modems) == 4
        assert (modems[RM520N].bus, modems[RM520N].interfaces, modems[RM520N].ports) == (
            "pci", ("wwan0",), ("wwan0at0", "wwan0mbim0", "wwan0qcdm0"))
        assert (modems[EM9191].interfaces, modems[EM9191].ports) == (("mhi_hwip0",), ("wwan1at0", "wwan1mbim0"))
        assert {n.name: n.kind for n in registry.interfaces()} == {
            "eth0": "ethernet", "wlan0": "wifi", "wwan0": "modem", "wwan1": "modem", "usb0": "modem",
            "mhi_hwip0": "modem"}
        cfg = configmod.from_mapping({}, environ={})
        collector = ModemCollector(CollectorContext(config=cfg, sysfs="/sys", registry=registry))
        samples = collector.collect()
        present = {s.label("modem") for s in samples if s.name == "belabox_modem_present" and s.value == 1}
        assert present == {m.key for m in modems.values()}
        info = {s.label("modem"): s for s in samples if s.name == "belabox_modem_info"}
        assert (info[modems[RM520N].key].label("bus_path"), info[modems[RM520N].key].label("driver")) == (
            "0000:01:00.0", "mhi-pci-generic")
        assert collector.status[0] == "degraded" and "ModemManager is not running" in collector.status[1]
    finally:
        discovery.stop()
