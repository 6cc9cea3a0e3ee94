"""The uploader against the real VictoriaMetrics (Debian's binary), read back through /api/v1/export."""

from __future__ import annotations

import time

import pytest

from belabox_metrics.health import registry as health
from belabox_metrics.samples import Batch, sample
from tests.support.faultproxy import FaultProxy
from tests.support.importserver import ImportServer
from tests.support.uploading import DEVICE, Env, fill, make_config
from tests.support.vm import vm  # noqa: F401 - the fixture


def exported_samples(vm, match='{__name__=~"test_metric|live|old"}') -> list[tuple]:  # noqa: F811
    out = []
    for s in vm.export(match):
        key = tuple(sorted(s["metric"].items()))
        out.extend((key, t, v) for t, v in zip(s["timestamps"], s["values"], strict=True))
    return out


def test_samples_arrive_with_names_labels_and_timestamps(vm, tmp_path):  # noqa: F811
    env = Env(tmp_path, make_config(vm.import_url, extra_labels={"fleet": "eu", "rig": 7}))
    try:
        now = int(time.time() * 1000)
        env.spool.append(Batch((
            sample("node_network_receive_bytes_total", 123456789.0, {"device": "wwan0"}),
            sample("node_load1", 0.25),
            sample("belabox_modem_signal_rssi_dbm", -71.5, {"modem": "m1", "device_id": "spoofed"}),
            sample("node_thermal_zone_temp", 47.8, {"type": "soc", "zone": "0"}, ts_ms=now - 1234),
        ), now, "boot", 0, True))
        env.spool.flush()
        res = env.uploader.cycle()
        assert res.ok, res.error
        vm.force_flush()
        got = {s["metric"]["__name__"]: s for s in vm.export(f'{{device_id="{DEVICE}"}}')}
        assert set(got) == {"node_network_receive_bytes_total", "node_load1", "belabox_modem_signal_rssi_dbm",
                            "node_thermal_zone_temp"}
        rx = got["node_network_receive_bytes_total"]
        assert rx["metric"] == {"__name__": "node_network_receive_bytes_total", "device": "wwan0",
                                "device_id": DEVICE, "fleet": "eu", "rig": "7"}
        assert rx["values"] == [123456789.0] and rx["timestamps"] == [now]
        assert got["belabox_modem_signal_rssi_dbm"]["metric"]["device_id"] == DEVICE
        assert got["node_thermal_zone_temp"]["timestamps"] == [now - 1234]
        assert got["node_load1"]["values"] == [0.25]
        # Nothing was silently refused by the server (it answers 204 either way).
        assert vm.metric("vm_rows_invalid_total", 'type="vmimport"') == 0
        assert env.uploader_health().status == health.OK
    finally:
        env.close()


def test_invalid_samples_never_reach_the_server(vm, tmp_path):  # noqa: F811
    env = Env(tmp_path, make_config(vm.import_url))
    try:
        now = int(time.time() * 1000)
        env.spool.append(Batch((sample("test_metric", 1.0), sample("test_metric_nan", float("nan")),
                                sample("test_metric_1970", 1.0, ts_ms=5000)), now, "boot", 0, True))
        env.spool.flush()
        assert env.uploader.cycle().ok
        vm.force_flush()
        assert [s["metric"]["__name__"] for s in vm.export('{__name__=~"test_metric.*"}')] == ["test_metric"]
        assert vm.metric("vm_rows_invalid_total", 'type="vmimport"') == 0
        assert vm.metric("vm_rows_ignored_total", 'reason="small_timestamp"') == 0
        assert env.dropped("invalid") == 2
    finally:
        env.close()


