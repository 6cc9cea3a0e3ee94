"""Cases that run only under umockdev's LD_PRELOAD (started by tests/devices/test_umockdev.py).

Each case builds a UMockdev.Testbed from hardware/generic/devices.umockdev: from then on
/sys is the testbed, so the real pyudev sees only the described devices, never the host's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
GENERIC = REPO / "hardware" / "generic" / "devices.umockdev"
HOTPLUG = HERE.parent / "data" / "hotplug-modem.umockdev"


@pytest.fixture
def testbed():
    assert "umockdev-preload" in os.environ.get("LD_PRELOAD", ""), "run under umockdev-wrapper"
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev
    tb = UMockdev.Testbed.new()
    assert tb.add_from_file(str(GENERIC))
    yield tb
    del tb


@pytest.fixture
def udev_dir():
    """Stands in for /run/udev: its presence is how discovery knows udevd runs."""
    with tempfile.TemporaryDirectory() as d:
        yield d


def hotplug_paths(ifname: str) -> list[str]:
    text = HOTPLUG.read_text().replace("@IFNAME@", ifname)
    return ["/sys" + line[3:].strip() for line in text.splitlines() if line.startswith("P: ")]


def plug(tb, ifname: str) -> None:
    """Add the hot-plug modem; umockdev sends an `add` uevent for each of its devices."""
    assert tb.add_from_string(HOTPLUG.read_text().replace("@IFNAME@", ifname))


def unplug(tb, ifname: str) -> None:
    paths = hotplug_paths(ifname)  # children first, as the kernel removes them
    for p in paths:
        tb.uevent(p, "remove")  # before deleting: a remove event needs the device
    for p in paths:
        tb.remove_device(p)
