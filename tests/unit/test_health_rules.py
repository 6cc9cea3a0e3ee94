"""Health rules, staleness and roll-up: every status transition, with tidewatch's bugs fixed."""

from __future__ import annotations

import json

import pytest

from belabox_metrics.health import registry as health
from belabox_metrics.health.registry import (
    DEGRADED,
    ERROR,
    OK,
    Registry,
    StorageFacts,
    TimeFacts,
    UploaderFacts,
    rollup,
    storage_health,
    time_health,
    uploader_health,
)


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1000.0):
        self.wall, self.mono = wall, mono

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s


# --- uploader ------------------------------------------------------------------------------

def up(**kw) -> tuple[str, str, dict]:
    kw.setdefault("upload_interval_s", 60.0)
    kw.setdefault("succeeded", True)
    return uploader_health(UploaderFacts(**kw))


def test_uploader_ok_with_guide_details():
    status, msg, d = up(pending_count=120, since_success_s=10.4, last_upload_wall=1_705_314_590.0)
    assert (status, msg) == (OK, "uploading metrics")
    assert d["last_upload_time"] == "2024-01-15T10:29:50Z"
    assert d["pending_count"] == 120 and d["time_since_upload_seconds"] == 10
    assert d["last_error"] is None and d["last_status"] is None


def test_uploader_a_failure_is_degraded_not_error_and_says_since_when():  # W6
    status, msg, d = up(pending_count=50, since_success_s=70, last_cycle_failed=True,
                        last_error="cannot connect to vm:8428: connection refused", last_error_wall=1_705_314_590.0)
    assert status == DEGRADED
    assert msg == "cannot connect to vm:8428: connection refused since 10:29:50 UTC"
    assert d["last_error"] == "cannot connect to vm:8428: connection refused"
    assert d["last_error_time"] == "2024-01-15T10:29:50Z"


def test_uploader_elevated_and_high_backlog_thresholds():
    assert up(pending_count=4999)[0] == OK
    assert up(pending_count=5000)[:2] == (DEGRADED, "elevated backlog: 5000 samples pending")
    assert up(pending_count=10000)[:2] == (DEGRADED, "high backlog: 10000 samples pending")


def test_uploader_ok_only_within_three_intervals_of_a_2xx():
    assert up(pending_count=10, since_success_s=180)[0] == OK
    status, msg, _ = up(pending_count=10, since_success_s=181)
    assert status == DEGRADED and "181s" in msg


def test_uploader_never_succeeded_is_not_ok():
    status, msg, d = up(succeeded=False, pending_count=30, since_success_s=5)
    assert (status, msg) == (DEGRADED, "no successful upload yet (30 samples pending)")
    assert d["last_upload_time"] is None


def test_uploader_silence_without_backlog_is_not_a_symptom():
    status, msg, _ = up(pending_count=0, since_success_s=3600, last_upload_wall=1_705_314_590.0)
    assert status == OK and msg.startswith("up to date")


def test_uploader_error_after_ten_minutes_with_large_backlog():
    assert up(pending_count=10000, since_success_s=600)[0] == DEGRADED
    assert up(pending_count=9999, since_success_s=601)[0] == DEGRADED
    status, msg, _ = up(pending_count=10000, since_success_s=601)
    assert status == ERROR and "601s" in msg


@pytest.mark.parametrize("code", [401, 403])
def test_uploader_error_when_server_rejects_token(code):
    status, msg, d = up(last_status=code, token_refused_status=code, last_error=f"server refused the token ({code})")
    assert (status, msg) == (ERROR, f"server refused the token ({code})") and d["last_status"] == code


def test_uploader_error_when_token_unusable():
    status, msg, _ = up(token_error="/etc/belabox-metrics/api-token: permission denied")
    assert status == ERROR and "permission denied" in msg


def test_uploader_disabled_is_ok_and_accepts_a_mapping():
    status, msg, _ = uploader_health({"upload_interval_s": 60.0, "enabled": False, "pending_count": 99999})
    assert status == OK and "disabled" in msg


def test_uploader_recovery_back_to_ok():
    assert up(pending_count=20000, since_success_s=900)[0] == ERROR
    assert up(pending_count=100, since_success_s=1)[0] == OK


