"""The modem collector when ModemManager is absent, mmcli is missing, malformed or slow.

ModemManager absent uses the real mmcli on a private bus without the service; malformed
and slow output come from small fake scripts (the only cases not using the real mmcli).
"""

from __future__ import annotations

import os
import time

import pytest

from belabox_metrics.collectors.modem.collector import ModemCollector
from belabox_metrics.health.registry import Registry as HealthRegistry
from tests.devices.conftest import make_ctx


@pytest.fixture(autouse=True)
def _a_system_bus(bus_socket):
    """Fake mmcli scripts run only where a system bus exists (tests that need none or the
    dbusmock one override the address)."""


def _script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_modemmanager_not_running(mm_bus, generic_sysfs, generic_registry):
    health = HealthRegistry()
    health.update("collector.netdev", "ok", "5 interfaces")
    ctx = make_ctx(generic_sysfs, generic_registry)
    collector = ModemCollector(ctx, health=health)
    samples = collector.collect()

    state = health.get("collector.modem")
    assert state.status == "degraded"
    assert "ModemManager is not running" in state.message
    assert "couldn't find the ModemManager process in the bus" in state.message
    assert state.message.endswith("modem radio metrics unavailable")
    # Radio metrics absent; what discovery knows is still reported.
    names = {s.name for s in samples}
    assert names == {"belabox_modem_info", "belabox_modem_present", "belabox_modem_receive_bytes_total",
                     "belabox_modem_transmit_bytes_total", "belabox_modemmanager_up"}
    assert [s.value for s in samples if s.name == "belabox_modemmanager_up"] == [0]
    assert [s.value for s in samples if s.name == "belabox_modem_present"] == [1, 1]
    assert {s.label("interface") for s in samples if s.name == "belabox_modem_info"} == {"wwan0", "eth1"}
    # The other collectors are untouched and the agent stays serving (degraded, not error).
    assert health.get("collector.netdev").status == "ok"
    assert health.overall() == "degraded"
    assert ctx.selfmetrics.total("metrics_collector_collector_errors_total") == 0


def test_no_system_bus_at_all(generic_sysfs, generic_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing")
    collector = ModemCollector(make_ctx(generic_sysfs, generic_registry))
    collector.collect()
    assert collector.status[0] == "degraded"
    assert "ModemManager is not running" in collector.status[1]


def test_mmcli_missing(generic_sysfs, generic_registry, tmp_path):
    collector = ModemCollector(make_ctx(generic_sysfs, generic_registry, mmcli_path=str(tmp_path / "no-mmcli")))
    samples = collector.collect()
    assert collector.status[0] == "degraded"
    assert "mmcli not found" in collector.status[1]
    assert any(s.name == "belabox_modem_info" for s in samples)


@pytest.mark.parametrize("output", ["{not json", '{"modem-list": "oops"}', "[1, 2]", ""])
def test_malformed_list(generic_sysfs, generic_registry, tmp_path, output):
    fake = _script(tmp_path / "mmcli", f"printf '%s' '{output}'\n")
    health = HealthRegistry()
    ctx = make_ctx(generic_sysfs, generic_registry, mmcli_path=fake)
    collector = ModemCollector(ctx, health=health)
    samples = collector.collect()
    state = health.get("collector.modem")
    assert state.status == "degraded"
    assert "mmcli -L -J returned malformed output" in state.message
    assert ctx.selfmetrics.value("metrics_collector_collector_errors_total", {"collector": "modem"}) == 1
    assert {s.label("interface") for s in samples if s.name == "belabox_modem_info"} == {"wwan0", "eth1"}


def test_malformed_modem(generic_sysfs, generic_registry, tmp_path):
    fake = _script(tmp_path / "mmcli", """
case "$1" in
  -L) echo '{"modem-list":["/org/freedesktop/ModemManager1/Modem/0"]}' ;;
  -m) echo '{"modem": {"generic": {"state": "connected"' ;;
esac
""")
    collector = ModemCollector(make_ctx(generic_sysfs, generic_registry, mmcli_path=fake))
    samples = collector.collect()
    assert collector.status[0] == "degraded"
    assert "mmcli -m 0 -J returned malformed output" in collector.status[1]
    assert not any(s.name == "belabox_modem_state" for s in samples)


def test_slow_mmcli_is_killed(generic_sysfs, generic_registry, tmp_path):
    pids = tmp_path / "pids"
    # A wrapper whose child holds stdout open: killing only the script would not end the read.
    fake = _script(tmp_path / "mmcli", f"echo $$ >> {pids}\nsleep 30 &\necho $! >> {pids}\nwait\n")
    ctx = make_ctx(generic_sysfs, generic_registry, mmcli_path=fake, mmcli_timeout="300ms")
    collector = ModemCollector(ctx)
    start = time.monotonic()
    samples = collector.collect()
    elapsed = time.monotonic() - start
    assert elapsed < 1.5, f"collection took {elapsed:.2f}s despite a 0.3s mmcli budget"
    assert collector.status[0] == "degraded"
    assert "mmcli -L -J timed out after 0.3s and was killed" in collector.status[1]
    assert any(s.name == "belabox_modem_info" for s in samples)
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), f"mmcli child {pid} left running"


def test_one_timeout_stops_the_cycle(generic_sysfs, generic_registry, tmp_path):
    calls = tmp_path / "calls"
    fake = _script(tmp_path / "mmcli", f"""echo "$*" >> {calls}
case "$1" in
  -L) echo '{{"modem-list":["/org/freedesktop/ModemManager1/Modem/0","/org/freedesktop/ModemManager1/Modem/1"]}}' ;;
  *) exec sleep 30 ;;
esac
""")
    collector = ModemCollector(make_ctx(generic_sysfs, generic_registry, mmcli_path=fake, mmcli_timeout="200ms"))
    start = time.monotonic()
    collector.collect()
    assert time.monotonic() - start < 1.0
    assert calls.read_text().splitlines() == ["-L -J", "-m 0 -J"]
    # The next cycle tries again.
    collector.collect()
    assert calls.read_text().splitlines()[2:] == ["-L -J", "-m 0 -J"]
