"""Discovery with the real pyudev under umockdev: listing, hot-plug, removal, re-add."""

from __future__ import annotations

import time

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.modem.collector import ModemCollector
from belabox_metrics.devices.discovery import Discovery
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.health.registry import Registry as HealthRegistry

from .conftest import plug, unplug

QUECTEL = "/devices/platform/fc800000.usb/usb1/1-1"
HILINK = "/devices/platform/fc800000.usb/usb1/1-2"
HOTPLUG_USB = "/devices/platform/fc880000.usb/usb2/2-3"


def expected_listing(registry):
    inv = registry.inventory()
    assert [(d.name, d.bus, d.removable) for d in inv.disks] == [
        ("mmcblk0", "mmc", False), ("mmcblk1", "mmc", True), ("nvme0n1", "nvme", False)]
    assert {d.name: d.model for d in inv.disks}["nvme0n1"] == "Samsung SSD 980 500GB"
    assert [(n.name, n.kind) for n in inv.interfaces] == [
        ("eth0", "ethernet"), ("eth1", "modem"), ("usb1", "tether"), ("wlan0", "wifi"), ("wwan0", "modem")]
    modems = {m.usb_path: m for m in inv.modems}
    assert set(modems) == {QUECTEL, HILINK}
    q, h = modems[QUECTEL], modems[HILINK]
    assert (q.vendor_id, q.product_id, q.driver, q.interfaces) == ("2c7c", "0125", "qmi_wwan", ("wwan0",))
    assert q.ports == ("cdc-wdm0", "ttyUSB0", "ttyUSB1", "ttyUSB2", "ttyUSB3")
    assert (h.vendor_id, h.driver, h.interfaces, h.ports) == ("12d1", "cdc_ether", ("eth1",), ())
    ifs = {n.name: n for n in inv.interfaces}
    assert ifs["wwan0"].modem_key == q.key and ifs["eth1"].modem_key == h.key
    assert ifs["usb1"].modem_key is None
    excluded = {(e.kind, e.name): e.reason for e in inv.excluded}
    assert set(excluded) == {
        ("disk", "loop0"), ("disk", "zram0"), ("disk", "mmcblk0boot0"), ("disk", "mmcblk0boot1"),
        ("disk", "mmcblk0p1"), ("disk", "mmcblk1p1"), ("disk", "nvme0n1p1"), ("disk", "sda"),
        ("interface", "usb0"), ("interface", "docker0"), ("interface", "veth3f1c2a7"), ("interface", "lo"),
        ("port", "ttyUSB4"),
    }
    assert "gadget" in excluded[("interface", "usb0")]
    assert "bridge" in excluded[("interface", "docker0")]
    assert "boot" in excluded[("disk", "mmcblk0boot0")]
    assert "no medium" in excluded[("disk", "sda")]


@pytest.mark.parametrize("mode", ["udev", "sysfs"])
def test_listing(testbed, udev_dir, mode):
    registry, health = DeviceRegistry(), HealthRegistry()
    discovery = Discovery(registry, sysfs="/sys", udev_run_dir=udev_dir if mode == "udev" else udev_dir + "/absent",
                          health=health)
    discovery.start()
    try:
        assert discovery.mode == mode
        expected_listing(registry)
        state = health.get("discovery")
        if mode == "udev":
            assert (state.status, state.message) == ("ok", "udev monitor on block, net, tty, usb, usbmisc, wwan")
        else:
            assert state.status == "degraded"
            assert state.message == "udev not running: sysfs rescans every 5s and on kernel uevents"
    finally:
        discovery.stop()


def _collector(registry):
    cfg = configmod.from_mapping({"modem": {"mmcli_path": "/nonexistent/mmcli"}}, environ={})
    return ModemCollector(CollectorContext(config=cfg, sysfs="/sys", registry=registry))


def _wait_for(predicate, timeout=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.mark.parametrize("mode", ["udev", "sysfs"])
def test_hotplug_remove_and_readd(testbed, udev_dir, mode):
    registry, health = DeviceRegistry(), HealthRegistry()
    discovery = Discovery(registry, sysfs="/sys", udev_run_dir=udev_dir if mode == "udev" else udev_dir + "/absent",
                          rescan_interval=60, health=health)  # sysfs mode: only a kernel uevent is this fast
    collector = _collector(registry)
    discovery.start()
    try:
        assert discovery.mode == mode
        start = time.monotonic()
        plug(testbed, "wwan1")

        def modem():
            return next((m for m in registry.modems() if m.usb_path == HOTPLUG_USB), None)

        assert _wait_for(lambda: modem() is not None and modem().ports == ("cdc-wdm1", "ttyUSB5"))
        m = modem()
        samples = collector.collect()
        assert _wait_for(lambda: health.get("discovery").details["modems"] == 3)
        elapsed = time.monotonic() - start
        info = [s for s in samples if s.name == "belabox_modem_info" and s.label("modem") == m.key]
        assert len(info) == 1 and info[0].label("interface") == "wwan1"
        assert info[0].label("model") == "RM520N-GL"
        rx = [s.value for s in samples if s.name == "belabox_modem_receive_bytes_total" and s.label("modem") == m.key]
        assert rx == [1000]
        assert elapsed < 1.0, f"hot-plugged modem took {elapsed:.3f}s to reach a collection"
        key = m.key

        unplug(testbed, "wwan1")
        assert _wait_for(lambda: modem() is None), "removed modem still in the registry"
        assert "wwan1" not in {n.name for n in registry.interfaces()}
        assert not [s for s in collector.collect() if s.label("modem") == key]

        # The same stick back in the same port under another interface name: same label.
        plug(testbed, "wwan7")
        assert _wait_for(lambda: modem() is not None and modem().interfaces == ("wwan7",))
        assert modem().key == key
        assert {n.name: n.modem_key for n in registry.interfaces()}["wwan7"] == key
        labels = {s.label("interface") for s in collector.collect() if s.label("modem") == key
                  and s.name == "belabox_modem_info"}
        assert labels == {"wwan7"}
        unplug(testbed, "wwan7")
    finally:
        discovery.stop()


def test_subscribers_hear_changes(testbed, udev_dir):
    registry = DeviceRegistry()
    heard = []
    registry.subscribe(lambda change: heard.append((change.action, change.kind, change.name)))
    discovery = Discovery(registry, sysfs="/sys", udev_run_dir=udev_dir)
    discovery.start()
    try:
        heard.clear()
        plug(testbed, "wwan1")
        assert _wait_for(lambda: ("add", "interface", "wwan1") in heard and
                         any(a == "add" and k == "modem" for a, k, _ in heard))
        unplug(testbed, "wwan1")
        assert _wait_for(lambda: ("remove", "interface", "wwan1") in heard)
    finally:
        discovery.stop()
