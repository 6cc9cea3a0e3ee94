"""Timekeeping: clock trust, Date-header offsets, re-stamping and parking, with simulated clocks."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from belabox_metrics import config
from belabox_metrics.health.registry import DEGRADED, ERROR, OK, time_health
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform import boundedhttp
from belabox_metrics.platform import clock as timekeeping
from belabox_metrics.platform.clock import NS, Timekeeper, parse_http_date

BOOT_ID = "3924a9d2-0da2-448c-8512-f9008b80b402"
TRUE_AT_BOOT = 1_795_800_000.0  # the real time when the simulated board booted
DAY = 86400.0


class SimClock:
    """A board's clocks: boottime runs from 0, true time = boot + TRUE_AT_BOOT, and the wall
    clock = boot + wall_at_boot, which tests set to 1970, days behind, or step mid-run."""

    def __init__(self, wall_at_boot: float, uptime: float = 20.0):
        self.boot_s = uptime
        self.wall_at_boot = wall_at_boot
        self.mono = 100.0
        self.kernel: bool | None = False
        self.boottime_error = 0.0  # how far boottime has run ahead of true time

    def advance(self, s: float) -> None:
        self.boot_s += s
        self.mono += s

    def wall(self) -> float:
        return self.boot_s + self.wall_at_boot

    def boottime(self) -> int:
        return int(round(self.boot_s * NS))

    def true(self) -> float:
        return self.boot_s + TRUE_AT_BOOT - self.boottime_error

    def exchange(self, tk: Timekeeper, rtt: float = 0.2, server_phase: float = 0.5) -> bool:
        """One request/response with the server; the server stamps Date at ``server_phase`` of the RTT."""
        sent = self.wall()
        self.advance(rtt * server_phase)
        date = formatdate(int(self.true()), usegmt=True)  # Date truncates to the second
        self.advance(rtt * (1 - server_phase))
        return tk.observe_response(date, sent, self.wall())


@pytest.fixture
def procfs(tmp_path):
    d = tmp_path / "proc/sys/kernel/random"
    d.mkdir(parents=True)
    (d / "boot_id").write_text(BOOT_ID + "\n")
    return str(tmp_path / "proc")


def cfg(threshold_ms: int = 2000, check_interval: float = 300.0, url: str = "",
        timeout: float = 10.0) -> config.Config:
    return config.Config(monitoring=config.MonitoringConfig(clock_skew_check_interval=check_interval,
                                                            clock_skew_warn_threshold_ms=threshold_ms),
                         remote=config.RemoteConfig(url=url, timeout=timeout))


def make(procfs: str, clock: SimClock, selfmetrics=None, **kw) -> Timekeeper:
    return Timekeeper(cfg(**kw), procfs=procfs, selfmetrics=selfmetrics, wall=clock.wall,
                      boottime=clock.boottime, monotonic=lambda: clock.mono, kernel_synced=lambda: clock.kernel)


@dataclass
class Slice:
    wall_ms: int
    boot_id: str
    boottime_ns: int
    clock_synced: bool


def stamp(tk: Timekeeper, clock: SimClock) -> tuple[Slice, float]:
    """A batch stamped now, with the true time it was taken at."""
    return Slice(*tk.stamp()), clock.true()


# --- stamping and trust ----------------------------------------------------------------------------

def test_stamp_records_boot_id_boottime_and_wall(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock)
    wall_ms, boot_id, boot_ns, synced = tk.stamp()
    assert (wall_ms, boot_id, boot_ns) == (int(clock.wall() * 1000), BOOT_ID, clock.boottime())
    assert synced is False and tk.source == "none"  # no kernel sync, no server yet
    clock.kernel = True
    clock.advance(1)
    assert tk.stamp()[3] is True and tk.source == "kernel"


def test_kernel_probe_unavailable_counts_as_unsynchronised(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    clock.kernel = None  # adjtimex denied (ProtectClock=yes)
    assert make(procfs, clock).synchronized is False


def test_real_kernel_probe_answers():
    # On this machine and in CI the kernel reports STA_UNSYNC; on an NTP-synced host True.
    assert timekeeping.adjtimex_synced() in (True, False)


def test_timesyncd_flag_when_adjtimex_is_denied(tmp_path):
    flag = tmp_path / timekeeping.TIMESYNC_FLAG
    denied, unsynced = (lambda: None), (lambda: False)
    assert timekeeping.kernel_clock_synced(str(tmp_path), denied) is None
    flag.parent.mkdir(parents=True)
    flag.touch()
    assert timekeeping.kernel_clock_synced(str(tmp_path), denied) is True
    assert timekeeping.kernel_clock_synced(str(tmp_path), unsynced) is False  # the kernel knows best


def test_correct_clock_verified_by_server_uploads_unchanged(procfs):
    """The CI case: kernel never synced, clock right; the server's Date makes it trusted."""
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT + 0.3)
    tk = make(procfs, clock)
    early, _ = stamp(tk, clock)
    assert tk.now_ms() is None  # no time source yet: nothing can be judged
    assert tk.correct(early) is None  # no time source yet: hold back
    assert not tk.can_restamp(BOOT_ID)
    assert clock.exchange(tk)
    assert tk.can_restamp(BOOT_ID)  # batches parked while waiting can be unparked now
    assert tk.synchronized and tk.source == "server"
    assert tk.correct(early) == early.wall_ms  # within the threshold: keep the original time
    later, _ = stamp(tk, clock)
    assert later.clock_synced and tk.correct(later) == later.wall_ms
    status, msg, details = time_health(tk.facts())
    assert (status, msg) == (OK, "time synchronized") and details["source"] == "server"
    assert abs(details["skew_ms"] - 300) <= 700


