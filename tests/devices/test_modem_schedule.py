"""How many mmcli processes a collection cycle starts, counted by a wrapper that execs the
real mmcli (so the real one still answers, from a dbusmock ModemManager or from nothing).

Without ModemManager: one check, then none per cycle until a modem comes or goes (udev) or
the re-check interval passes. With it: `-L` only on such events or every few minutes;
status and signal of each modem every cycle (they change); the SIM once per SIM.
"""

from __future__ import annotations

import shutil

import dbus
import pytest

from belabox_metrics.collectors.modem.collector import ModemCollector
from belabox_metrics.devices.classify import classify
from belabox_metrics.devices.model import modem_key
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.devices.sysfsscan import SysfsScanner
from tests.devices.conftest import HERE, make_ctx
from tests.devices.umockdev_tree import materialize

HOTPLUG = HERE / "data" / "hotplug-modem.umockdev"
TREE = HERE / "data" / "modems-no-mm.umockdev"
RM520N = "/devices/platform/a40000000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A PATH-less wrapper: `mmcli_path` points here; every start is one line in `calls`."""

    def __init__(self, tmp_path):
        real = shutil.which("mmcli")
        assert real, "mmcli is missing: apt-get install modemmanager"
        self.calls = tmp_path / "calls"
        self.calls.touch()
        self.path = tmp_path / "mmcli"
        self.path.write_text(f'#!/bin/sh\necho "$*" >> {self.calls}\nexec {real} "$@"\n')
        self.path.chmod(0o755)
        self._seen = 0

    def new(self) -> list[str]:
        """The calls since the last look."""
        lines = self.calls.read_text().splitlines()
        out, self._seen = lines[self._seen:], len(lines)
        return out


def collector_with(sysfs, registry, counted, clock) -> ModemCollector:
    c = ModemCollector(make_ctx(sysfs, registry, mmcli_path=str(counted.path)))
    c.schedule.clock = clock
    return c


def test_no_children_per_cycle_without_modemmanager(mm_bus, generic_sysfs, generic_registry, tmp_path):
    counted, clock = Counted(tmp_path), Clock()
    collector = collector_with(generic_sysfs, generic_registry, counted, clock)
    collector.collect()
    assert counted.new() == ["-L -J"]  # the first check
    for _ in range(5):
        clock.now += 10
        samples = collector.collect()
        assert counted.new() == [], "an mmcli process in a cycle whose answer could not have changed"
        assert collector.status[0] == "degraded" and "ModemManager is not running" in collector.status[1]
        assert {s.label("interface") for s in samples if s.name == "belabox_modem_info"} == {"wwan0", "eth1"}
    # udev reports a modem plugged in: asked again once, at the next cycle.
    materialize(HOTPLUG, generic_sysfs, replace={"@IFNAME@": "wwan1"})
    generic_registry.replace_all(SysfsScanner(str(generic_sysfs)).scan())
    collector.collect()
    assert counted.new() == ["-L -J"]
    collector.collect()
    assert counted.new() == []
    # And once per re-check interval, in case ModemManager was started meanwhile.
    clock.now += collector.schedule.absent_recheck
    collector.collect()
    assert counted.new() == ["-L -J"]


