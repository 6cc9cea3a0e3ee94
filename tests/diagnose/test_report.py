"""The report fits an 80-column SSH terminal, colours only when asked, and says the key facts."""

from __future__ import annotations

import re

from belabox_metrics.commands import diagnose as diagnose_command
from belabox_metrics.diagnose import facts as diagnose_facts
from belabox_metrics.diagnose import gather as diagnose
from belabox_metrics.diagnose.render import render
from belabox_metrics.samples import sample

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _report(**over):
    r = {
        "status": "degraded", "device_id": "3f2a9c1e55aa", "generated": "2026-11-27T18:00:00Z",
        "service": {"state": "running", "pid": 4242, "uptime_seconds": 7384, "health_status": "degraded",
                    "url": "http://127.0.0.1:9100"},
        "components": {
            "collector.cpu": {"status": "ok", "message": "collecting metrics"},
            "uploader": {"status": "degraded", "message": "cannot reach http://vm.example:8428/api/v1/import: "
                         "connection refused (retrying with backoff, next attempt in 30 s, 1,234 samples pending)"},
            "storage": {"status": "ok", "message": "storage operational"},
        },
        "spool": {"path": "/var/lib/belabox-metrics/metrics.db", "persistent": True, "source": "the spool file",
                  "pending_samples": 123456, "pending_bytes": 2_345_678, "oldest_age_seconds": 3723,
                  "db_size_bytes": 4_000_000, "wal_size_bytes": 65536, "dropped": {"full": 10, "invalid": 0}},
        "uploads": {"url": "http://vm.example:8428/api/v1/import", "last_success": "2026-11-27T17:00:00Z",
                    "since_success_seconds": 3600, "last_error": "Unauthorized", "http_status": 401,
                    "drain_estimate_seconds": 46.9, "max_bytes_per_second": 50000},
        "clock": {"synchronised": False, "skew_ms": 2500.0, "message": "clock skew 2500 ms above 2000 ms"},
        "devices": {"source": "the agent's /metrics",
                    "modems": [{"modem": "a1b2c3", "operator": "Vodafone.de", "technology": "lte",
                                "signal_percent": 72.0, "rsrp_dbm": -97.0}],
                    "filesystems": [{"mountpoint": "/", "used_percent": 43.2, "avail_bytes": 12e9,
                                     "size_bytes": 21e9}],
                    "interfaces": [{"device": "wwan0", "carrier": 1.0, "rx_bps": 1.2e6, "tx_bps": 5.4e6},
                                   {"device": "eth0", "carrier": 0.0}],
                    "temperatures": [{"sensor": "soc-thermal", "celsius": 61.5}]},
        "board": {"text": "rk3588-orangepi-5-plus (Orange Pi 5 Plus)"},
        "config": {"source": "/etc/belabox-metrics/config.yaml", "problems": []},
        "problems": [],
    }
    r.update(over)
    return r


def test_fits_80_columns_and_has_the_facts():
    text = render(_report())
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert not ANSI.search(text)
    for fact in ("DEGRADED", "PID 4242", "up 2h03m", "123,456 samples pending", "oldest 1h02m",
                 "full 10", "HTTP 401: Unauthorized", "~47s", "NOT synchronised", "skew 2500 ms",
                 "Vodafone.de, lte, signal 72%, RSRP -97 dBm", "/ 43% used", "wwan0 carrier up",
                 "rx 1.2 Mbit/s", "eth0 NO carrier", "soc-thermal 62C", "Orange Pi 5 Plus",
                 "config.yaml: ok", "next attempt"):
        assert fact in text, fact


