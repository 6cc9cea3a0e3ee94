"""Discovery without udevd: sysfs rescans of a tree made from the generic board description.

The tree is a temporary directory, not the live /sys, so no monitor is opened and nothing
of the host is read.
"""

from __future__ import annotations

import shutil
import time

from belabox_metrics.devices.classify import classify
from belabox_metrics.devices.discovery import Discovery
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.devices.sysfsscan import SysfsScanner, parse_uevent
from belabox_metrics.health.registry import Registry as HealthRegistry
from tests.devices.conftest import GENERIC, HERE
from tests.devices.umockdev_tree import materialize

HOTPLUG = HERE / "data" / "hotplug-modem.umockdev"


def test_parse_uevent():
    assert parse_uevent("DEVTYPE=wwan\nINTERFACE=wwan0\n\nbroken line\nEMPTY=\n") == {
        "DEVTYPE": "wwan", "INTERFACE": "wwan0", "EMPTY": ""}


def test_kernel_properties_alone_classify_the_same(tmp_path):
    """udev's ID_* properties help but are not needed: same answer from kernel facts only."""
    full = classify(SysfsScanner(str(materialize(GENERIC, tmp_path / "a"))).scan())
    bare = classify(SysfsScanner(str(materialize(GENERIC, tmp_path / "b", strip_udev=True))).scan())
    assert full == bare
    assert [m.vendor_id for m in bare.modems] == ["2c7c", "12d1"]


def test_rescans_follow_plug_and_unplug(tmp_path):
    root = materialize(GENERIC, tmp_path / "sys", strip_udev=True)
    registry, health = DeviceRegistry(), HealthRegistry()
    discovery = Discovery(registry, sysfs=str(root), udev_run_dir=str(tmp_path / "no-udev"),
                          rescan_interval=0.1, health=health)
    discovery.start()
    try:
        assert discovery.mode == "sysfs" and discovery._monitor is None
        state = health.get("discovery")
        assert state.status == "degraded"
        assert state.message == f"sysfs root {root} is not the live sysfs: sysfs rescans every 0.1s"
        assert state.details["modems"] == 2
        assert len(registry.modems()) == 2

        materialize(HOTPLUG, root, replace={"@IFNAME@": "wwan1"})
        deadline = time.monotonic() + 1
        while len(registry.modems()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        new = [m for m in registry.modems() if m.vendor_id == "2c7c" and m.product_id == "0801"]
        assert len(new) == 1 and new[0].interfaces == ("wwan1",) and new[0].ports == ("cdc-wdm1", "ttyUSB5")

        shutil.rmtree(root / "devices/platform/fc880000.usb/usb2/2-3")
        deadline = time.monotonic() + 1
        while len(registry.modems()) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(registry.modems()) == 2
    finally:
        discovery.stop()
    assert discovery._thread is None


def test_scan_once_without_thread(tmp_path):
    root = materialize(GENERIC, tmp_path / "sys")
    registry = DeviceRegistry()
    discovery = Discovery(registry, sysfs=str(root), udev_run_dir=str(tmp_path))
    discovery.scan_once()
    assert discovery.mode == "sysfs"  # a udev directory alone is not enough: the tree is not live
    assert registry.mode == "sysfs"
    assert [d.name for d in registry.disks()] == ["mmcblk0", "mmcblk1", "nvme0n1"]


def test_tree_without_symlinks(tmp_path):
    """A tree captured with links dereferenced: class/net/X and its device are plain directories."""
    src = materialize(GENERIC, tmp_path / "src", strip_udev=True)
    flat = tmp_path / "flat"
    for entry in (src / "class" / "net").iterdir():
        dst = flat / "class" / "net" / entry.name
        dst.mkdir(parents=True)
        for name in ("uevent", "type", "ifindex", "iflink"):
            shutil.copyfile(entry / name, dst / name)
        for name in ("device", "wireless", "phy80211", "bridge"):
            if (entry / name).exists():
                (dst / name).mkdir()
                if (entry / name / "uevent").exists():
                    shutil.copyfile(entry / name / "uevent", dst / name / "uevent")
    inv = classify(SysfsScanner(str(flat)).scan())
    # Without the USB device above it a HiLink (eth1) looks like any USB Ethernet adapter:
    # only its vendor id tells, and that lives on the parent the copy lost.
    assert {n.name: n.kind for n in inv.interfaces} == {
        "eth0": "ethernet", "eth1": "ethernet", "usb1": "tether", "wlan0": "wifi", "wwan0": "modem"}
    assert {e.name: e.reason.split(":")[0] for e in inv.excluded} == {
        "docker0": "bridge (virtual)", "lo": "loopback", "usb0": "USB gadget",
        "veth3f1c2a7": "veth or other paired virtual link (containers)"}


def test_tree_without_parent_records(tmp_path):
    """A reconstructed tree often has only the class devices' own files: no uevent on the
    USB/MMC/PCI parents and no subsystem or driver links. The device paths still tell the
    bus, virtual devices and eMMC hardware partitions apart."""
    root = materialize(GENERIC, tmp_path / "sys", strip_udev=True)
    listed = {p.resolve() for sub in ("net", "block", "tty", "usbmisc") for p in (root / "class" / sub).iterdir()}
    for uevent in (root / "devices").rglob("uevent"):
        if uevent.parent.resolve() not in listed:
            uevent.unlink()
    for link in list((root / "devices").rglob("*")):
        if link.is_symlink() and link.name in ("subsystem", "driver"):
            link.unlink()
    inv = classify(SysfsScanner(str(root)).scan())
    assert [(d.name, d.bus) for d in inv.disks] == [("mmcblk0", "mmc"), ("mmcblk1", "mmc"), ("nvme0n1", "nvme")]
    assert {n.name: (n.kind, n.usb_path) for n in inv.interfaces} == {
        "eth0": ("ethernet", None), "wlan0": ("wifi", None),
        "wwan0": ("modem", "/devices/platform/fc800000.usb/usb1/1-1"),
        "eth1": ("ethernet", "/devices/platform/fc800000.usb/usb1/1-2"),
        "usb1": ("ethernet", "/devices/platform/fc880000.usb/usb2/2-1"),
    }
    reasons = {e.name: e.reason for e in inv.excluded}
    assert reasons["mmcblk0boot0"] == "eMMC hardware partition (boot or RPMB) of mmcblk0"
    assert reasons["sda"] == "no medium (size 0)"
    assert reasons["usb0"].startswith("USB gadget")
    assert reasons["zram0"].startswith("zram") and reasons["loop0"].startswith("loop")


def test_the_cheap_listing_skips_following_links_and_the_followed_one_drops_dead_ones(tmp_path):
    # The discovery thread lists names every check and follows the class links every
    # FOLLOW_LINKS_EVERY-th (ten times the cost): a link left behind is still noticed.
    root = materialize(GENERIC, tmp_path / "sys", strip_udev=True)
    scanner = SysfsScanner(str(root))
    before = dict(scanner.listing(follow=False))
    assert dict(scanner.listing(follow=True)) == before
    link = next((root / "class" / "net").iterdir())
    shutil.rmtree(link.resolve())  # the device goes, its link in class/net stays
    assert dict(scanner.listing(follow=False)) == before
    followed = dict(scanner.listing(follow=True))
    gone = {s: set(before[s] or ()) - set(followed[s] or ()) for s in before}
    assert any(gone.values()), gone