def test_uploader_parked_for_an_unverified_clock_is_not_ok():
    status, msg, d = up(succeeded=False, parked_by_reason={"clock_unverified": 3354}, parked_batches=3,
                        parked_bytes=9000, since_success_s=40)
    assert status == DEGRADED and msg.startswith("clock not verified: 3 batches parked")
    assert d["parked_count"] == 3354 and d["parked_bytes"] == 9000 and d["last_upload_time"] is None


def test_uploader_a_request_hanging_on_the_wire_shows_while_it_hangs():
    status, msg, _ = up(since_success_s=20, inflight_s=12.5, upload_interval_s=1.0)
    assert (status, msg) == (DEGRADED, "server not answering: no answer for 12s")
    assert up(since_success_s=2, inflight_s=0.5, upload_interval_s=1.0)[0] == OK


# --- storage -------------------------------------------------------------------------------

def st(**kw) -> tuple[str, str, dict]:
    kw.setdefault("path", "/var/lib/belabox-metrics/metrics.db")
    kw.setdefault("wal_threshold_bytes", 64 << 20)
    return storage_health(StorageFacts(**kw))


def test_storage_ok_with_details():
    status, msg, d = st(database_size_bytes=1048576, wal_size_bytes=4096, pending_count=120,
                        dropped={"max_size": 3, "invalid": 1})
    assert (status, msg) == (OK, "storage operational")
    assert d == {"database_size_bytes": 1048576, "wal_size_bytes": 4096, "pending_count": 120,
                 "path": "/var/lib/belabox-metrics/metrics.db", "persistence": True,
                 "dropped": {"invalid": 1, "max_size": 3}}


def test_storage_wal_threshold_follows_config():  # W27: not a fixed 64 MiB
    assert st(wal_threshold_bytes=8 << 20, wal_size_bytes=8 * 1048576)[0] == OK
    status, msg, _ = st(wal_threshold_bytes=8 << 20, wal_size_bytes=8 * 1048576 + 1)
    assert status == DEGRADED and "wal_checkpoint_size_mb (8)" in msg
    assert st(wal_threshold_bytes=128 << 20, wal_size_bytes=100 * 1048576)[0] == OK


def test_storage_volatile_spool_is_degraded():
    status, msg, d = st(path="/run/belabox-metrics/metrics.db", persistent=False,
                        volatile_reason="/var/lib/belabox-metrics: read-only file system")
    assert status == DEGRADED and "volatile" in msg and "read-only file system" in msg
    assert d["persistence"] is False and d["path"] == "/run/belabox-metrics/metrics.db"


def test_storage_quarantined_db_is_degraded():
    status, msg, d = st(quarantined="/var/lib/belabox-metrics/metrics.db.corrupt-1700000000")
    assert status == DEGRADED and "corrupt-1700000000" in msg and d["quarantined"].endswith("1700000000")


def test_storage_full_is_degraded_and_reasons_combine():
    status, msg, _ = st(full=True, persistent=False)
    assert status == DEGRADED and "full" in msg and "volatile" in msg


def test_storage_error_when_commit_fails():
    status, msg, _ = st(commit_error="disk I/O error", persistent=False)
    assert status == ERROR and "disk I/O error" in msg


# --- time ----------------------------------------------------------------------------------

def tm(**kw) -> tuple[str, str, dict]:
    kw.setdefault("threshold_ms", 2000)
    return time_health(TimeFacts(**kw))


def test_time_ok_from_kernel_or_server():
    assert tm(synchronized=True, source="kernel")[:2] == (OK, "time synchronized")
    status, _, d = tm(synchronized=True, source="server", skew_ms=150)
    assert status == OK and d == {"skew_ms": 150, "synchronized": True, "source": "server"}


def test_time_skew_over_threshold_is_degraded():
    assert tm(synchronized=True, source="server", skew_ms=-2000)[0] == OK
    status, msg, _ = tm(synchronized=False, source="server", skew_ms=-2001)
    assert status == DEGRADED and "2001ms behind" in msg and "corrected" in msg
    status, msg, _ = tm(synchronized=True, source="kernel", skew_ms=5000)
    assert status == DEGRADED and "ahead of" in msg and "corrected" not in msg


def test_time_unreachable_url_alone_is_never_error():  # W6, W22
    status, msg, d = tm(synchronized=False, source="none", last_error="connection refused")
    assert status == DEGRADED and "connection refused" in msg
    assert d["skew_ms"] is None  # never a fake 0 (W21)
    assert tm(synchronized=True, source="kernel", last_error="connection refused")[0] == OK


# --- registry, staleness and roll-up ------------------------------------------------------------