@pytest.mark.parametrize("wall_at_boot", [0.0, TRUE_AT_BOOT - 3 * DAY], ids=["booted-in-1970", "3-days-behind"])
def test_wrong_clock_batches_are_restamped_from_boottime(procfs, wall_at_boot):
    clock = SimClock(wall_at_boot=wall_at_boot)
    tk = make(procfs, clock)
    batches = []
    for _ in range(5):  # collected before any time source exists
        batches.append(stamp(tk, clock))
        clock.advance(30)
    assert all(tk.correct(b) is None for b, _ in batches)
    rng = random.Random(3)
    for _ in range(8):  # the first upload attempts and skew checks
        clock.exchange(tk, rtt=rng.uniform(0.05, 0.6), server_phase=rng.random())
        clock.advance(rng.uniform(0.1, 5))
    batches.append(stamp(tk, clock))
    for b, true in batches:
        assert not b.clock_synced
        fixed = tk.correct(b)
        assert fixed is not None and abs(fixed - true * 1000) < 500, (fixed, true)
    assert abs(tk.now_ms() - clock.true() * 1000) < 500  # not the wrong wall clock
    facts = tk.facts()
    assert facts.source == "server" and not facts.synchronized
    assert abs(facts.skew_ms / 1000 + (TRUE_AT_BOOT - wall_at_boot)) < 1
    status, msg, _ = time_health(facts)
    assert status == DEGRADED and "behind" in msg and "corrected" in msg


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_clock_stepped_mid_run(procfs, step):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock)
    clock.exchange(tk)
    before, true_before = stamp(tk, clock)
    assert before.clock_synced and tk.correct(before) == before.wall_ms
    clock.advance(60)
    clock.wall_at_boot += step  # someone sets the clock; no new server answer yet
    after, true_after = stamp(tk, clock)
    assert not after.clock_synced  # the step shows at once in wall minus boottime
    assert abs(tk.correct(after) - true_after * 1000) < 1100
    assert time_health(tk.facts())[0] == DEGRADED
    assert abs(tk.skew_seconds - step) < 1.1
    clock.exchange(tk)  # the server still agrees with the old offset: nothing is reset
    assert abs(tk.correct(after) - true_after * 1000) < 1100
    clock.wall_at_boot -= step
    clock.advance(1)
    assert tk.stamp()[3] is True and time_health(tk.facts())[0] == OK


def test_batches_of_an_earlier_boot_are_parked_unless_trusted(procfs):
    clock = SimClock(wall_at_boot=0.0)
    tk = make(procfs, clock)
    clock.exchange(tk)
    old_untrusted = Slice(12_000, "0b5e0000-old-boot", 5 * NS, False)
    old_trusted = Slice(int(TRUE_AT_BOOT * 1000) - 86_400_000, "0b5e0000-old-boot", 5 * NS, True)
    no_boot_id = Slice(12_000, "", 5 * NS, False)
    assert tk.correct(old_untrusted) is None
    assert tk.correct(no_boot_id) is None
    assert not tk.can_restamp("0b5e0000-old-boot") and tk.can_restamp(BOOT_ID)
    assert tk.correct(old_trusted) == old_trusted.wall_ms
    this_boot, _ = stamp(tk, clock)
    assert tk.correct(this_boot) is not None


