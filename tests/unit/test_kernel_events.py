"""The kernel-event reader and collector against a fake journalctl (a real process)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.belabox.collector import BelaboxCollector
from belabox_metrics.collectors.kernel_events import KernelEventsCollector, recent_kernel_events
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.devices.model import DeviceInfo, Node
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.health import registry as health
from tests.support.fakejournal import FakeJournal, alive, wait_for
from tests.support.proctree import BOARD_TREES, STREAM_TREE

DISCONNECT = "usb 1-1: USB disconnect, device number 5"
RESET = "usb 1-1: reset high-speed USB device number 6 using xhci-hcd"
UNDERVOLT = "soctherm: OC ALARM 0x00000001"
NOISE = "usb 1-1: new high-speed USB device number 6 using xhci-hcd"


def _ctx(registry=None, lines=50, enabled=True) -> CollectorContext:
    cfg = configmod.loads(f"belabox:\n  kernel_event_lines: {lines}\n  kernel_events: {str(enabled).lower()}\n")
    # This kernel's procfs: the journal (here a fake journalctl) is read only for a live one.
    return CollectorContext(config=cfg, procfs="/proc", sysfs="/sys", rootfs=str(STREAM_TREE / "root"),
                            registry=registry)


def _counts(samples):
    return {tuple(sorted(s.labels)): s.value for s in samples if s.name == "belabox_kernel_events_total"}


@pytest.fixture
def collectors():
    made = []
    yield made
    for c in made:
        c.close()


def _make(collectors, fake, **kw):
    c = KernelEventsCollector(_ctx(**kw), journalctl=[str(fake.path)], retry_delay=0.1)
    collectors.append(c)
    return c


def test_replay_then_follow_counts_each_line_once(tmp_path, collectors):
    fake = FakeJournal(tmp_path / "j")
    fake.replay(DISCONNECT, NOISE, RESET)
    fake.follow(UNDERVOLT)
    modems = [SimpleNamespace(usb_path="1-1", modem_key="m-7f3a")]
    c = _make(collectors, fake, registry=SimpleNamespace(modems=lambda: modems, interfaces=lambda: []))
    first = c.collect()
    assert c.problems == []
    assert _counts(first)[(("device", "1-1"), ("kind", "usb_disconnect"), ("modem", "m-7f3a"))] == 1
    assert _counts(first)[(("device", "1-1"), ("kind", "usb_reset"), ("modem", "m-7f3a"))] == 1
    fake.follow(UNDERVOLT, raw="this is not json\n\n[1, 2]\n")
    assert wait_for(lambda: _counts(c.collect()).get((("device", "soctherm"), ("kind", "under_voltage"))) == 2)
    # The follow call started after the last replayed entry, so nothing was counted twice.
    follows = [call for call in fake.calls() if " -f " in f" {call} "]
    assert follows == ["-k -f -o json --no-pager --after-cursor=s=abc;i=3"]
    assert [e["kind"] for e in c.recent_events()] == ["usb_disconnect", "usb_reset", "under_voltage",
                                                      "under_voltage"]
    assert c.recent_events()[0]["message"] == DISCONNECT
    assert c._follower.bad_lines == 2


def test_recent_events_keep_only_the_last_n_lines(tmp_path, collectors):
    fake = FakeJournal(tmp_path / "j")
    fake.replay(*[f"usb 1-{i}: USB disconnect, device number {i}" for i in range(1, 8)])
    c = _make(collectors, fake, lines=3)
    c.collect()
    assert [e["device"] for e in c.recent_events()] == ["1-5", "1-6", "1-7"]
    assert sum(_counts(c.collect()).values()) == 7


def test_journalctl_that_exits_is_reported_and_restarted_from_its_cursor(tmp_path, collectors):
    fake = FakeJournal(tmp_path / "j", mode="exit-once")
    fake.replay(DISCONNECT)
    fake.follow(RESET)
    c = _make(collectors, fake)
    c.collect()
    assert wait_for(lambda: c._follower.state()[0] == "failed" or len(fake.calls()) >= 3)
    # Whichever cycle saw the failure, the reader came back and counted each line once.
    assert wait_for(lambda: len([x for x in fake.calls() if "-f" in x.split()]) >= 2)
    assert wait_for(lambda: c._follower.state()[0] == "following")
    fake.follow(UNDERVOLT)
    assert wait_for(lambda: ((("device", "soctherm"), ("kind", "under_voltage")) in _counts(c.collect())))
    counts = _counts(c.collect())
    assert counts[(("device", "1-1"), ("kind", "usb_disconnect"))] == 1
    assert counts[(("device", "1-1"), ("kind", "usb_reset"))] == 1
    second = [x for x in fake.calls() if "-f" in x.split()][1]
    assert "--after-cursor=s=abc;i=2" in second


def test_exit_shows_as_degraded_health(tmp_path, collectors):
    fake = FakeJournal(tmp_path / "j", mode="fail")
    c = _make(collectors, fake)
    other = BelaboxCollector(_ctx())
    reg = health.Registry()
    runner = CollectorRunner([c, other], configmod.Config(), reg, None)
    try:
        runner.run_all()
        assert wait_for(lambda: c._follower.state()[0] == "failed")
        runner.run_all()
        comp = reg.get("collector.kernel_events")
        assert comp.status == health.DEGRADED
        assert "exited with status 1" in comp.message and "Input/output error" in comp.message
        assert reg.get("collector.belabox").status == health.OK
    finally:
        runner.close()


def test_missing_journalctl_is_degraded_and_the_rest_goes_on(tmp_path, collectors):
    c = KernelEventsCollector(_ctx(), journalctl=[str(tmp_path / "no-such-journalctl")], retry_delay=0.1)
    collectors.append(c)
    reg = health.Registry()
    runner = CollectorRunner([c, BelaboxCollector(_ctx())], configmod.Config(), reg, None)
    try:
        samples = runner.run_all()
        assert wait_for(lambda: c._follower.state()[0] == "failed")
        samples = runner.run_all()
        comp = reg.get("collector.kernel_events")
        assert comp.status == health.DEGRADED and "not found" in comp.message
        assert any(s.name == "belabox_process_up" for s in samples)
        assert not any(s.name == "belabox_kernel_events_total" for s in samples)
    finally:
        runner.close()


def test_permission_hint_names_the_fix(tmp_path, collectors):
    fake = FakeJournal(tmp_path / "j", mode="hint")
    c = _make(collectors, fake)
    c.collect()
    assert wait_for(lambda: c._follower.state()[0] == "failed")
    c.collect()
    assert any("systemd-journal" in p for p in c.problems)


def test_close_stops_the_journalctl_process(tmp_path):
    fake = FakeJournal(tmp_path / "j")
    c = KernelEventsCollector(_ctx(), journalctl=[str(fake.path)])
    c.collect()
    assert wait_for(lambda: len(fake.pids()) == 2)
    follow_pid = fake.pids()[-1]
    assert alive(follow_pid)
    c.close()
    assert wait_for(lambda: not alive(follow_pid))
    assert not c._follower._thread.is_alive()


def test_disabled_by_config_starts_nothing(tmp_path):
    fake = FakeJournal(tmp_path / "j")
    c = KernelEventsCollector(_ctx(enabled=False), journalctl=[str(fake.path)])
    assert c.collect() == []
    c.close()
    assert fake.calls() == []


@pytest.mark.parametrize(("board", "expected"), [
    ("rk3588-orangepi5plus", {(("device", "hdmirx"), ("kind", "hdmirx_signal_lost")): 2,
                              (("device", "hdmirx"), ("kind", "hdmirx_audio_underflow")): 1,
                              (("device", "hdmirx"), ("kind", "hdmirx_invalid_timing")): 1,
                              (("device", "5-1"), ("kind", "usb_disconnect")): 1,
                              (("device", "3-1"), ("kind", "usb_reset")): 1}),
    ("rk3588-rock5b", {(("device", "6-1"), ("kind", "usb_reset")): 2,
                       (("device", "belacoder"), ("kind", "oom_kill")): 1,
                       (("device", "mmc1"), ("kind", "mmc_error")): 1}),
    ("jetson-nano", {(("device", "soctherm"), ("kind", "under_voltage")): 3,
                     (("device", "1-2"), ("kind", "usb_disconnect")): 1}),
])
def test_a_recorded_tree_reads_its_own_journal_not_the_hosts(tmp_path, board, expected):
    tree = BOARD_TREES[board]
    ctx = CollectorContext(config=configmod.Config(), procfs=str(tree / "proc"), sysfs=str(tree / "sys"),
                           rootfs=str(tree / "root"))
    fake = FakeJournal(tmp_path / "j")
    c = KernelEventsCollector(ctx, journalctl=[str(fake.path)])
    try:
        assert _counts(c.collect()) == expected
        assert _counts(c.collect()) == expected  # read once, not again each cycle
        assert c.problems == []
        assert fake.calls() == []
        assert len(c.recent_events()) == sum(expected.values())
    finally:
        c.close()


def test_a_tree_without_a_recorded_journal_has_no_events(tmp_path):
    (tmp_path / "proc").mkdir()
    ctx = CollectorContext(config=configmod.Config(), procfs=str(tmp_path / "proc"))
    c = KernelEventsCollector(ctx)
    assert c.collect() == [] and c.problems == []


def _qmi_modem(port: str) -> list:
    usb = f"/devices/platform/fc400000.usb/xhci-hcd.8.auto/usb5/{port}"
    usb_node = Node(usb, "usb", "usb_device", "usb", {"idVendor": "2c7c", "idProduct": "0125", "serial": "EC25X"})
    iface = Node(f"{usb}/{port}:1.4", "usb", "usb_interface", "qmi_wwan")
    return [DeviceInfo("usb", usb, port, "usb_device", "usb", attrs=usb_node.attrs),
            DeviceInfo("net", f"{usb}/{port}:1.4/net/wwan0", "wwan0", "wwan", "qmi_wwan", flags=frozenset({"device"}),
                       parents=(iface, usb_node))]


def test_usb_events_name_the_modem_discovery_knows_on_that_port(tmp_path, collectors):
    registry = DeviceRegistry()
    registry.replace_all(_qmi_modem("5-1"))
    (modem,) = registry.modems()
    fake = FakeJournal(tmp_path / "j")
    fake.replay("usb 5-1: reset high-speed USB device number 3 using xhci-hcd",
                "usb 3-1: reset high-speed USB device number 2 using xhci-hcd")
    c = _make(collectors, fake, registry=registry)
    counts = _counts(c.collect())
    assert counts[(("device", "5-1"), ("kind", "usb_reset"), ("modem", modem.key))] == 1
    assert counts[(("device", "3-1"), ("kind", "usb_reset"))] == 1
    # The modem is unplugged (discovery forgets it) before its disconnect line is read:
    # the port is remembered, so the line still names the modem.
    registry.replace_all([])
    fake.follow("usb 5-1: USB disconnect, device number 3")
    assert wait_for(lambda: _counts(c.collect()).get(
        (("device", "5-1"), ("kind", "usb_disconnect"), ("modem", modem.key))) == 1)


def test_recent_kernel_events_for_diagnose(tmp_path):
    fake = FakeJournal(tmp_path / "j")
    fake.replay(DISCONNECT, NOISE, UNDERVOLT)
    events, problems = recent_kernel_events(_ctx(lines=1), journalctl=[str(fake.path)])
    assert problems == [] and [e["kind"] for e in events] == ["under_voltage"]
    follow_pid = fake.pids()[-1]
    assert wait_for(lambda: not alive(follow_pid))  # nothing left running behind diagnose
    events, problems = recent_kernel_events(_ctx(), journalctl=[str(tmp_path / "missing")])
    assert events == [] and "not found" in problems[0]
