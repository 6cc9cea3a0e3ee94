"""Fixtures for device tests: a private D-Bus "system bus" with a dbusmock ModemManager,
sysfs trees made from umockdev descriptions, and a runner for tests that need umockdev's
LD_PRELOAD (they run as a child pytest under ``umockdev-wrapper``).

Nothing here reads the host's udev database or devices: the sysfs trees are temporary
directories, and under umockdev /sys is the testbed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.devices.classify import classify
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.devices.sysfsscan import SysfsScanner
from belabox_metrics.health.selfmetrics import SelfMetrics
from tests.devices.umockdev_tree import materialize

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GENERIC = REPO / "hardware" / "generic" / "devices.umockdev"
TEMPLATE = HERE / "mm_template.py"
MM_BUS_NAME = "org.freedesktop.ModemManager1"
MM_OBJ = "/org/freedesktop/ModemManager1"
MOCK_IFACE = "org.freedesktop.DBus.Mock"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def system_bus(tmp_path_factory):
    """A private dbus-daemon standing in for the system bus (no service activation)."""
    daemon = shutil.which("dbus-daemon")
    assert daemon, "dbus-daemon is missing: apt-get install dbus"
    assert shutil.which("mmcli"), "mmcli is missing: apt-get install modemmanager"
    d = tmp_path_factory.mktemp("dbus")
    socket = d / "system_bus_socket"
    conf = d / "bus.conf"
    conf.write_text(BUS_CONFIG.format(socket=socket))
    proc = subprocess.Popen([daemon, f"--config-file={conf}", "--nofork", "--nopidfile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(socket.exists, 10, "dbus-daemon socket")
        yield f"unix:path={socket}"
    finally:
        _stop(proc)


class ModemManagerMock:
    """Drives the dbusmock ModemManager (tests/devices/mm_template.py) over D-Bus."""

    def __init__(self, address: str):
        import dbus
        self.dbus = dbus
        self.bus = dbus.bus.BusConnection(address)
        self.proc: subprocess.Popen | None = None
        self.address = address

    def start(self) -> None:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.proc = subprocess.Popen([sys.executable, "-m", "dbusmock", "--system", "-t", str(TEMPLATE)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait(lambda: self.bus.name_has_owner(MM_BUS_NAME) or self.proc.poll() is not None, 15,
              "the dbusmock ModemManager")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
        _wait(lambda: not self.bus.name_has_owner(MM_BUS_NAME), 5, "ModemManager to leave the bus")

    @property
    def manager(self):
        return self.bus.get_object(MM_BUS_NAME, MM_OBJ)

    def add_modem(self, index: str, **overrides) -> str:
        d = self.dbus.Dictionary({k.replace("__", "."): v for k, v in overrides.items()}, signature="sv")
        return str(self.manager.AddModem(index, d, dbus_interface=MOCK_IFACE))

    def remove_modem(self, index: str) -> None:
        self.manager.RemoveModem(index, dbus_interface=MOCK_IFACE)

    def vanish_after_next_list(self, index: str) -> None:
        self.manager.VanishAfterNextList(index, dbus_interface=MOCK_IFACE)

    def modem(self, index: str):
        return self.bus.get_object(MM_BUS_NAME, f"{MM_OBJ}/Modem/{index}")

    def set(self, index: str, iface: str, prop: str, value) -> None:
        full = "org.freedesktop.ModemManager1.Modem" + ("" if iface == "Modem" else "." + iface)
        self.modem(index).Set(full, prop, value, dbus_interface=self.dbus.PROPERTIES_IFACE)

    def get(self, index: str, iface: str, prop: str):
        full = "org.freedesktop.ModemManager1.Modem" + ("" if iface == "Modem" else "." + iface)
        return self.modem(index).Get(full, prop, dbus_interface=self.dbus.PROPERTIES_IFACE)

    def calls(self, index: str, method: str) -> int:
        return len(self.modem(index).GetMethodCalls(method, dbus_interface=MOCK_IFACE))


@pytest.fixture
def mm_bus(system_bus, monkeypatch):
    """The private system bus, exported to mmcli through DBUS_SYSTEM_BUS_ADDRESS."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus)
    return system_bus


@pytest.fixture
def bus_socket(tmp_path, monkeypatch):
    """A listening unix socket as the system bus address, for the fake-mmcli tests: the
    collector skips mmcli when no system bus socket exists, and this host may have none."""
    import socket as socketmod
    path = tmp_path / "bus_socket"
    sock = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    try:
        yield path
    finally:
        sock.close()


@pytest.fixture
def mm(mm_bus):
    mock = ModemManagerMock(mm_bus)
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()


@pytest.fixture
def generic_sysfs(tmp_path) -> Path:
    return materialize(GENERIC, tmp_path / "sys")


@pytest.fixture
def generic_registry(generic_sysfs) -> DeviceRegistry:
    registry = DeviceRegistry(classify)
    registry.replace_all(SysfsScanner(str(generic_sysfs)).scan())
    return registry


def make_ctx(sysfs: Path | str, registry=None, **modem) -> CollectorContext:
    timeout = modem.pop("mmcli_timeout", None)
    raw: dict = {"modem": {k: v for k, v in modem.items() if k != "max_series"}}
    if timeout is not None:
        raw["modem"]["mmcli_timeout"] = timeout
    if "max_series" in modem:
        raw["limits"] = {"max_series": modem["max_series"]}
    cfg = configmod.from_mapping(raw, source="test", environ={})
    return CollectorContext(config=cfg, sysfs=str(sysfs), registry=registry, selfmetrics=SelfMetrics())


def run_under_umockdev(case: str, *pytest_args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run tests/devices/umockdev_cases/<case> as a child pytest with umockdev's preload."""
    wrapper = shutil.which("umockdev-wrapper")
    assert wrapper, "umockdev-wrapper is missing: apt-get install umockdev gir1.2-umockdev-1.0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELABOX_METRICS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "app"), str(REPO)])
    cmd = [wrapper, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
           "python_files=case_*.py", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"),
           str(HERE / "umockdev_cases" / case), *pytest_args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