def test_colour_only_when_asked_and_width_unchanged():
    plain = render(_report())
    coloured = render(_report(), colour=True)
    assert "\x1b[33mDEGRADED\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_not_running_report():
    r = _report(status="error", service={"state": "not running", "reason": diagnose.not_running_reason(
        {"path": "/var/lib/belabox-metrics/metrics.db.lock", "exists": True, "held": False, "pid": 999999,
         "pid_alive": False}, "http://127.0.0.1:9100", "Connection refused",
        {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78"})}, components={})
    text = render(r)
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.split())
    assert "not running: stale lock file" in flat and "PID 999999 no longer exists" in flat
    assert "last exit status 78" in flat


def test_colour_rules():
    class Tty:
        def isatty(self):
            return True
    assert diagnose_command.use_colour(Tty(), {"TERM": "xterm"})
    assert not diagnose_command.use_colour(Tty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert not diagnose_command.use_colour(object(), {"TERM": "xterm"})


def test_facts_from_samples():
    samples = [
        sample("belabox_modem_info", 1, {"modem": "m1", "operator": "Telekom", "access_technology": "5gnr"}),
        sample("belabox_modem_signal_quality_percent", 55, {"modem": "m1"}),
        sample("belabox_modem_rsrp_dbm", -101, {"modem": "m1"}),
        sample("node_filesystem_size_bytes", 1000, {"mountpoint": "/", "device": "/dev/mmcblk0p2"}),
        sample("node_filesystem_avail_bytes", 250, {"mountpoint": "/", "device": "/dev/mmcblk0p2"}),
        sample("node_network_carrier", 1, {"device": "usb0"}),
        sample("node_network_receive_bytes_total", 1000, {"device": "usb0"}),
        sample("node_network_transmit_bytes_total", 500, {"device": "usb0"}),
    ]
    assert diagnose_facts.modems(samples) == [{"modem": "m1", "operator": "Telekom", "technology": "5gnr",
                                               "signal_percent": 55.0, "rsrp_dbm": -101.0}]
    assert diagnose_facts.filesystems(samples)[0]["used_percent"] == 75.0
    ifaces = diagnose_facts.interfaces(samples)
    diagnose_facts.add_rates(ifaces, {"usb0": (2000.0, 400.0)}, 2.0)
    assert ifaces[0]["rx_bps"] == 4000.0 and "tx_bps" not in ifaces[0]  # a counter that went back: no rate


def test_verdict_and_drain_estimate():
    assert diagnose_facts.verdict({"service": {"state": "running", "health_status": "ok"}}) == "ok"
    assert diagnose_facts.verdict({"service": {"state": "running", "health_status": "degraded"}}) == "degraded"
    assert diagnose_facts.verdict({"service": {"state": "not running"}}) == "error"
    assert diagnose_facts.verdict({"service": {"state": "running", "health_status": "ok"},
                                   "config": {"problems": ["x"]}}) == "error"
    assert diagnose_facts.drain_estimate(100_000, 50_000) == 2.0
    assert diagnose_facts.drain_estimate(0, 50_000) == 0.0
    assert diagnose_facts.drain_estimate(100, 0) is None


def test_systemctl_show_parse():
    assert diagnose.parse_systemctl_show("ActiveState=failed\nResult=exit-code\nExecMainStatus=78\n") == {
        "ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78"}


def test_upload_facts_from_the_uploader_component():
    health = {"components": {"uploader": {
        "status": "error", "message": "HTTP 401 (the server refused the token): upload stopped",
        "details": {"last_upload_time": None, "pending_count": 10, "time_since_upload_seconds": 61}}}}
    metrics = [sample("metrics_collector_upload_failures_total", 3, {"reason": "auth"}),
               sample("metrics_collector_uploaded_samples_total", 0)]
    f = diagnose_facts.upload_facts(health, metrics)
    assert f["http_status"] == 401
    assert f["last_error"] == "the server refused the token: upload stopped"
    assert f["failures"] == {"auth": 3.0} and f["since_success_seconds"] == 61


def test_stream_facts_and_row():
    samples = [sample("belabox_process_up", 1, {"process": "belaUI"}),
               sample("belabox_process_up", 0, {"process": "belacoder"}),
               sample("belabox_process_restarts_total", 7, {"process": "belacoder"}),
               sample("belabox_process_up", 1, {"process": "srtla_send"}),
               sample("belabox_encoder_bitrate_bps", 6_000_000),
               sample("belabox_bond_link_info", 1, {"device": "wwan0", "address": "10.1.2.3"}),
               sample("belabox_bond_link_info", 1, {"device": "usb0", "address": "192.168.8.100"}),
               sample("belabox_network_duplicate_address", 1, {"device": "usb0"}),
               sample("belabox_network_duplicate_address", 0, {"device": "wwan0"})]
    st = diagnose_facts.stream(samples)
    assert st["processes"]["belacoder"] == {"up": False, "restarts": 7}
    assert st["links"] == ["usb0", "wwan0"] and st["duplicates"] == ["usb0"]
    assert diagnose_facts.stream([sample("node_load1", 0.5)]) is None  # no belaUI on this box
    from belabox_metrics.diagnose.render import _devices, _Out
    out = _Out(80, False)
    _devices(out, {"stream": st})
    text = out.text()
    assert "belacoder DOWN (7 restarts)" in text and "DUPLICATE IPv4 on usb0" in text
    assert "bitrate 6.0 Mbit/s" in text


def test_header_keeps_the_whole_time_and_the_verdict():
    text = render({"status": "degraded", "device_id": "bb-0123456789ab", "generated": "2026-12-07T15:04:05.123Z"})
    first = text.splitlines()[0]
    assert "2026-12-07T15:04:05Z" in first and first.rstrip().endswith("DEGRADED") and len(first) <= 80
    long_id = render({"status": "ok", "device_id": "x" * 70, "generated": "2026-12-07T15:04:05Z"})
    assert "2026-12-07T15:04:05Z" in long_id.splitlines()[0][:80] or "2026-12-07T15:04" in long_id