def test_server_down_for_a_while_loses_nothing_and_duplicates_nothing(vm, tmp_path):  # noqa: F811
    env = Env(tmp_path, make_config(vm.import_url, batch_size=700, retry={"max_attempts": 2}))
    try:
        expected = fill(env.spool, batches=20, series=50)
        assert env.uploader.cycle().ok
        vm.stop()
        more = fill(env.spool, batches=30, series=50, wall0_ms=expected[-1][1] + 10_000)
        for _ in range(3):  # the link is down: cycles fail, the data stays spooled
            res = env.uploader.cycle()
            assert not res.ok and res.sent_samples == 0
        assert env.pending() == len(more)
        assert env.failures("connect") == 6
        assert env.uploader_health().status == health.DEGRADED
        vm.start()
        res = env.uploader.cycle()
        assert res.ok and res.sent_samples == len(more)
        vm.force_flush()
        got = exported_samples(vm)
        assert len(got) == len(expected) + len(more)  # nothing lost, nothing duplicated
        assert sorted(got) == sorted(expected + more)
        assert env.pending() == 0
    finally:
        env.close()


def test_live_data_reaches_the_server_before_the_backlog(vm, tmp_path):  # noqa: F811
    env = Env(tmp_path, make_config(vm.import_url, batch_size=500, max_bytes_per_second=4000))
    try:
        now = int(time.time() * 1000)
        fill(env.spool, batches=200, series=50, wall0_ms=now - 7_200_000, name="old")
        live = fill(env.spool, batches=1, series=50, wall0_ms=now - 1000, name="live")
        res = env.uploader.cycle(deadline=time.monotonic() + 2.0)
        assert res.ok and res.live_samples == 50
        assert res.backlog_samples < 10_000  # throttled: 4 KB/s for 2 s is a few thousand samples
        vm.force_flush()
        assert sorted(exported_samples(vm, '{__name__="live"}')) == sorted(live)
    finally:
        env.close()


def test_cluster_url_path_is_used_verbatim(tmp_path):
    with ImportServer() as srv:
        url = srv.url("/insert/42/prometheus/api/v1/import")
        env = Env(tmp_path, make_config(url))
        try:
            fill(env.spool, batches=1, series=3)
            assert env.uploader.cycle().ok
            assert [r.path for r in srv.requests] == ["/insert/42/prometheus/api/v1/import"]
        finally:
            env.close()


@pytest.mark.slow
@pytest.mark.parametrize("cap, backlog_batches", [(50_000, 400), (0, 3_000)], ids=["throttled", "unthrottled"])
def test_live_samples_arrive_within_an_interval_during_a_long_drain(vm, tmp_path, cap, backlog_batches):  # noqa: F811
    """Issue "Footprint": with a big backlog and max_bytes_per_second 0, no live sample reached the
    server until the backlog was done. Here a feeder appends a live batch every 0.25 s while the
    uploader thread drains; each live batch must be stored within one upload interval (plus the
    request in flight) of its append, and the backlog must still be draining when it is."""
    interval = 1.0
    proxy = FaultProxy(vm.port).start()  # records when VictoriaMetrics stored each request's samples
    env = Env(tmp_path, make_config(proxy.url, upload_interval=f"{interval:g}s", max_bytes_per_second=cap))
    appended: dict[int, float] = {}
    try:
        fill(env.spool, batches=backlog_batches, series=200, step_ms=1_000, name="old")
        env.uploader.start()
        env.uploader.wake()
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            wall = int(time.time() * 1000)
            env.spool.append(Batch((sample("live", 1.0, {"n": str(len(appended))}),), wall, "boot-a",
                                   time.monotonic_ns(), True))
            appended[wall] = time.monotonic()
            time.sleep(0.25)
        time.sleep(2 * interval)
    finally:
        env.close()
        proxy.stop()
    records = [r for r in proxy.snapshot() if r.forwarded]
    stored_at: dict[int, float] = {}
    old_until = 0.0
    for r in records:
        for key, t in r.samples:
            if '"live"' in key:
                stored_at.setdefault(t, r.stored_at)
            else:
                old_until = max(old_until, r.stored_at)
    late = {w: round(stored_at[w] - a, 2) if w in stored_at else None for w, a in appended.items()
            if w not in stored_at or stored_at[w] - a > interval * (1 + 0.1) + 0.5}
    during = [w for w, a in appended.items() if a < old_until - interval]
    assert len(during) >= 8, f"the backlog drained in {old_until:.1f}: not a long drain; make it bigger"
    assert not late, f"live batches not stored within an interval (append time -> delay): {late}"