def test_kernel_sync_arriving_later_fixes_this_boot(procfs):
    clock = SimClock(wall_at_boot=0.0)  # no server reachable at all
    tk = make(procfs, clock)
    early, true_early = stamp(tk, clock)
    assert tk.correct(early) is None
    clock.advance(120)
    clock.wall_at_boot = TRUE_AT_BOOT  # NTP steps the clock and the kernel reports sync
    clock.kernel = True
    assert abs(tk.correct(early) - true_early * 1000) < 2
    assert tk.now_ms() == int(clock.wall() * 1000)
    assert tk.source == "kernel" and tk.skew_seconds is None


def test_missing_boot_id_parks_earlier_runs(tmp_path):
    clock = SimClock(wall_at_boot=0.0)
    tk = make(str(tmp_path / "no-proc"), clock)
    assert tk.boot_id.startswith("unknown-")
    assert tk.correct(Slice(1000, "unknown-previous", NS, False)) is None
    mine, _ = stamp(tk, clock)
    clock.exchange(tk)
    assert tk.correct(mine) is not None


# --- combining Date observations --------------------------------------------------------------------

def test_observations_narrow_the_offset_and_always_contain_the_truth(procfs):
    rng = random.Random(7)
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT - 1000)
    tk = make(procfs, clock)
    true_offset = TRUE_AT_BOOT * NS
    widths = []
    for _ in range(20):
        clock.advance(rng.uniform(0.05, 7.0))
        clock.exchange(tk, rtt=rng.uniform(0.02, 0.3), server_phase=rng.random())
        mid, half = tk.offset_ns()
        assert mid - half - 1e6 <= true_offset <= mid + half + 1e6
        widths.append(2 * half / NS)
    assert widths[0] >= 1.0  # one Date: at least its one-second resolution
    assert widths[-1] < 0.2, widths


def test_server_clock_step_resets_to_newest_observation(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock)
    for _ in range(5):
        clock.exchange(tk)
        clock.advance(1.3)
    sent = clock.wall()
    clock.advance(0.1)
    date = formatdate(int(clock.true() + 50), usegmt=True)  # the server jumped 50 s
    clock.advance(0.1)
    assert tk.observe_response(date, sent, clock.wall())
    assert abs(tk.skew_seconds + 50) < 1.5


def test_old_observations_widen_by_drift(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock)
    clock.exchange(tk, rtt=0.01)
    clock.advance(10 * 3600)
    clock.boottime_error = 1.5  # boottime ran 42 ppm fast against the server over 10 h
    clock.exchange(tk, rtt=0.01)
    assert len(tk._bounds) == 2  # still consistent once widened by the drift allowance
    mid, _ = tk.offset_ns()
    assert abs(mid / NS - (TRUE_AT_BOOT - 1.5)) < 1.0


def test_unusable_dates_are_ignored(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock)
    assert not tk.observe_response(None, clock.wall(), clock.wall())
    assert not tk.observe_response("yesterday", clock.wall(), clock.wall())
    assert not tk.observe_response(formatdate(usegmt=True), clock.wall(), clock.wall() - 1)
    assert tk.offset_ns() is None


@pytest.mark.parametrize("text, expected", [
    ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 784111777),
    ("Sun Nov  6 08:49:37 1994", 784111777),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
    ("Tue, 29 Feb 2028 23:59:59 GMT", 1835481599),
    ("not a date", None),
])
def test_parse_http_date(text, expected):
    assert parse_http_date(text) == expected


# --- gauges, scheduling -----------------------------------------------------------------------------

def test_skew_gauge_only_when_measured(procfs):  # W21
    sm = SelfMetrics()
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT + 5)
    tk = make(procfs, clock, selfmetrics=sm)
    tk.facts()
    names = {s.name for s in sm.samples()}
    assert "metrics_collector_clock_skew_seconds" not in names
    assert sm.value("metrics_collector_clock_synchronized") == 0.0
    clock.exchange(tk)
    assert abs(sm.value("metrics_collector_clock_skew_seconds") - 5) < 1
    assert sm.value("metrics_collector_clock_synchronized") == 0.0  # 5 s > 2 s threshold


def test_check_due_retries_fast_without_a_time_source(procfs):
    clock = SimClock(wall_at_boot=TRUE_AT_BOOT)
    tk = make(procfs, clock, check_interval=300.0)
    assert tk.check_due()
    with boundedhttp.Client() as s:
        assert tk.check_skew(client=s, url="http://127.0.0.1:9/") is None  # discard port: refused
    assert not tk.check_due()
    clock.advance(30)
    assert tk.check_due()
    clock.exchange(tk)
    tk._last_attempt = clock.mono
    clock.advance(299)
    assert not tk.check_due()
    clock.advance(1)
    assert tk.check_due()