def test_no_children_at_all_without_a_system_bus(generic_sysfs, generic_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    counted, clock = Counted(tmp_path), Clock()
    collector = collector_with(generic_sysfs, generic_registry, counted, clock)
    for _ in range(3):
        clock.now += 100
        samples = collector.collect()
    assert counted.new() == []
    assert f"no D-Bus system bus at {tmp_path}/no-bus" in collector.status[1]
    assert [s.value for s in samples if s.name == "belabox_modemmanager_up"] == [0]


def _add(mm, index, device):
    mm.add_modem(index, Modem__Device=dbus.String("/sys" + device))


def test_list_only_when_modems_can_have_changed(mm, generic_sysfs, generic_registry, tmp_path):
    counted, clock = Counted(tmp_path), Clock()
    _add(mm, "0", "/devices/platform/fc800000.usb/usb1/1-1")
    mm.add_modem("1")
    collector = collector_with(generic_sysfs, generic_registry, counted, clock)
    collector.collect()
    assert counted.new() == ["-L -J", "-m 0 -J", "-m 0 --signal-get -J", "-i 0 -J",
                             "-m 1 -J", "-m 1 --signal-get -J", "-i 1 -J"]
    # ModemManager just appeared: it may still be probing, so the list is read again a while.
    clock.now += 10
    collector.collect()
    assert counted.new()[0] == "-L -J"
    clock.now += collector.schedule.settle
    for _ in range(3):
        clock.now += 10
        samples = collector.collect()
        # Status and signal every cycle; no list, no SIM (same SIM object).
        assert counted.new() == ["-m 0 -J", "-m 0 --signal-get -J", "-m 1 -J", "-m 1 --signal-get -J"]
    assert collector.status[0] == "ok", collector.status
    assert len([s for s in samples if s.name == "belabox_modem_state"]) == 2
    # Values still follow ModemManager each cycle.
    mm.set("0", "Modem", "State", dbus.Int32(8))
    clock.now += 10
    samples = collector.collect()
    counted.new()
    k0 = modem_key("imei:860000000000000")
    assert [s.value for s in samples if s.name == "belabox_modem_state" and s.label("modem") == k0] == [8]
    # The periodic re-list.
    clock.now += collector.schedule.relist
    collector.collect()
    assert counted.new()[0] == "-L -J"
    # A modem ModemManager drops: its `-m` fails, the next cycle lists again.
    clock.now += collector.schedule.settle + 10
    collector.collect()
    counted.new()
    mm.remove_modem("1")
    clock.now += 10
    collector.collect()
    assert counted.new() == ["-m 0 -J", "-m 0 --signal-get -J", "-m 1 -J"]
    clock.now += 10
    collector.collect()
    assert counted.new()[0] == "-L -J"
    # ModemManager stops: noticed on the next call, then no process per cycle.
    clock.now += collector.schedule.settle
    mm.stop()
    clock.now += 10
    collector.collect()
    assert counted.new() == ["-m 0 -J"]
    assert "ModemManager is not running" in collector.status[1]
    clock.now += 10
    collector.collect()
    assert counted.new() == []
    assert not collector.recent_stderr, list(collector.recent_stderr)


@pytest.fixture
def pcie_registry(tmp_path):
    sysfs = materialize(TREE, tmp_path / "sys", strip_udev=True)
    registry = DeviceRegistry(classify)
    registry.replace_all(SysfsScanner(str(sysfs)).scan())
    return sysfs, registry


def test_radio_metrics_join_the_udev_identity(mm, pcie_registry):
    """A PCIe modem ModemManager manages: its radio series and the udev-only series (info,
    present, byte counters) carry one `modem` label, the one `devices` shows."""
    sysfs, registry = pcie_registry
    _add(mm, "0", RM520N)
    collector = ModemCollector(make_ctx(sysfs, registry))
    samples = collector.collect()
    assert not collector.recent_stderr, list(collector.recent_stderr)
    key = next(m.key for m in registry.modems() if m.usb_path == RM520N)
    assert key == modem_key("imei:860000000000000")  # discovery learned the IMEI from ModemManager
    mine = {s.name for s in samples if s.label("modem") == key}
    assert {"belabox_modem_info", "belabox_modem_present", "belabox_modem_state", "belabox_modem_rsrp_dbm",
            "belabox_modem_receive_bytes_total"} <= mine
    info = next(s for s in samples if s.name == "belabox_modem_info" and s.label("modem") == key)
    assert (info.label("bus"), info.label("bus_path"), info.label("interface")) == ("pci", "0000:01:00.0", "wwan0")
    assert info.label("operator") == "Telekom.de"
    # The other three modems ModemManager does not manage are still there, from udev alone.
    assert len({s.label("modem") for s in samples if s.name == "belabox_modem_present"}) == 4