def test_stale_component_turns_degraded_then_recovers():  # W5
    clk = FakeClock()
    reg = Registry(clock=lambda: clk.wall, monotonic=lambda: clk.mono)
    reg.update("uploader", OK, "uploading metrics", stale_after=180, pending_count=3)
    clk.advance(180)
    assert reg.get("uploader").status == OK
    clk.advance(1)
    c = reg.get("uploader")
    assert c.status == DEGRADED and c.message == "no update for 181s (last: uploading metrics)"
    assert reg.overall() == DEGRADED
    assert reg.report()["components"]["uploader"]["details"] == {"pending_count": 3}
    reg.update("uploader", OK, "uploading metrics", stale_after=180)
    assert reg.overall() == OK


def test_stale_error_stays_error_and_no_stale_after_never_ages():
    clk = FakeClock()
    reg = Registry(clock=lambda: clk.wall, monotonic=lambda: clk.mono)
    reg.update("storage", ERROR, "cannot write", stale_after=10)
    reg.update("collector.cpu", OK, "collecting metrics")
    clk.advance(1e6)
    assert reg.get("storage").status == ERROR
    assert reg.get("collector.cpu").status == OK


def comp(status: str) -> health.Component:
    return health.Component(status, "", 0.0)


@pytest.mark.parametrize("states, expected", [
    ({}, OK),
    ({"collector.cpu": OK, "uploader": OK, "storage": OK, "time": OK, "discovery": OK}, OK),
    ({"collector.cpu": ERROR, "collector.meminfo": ERROR, "uploader": OK}, ERROR),
    ({"collector.cpu": ERROR, "collector.meminfo": OK}, DEGRADED),
    ({"collector.cpu": OK, "uploader": ERROR}, ERROR),
    ({"collector.cpu": OK, "storage": ERROR}, ERROR),
    ({"collector.cpu": OK, "time": ERROR}, ERROR),
    ({"collector.cpu": OK, "discovery": ERROR}, ERROR),
    ({"collector.cpu": OK, "discovery": DEGRADED}, DEGRADED),
    ({"collector.cpu": OK, "time": DEGRADED}, DEGRADED),
])
def test_rollup(states, expected):
    assert rollup({n: comp(s) for n, s in states.items()}) == expected


def test_report_shape_matches_deployment_guide():
    clk = FakeClock(wall=1_705_314_600.0)
    reg = Registry(clock=lambda: clk.wall, monotonic=lambda: clk.mono)
    clk.advance(3600)
    reg.update("collector.cpu", OK, "collecting metrics", metrics_collected=8)
    status, msg, details = time_health(TimeFacts(threshold_ms=2000, synchronized=True, source="server",
                                                 skew_ms=150))
    reg.update("time", status, msg, **details)
    report = json.loads(json.dumps(reg.report()))
    assert list(report) == ["status", "timestamp", "uptime_seconds", "components"]
    assert report["status"] == OK and report["uptime_seconds"] == 3600
    assert report["timestamp"] == "2024-01-15T11:30:00Z"
    assert report["components"]["collector.cpu"] == {
        "status": "ok", "message": "collecting metrics", "timestamp": "2024-01-15T11:30:00Z",
        "details": {"metrics_collected": 8}}
    assert report["components"]["time"]["details"]["skew_ms"] == 150


def test_update_takes_a_rule_verdict_positionally():
    reg = Registry()
    reg.update("storage", *storage_health(StorageFacts(path="/x/metrics.db", wal_threshold_bytes=1 << 20)),
               stale_after=60)
    c = reg.get("storage")
    assert (c.status, c.message, c.details["path"], c.stale_after) == (OK, "storage operational", "/x/metrics.db", 60)
    reg.update("collector.cpu", OK, "collecting metrics", {"a": 1}, metrics_collected=8)
    assert reg.get("collector.cpu").details == {"a": 1, "metrics_collected": 8}


def test_update_rejects_unknown_status():
    with pytest.raises(ValueError):
        Registry().update("x", "fine", "")


def test_uploader_error_when_the_endpoint_refuses_everything():
    status, msg, _ = up(config_error="HTTP 404 (not found)", last_cycle_failed=True, last_error="HTTP 404")
    assert status == ERROR and "404" in msg


def test_uploader_waiting_for_token_wording():
    status, msg, _ = up(token_error="token file /x does not exist (yet)")
    assert status == ERROR and msg.startswith("waiting for token: token file /x")