def test_settings_from_config_and_reload(procfs):
    loaded = config.loads("remote:\n  url: https://vm.example/api/v1/import\n"
                          f"host:\n  procfs: {procfs}\n"
                          "monitoring:\n  clock_skew_warn_threshold_ms: 500\n  clock_skew_check_interval: 1m\n",
                          environ={})
    tk = Timekeeper(loaded)
    assert (tk.threshold_ms, tk.check_interval, tk.boot_id) == (500, 60.0, BOOT_ID)
    assert tk.upload_url == "https://vm.example/api/v1/import"
    tk.reconfigure(cfg(threshold_ms=100, check_interval=30.0))
    assert (tk.threshold_ms, tk.check_interval, tk.upload_url) == (100, 30.0, "")


# --- check_skew against a real HTTP server on loopback ------------------------------------------------

class DateServer:
    """Answers every GET with ``status`` and a real Date header (or none), recording requests."""

    def __init__(self) -> None:
        self.status, self.date_mode = 200, "real"
        self.seen: list[dict[str, str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append(dict(self.headers))
                self.send_response_only(outer.status)
                if outer.date_mode == "real":
                    self.send_header("Date", self.date_time_string())
                elif outer.date_mode == "garbage":
                    self.send_header("Date", "soon")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def date_server():
    srv = DateServer()
    yield srv
    srv.close()


def real_clock_tk(procfs: str, wall_offset: float, upload_url: str, selfmetrics=None,
                  timeout: float = 10.0) -> Timekeeper:
    import time as _t
    return Timekeeper(cfg(url=upload_url, timeout=timeout), procfs=procfs, selfmetrics=selfmetrics,
                      wall=lambda: _t.time() + wall_offset, kernel_synced=lambda: False)


def test_check_skew_measures_a_clock_three_days_behind(procfs, date_server):
    sm = SelfMetrics()
    url = f"http://127.0.0.1:{date_server.port}/"
    tk = real_clock_tk(procfs, -3 * DAY, url + "api/v1/import", selfmetrics=sm)
    with boundedhttp.Client() as s:
        skew = tk.check_skew(client=s, url=url, token="s3cret")
    assert skew is not None and abs(skew + 3 * DAY) < 1.5
    assert abs(sm.value("metrics_collector_clock_skew_seconds") + 3 * DAY) < 1.5
    assert date_server.seen[-1]["Authorization"] == "Bearer s3cret"  # same origin as uploads
    assert abs(tk.check_skew(url) + 3 * DAY) < 1.5  # the agent's form: a connection of its own
    assert "Authorization" not in date_server.seen[-1]
    batch = Slice(*tk.stamp())
    import time as _t
    assert abs(tk.correct(batch) / 1000 - _t.time()) < 1.5


def test_token_never_sent_to_another_host(procfs, date_server):  # W22
    upload = f"http://127.0.0.1:{date_server.port}/api/v1/import"
    tk = real_clock_tk(procfs, 0.0, upload)
    with boundedhttp.Client() as s:
        assert tk.check_skew(client=s, url=f"http://localhost:{date_server.port}/", token="s3cret") is not None
        assert tk.check_skew(client=s, url=f"http://127.0.0.1:{date_server.port + 1}/", token="s3cret") is None
    assert all("Authorization" not in h for h in date_server.seen)


def test_http_status_ignored_when_date_present(procfs, date_server):
    url = f"http://127.0.0.1:{date_server.port}/"
    tk = real_clock_tk(procfs, 0.0, url)
    date_server.status = 401
    with boundedhttp.Client() as s:
        assert tk.check_skew(client=s, url=url) is not None
        assert tk.synchronized and tk.last_error is None
        date_server.date_mode = "none"
        date_server.status = 502
        assert tk.check_skew(client=s, url=url) is None
        assert tk.last_error == "no Date header in the answer (HTTP 502)"
        date_server.date_mode = "garbage"
        assert tk.check_skew(client=s, url=url) is None
        assert "unparseable Date header 'soon'" in tk.last_error
    # The earlier measurement still stands: failures do not erase a known offset.
    assert tk.source == "server" and time_health(tk.facts())[0] == OK


def test_unreachable_skew_url_is_degraded_never_error(procfs):
    tk = real_clock_tk(procfs, 0.0, "http://127.0.0.1:9/api/v1/import", timeout=2.0)
    with boundedhttp.Client() as s:
        assert tk.check_skew(client=s, url="http://127.0.0.1:9/", token="s3cret") is None
    status, msg, details = time_health(tk.facts())
    assert status == DEGRADED and status != ERROR
    assert details["skew_ms"] is None and "s3cret" not in msg and "\n" not in tk.last_error
