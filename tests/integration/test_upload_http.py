"""The uploader against a scriptable loopback HTTP server: each answer handled as design §5 says."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections import Counter

import pytest

from belabox_metrics.health import registry as health
from belabox_metrics.samples import Batch, sample
from tests.support.importserver import ImportServer, Reply, samples_of
from tests.support.uploading import DEVICE, Env, FakeClock, fill, make_config, write_token

TOKEN = "s3cr3t-T0KEN-value-4242"


@pytest.fixture
def server():
    srv = ImportServer()
    with srv:
        yield srv


@pytest.fixture
def envs(tmp_path):
    made = []

    def make(cfg, **kw):
        env = Env(tmp_path, cfg, **kw)
        made.append(env)
        return env
    yield make
    for env in made:
        env.close()


def script(*replies: Reply, then: Reply | None = None):
    """Answer request i with replies[i], later ones with ``then`` (default 204)."""
    then = then or Reply(204)
    return lambda req: replies[req.index] if req.index < len(replies) else then


def test_500_then_success_retries_and_delivers_everything_exactly_once(server, envs):
    server.respond = script(Reply(500, body="boom"))
    env = envs(make_config(server.url()))
    expected = fill(env.spool, batches=5, series=20)
    cycles = []
    env.uploader.on_cycle = lambda: cycles.append(env.spool.stats().pending_samples)
    res = env.uploader.cycle()
    assert cycles == [0]  # the agent's loop is woken after the cycle, with the spool already updated
    assert res.ok and res.sent_samples == 100
    assert [r.status for r in server.requests] == [500, 204]
    assert sorted(samples_of(server.accepted())) == sorted(expected)  # nothing lost, nothing twice
    assert env.pending() == 0
    assert env.failures("http_5xx") == 1
    assert env.selfmetrics.value("metrics_collector_uploaded_samples_total") == 100
    assert env.selfmetrics.value("metrics_collector_uploaded_bytes_total") == server.requests[1].wire_bytes
    assert env.uploader_health().status == health.OK


def test_429_waits_for_retry_after(server, envs):
    server.respond = script(Reply(429, {"Retry-After": "1"}))
    env = envs(make_config(server.url(), retry={"max_retry_after": "5s", "jitter_percent": 10}))
    fill(env.spool, batches=1, series=3)
    res = env.uploader.cycle()
    assert res.ok
    gap = server.requests[1].received_mono - server.requests[0].received_mono
    assert 1.0 <= gap < 1.5, gap  # the server's 1 s plus at most 10 % jitter (and a little scheduling)
    assert env.failures("http_429") == 1


def test_429_retry_after_is_capped(server, envs):
    server.respond = script(Reply(429, {"Retry-After": "3600"}), Reply(503, {"Retry-After": "3600"}))
    env = envs(make_config(server.url(), retry={"max_retry_after": "300ms", "max_attempts": 3}))
    fill(env.spool, batches=1, series=3)
    t0 = time.monotonic()
    res = env.uploader.cycle()
    assert res.ok and env.pending() == 0
    assert time.monotonic() - t0 < 1.5  # two capped waits of at most 0.3 s, not two hours
    gaps = [b.received_mono - a.received_mono for a, b in zip(server.requests, server.requests[1:], strict=False)]
    assert all(0.2 <= g < 0.6 for g in gaps), gaps
    assert env.failures("http_429") == 1 and env.failures("http_5xx") == 1


def test_400_for_one_poison_sample_is_bisected_and_only_that_sample_dropped(server, envs):
    def respond(req):
        poisoned = any(line["metric"].get("series") == "13" and 7_000.0 + 13 in line["values"] for line in req.lines)
        return Reply(400, body="cannot parse line") if poisoned else Reply(204)
    server.respond = respond
    env = envs(make_config(server.url(), batch_size=5000))
    expected = fill(env.spool, batches=10, series=50)
    poison = [e for e in expected if dict(e[0])["series"] == "13" and e[2] == 7_013.0]
    assert len(poison) == 1
    res = env.uploader.cycle()
    assert res.ok, res.error
    arrived = samples_of(server.accepted())
    assert sorted(arrived) == sorted(e for e in expected if e not in poison)  # everything else, once
    assert res.dropped == {"rejected_400": 1}
    assert env.dropped("rejected_400") == 1
    assert env.pending() == 0
    # one poison in 500 samples: about 2·log2(500) requests, not hundreds
    assert len(server.requests) <= 2 * 10 + 2
    assert env.failures("http_400") == sum(1 for r in server.requests if r.status == 400)


def test_400_for_everything_is_not_a_poison_sample_and_drops_nothing(server, envs):
    server.respond = lambda req: Reply(400, body="bad request")
    env = envs(make_config(server.url()))
    fill(env.spool, batches=4, series=50)
    res = env.uploader.cycle()
    assert not res.ok and "refuses every part" in res.error
    assert env.pending() == 200 and not res.dropped
    assert len(server.requests) <= 1 + 8  # gives up after a few blind halvings
    assert env.uploader_health().status == health.ERROR  # an endpoint problem a person must fix


def test_413_over_a_size_is_bisected_and_everything_arrives(server, envs):
    limit = 1500
    server.respond = lambda req: Reply(413) if req.wire_bytes > limit else Reply(204)
    env = envs(make_config(server.url(), batch_size=2500))
    expected = fill(env.spool, batches=20, series=100)
    res = env.uploader.cycle()
    assert res.ok, res.error
    assert sorted(samples_of(server.accepted())) == sorted(expected)
    assert env.pending() == 0 and not res.dropped
    assert all(r.wire_bytes <= limit for r in server.accepted())
    # the uploader learnt the size: later requests did not start at 2500 samples again
    first_413 = next(i for i, r in enumerate(server.requests) if r.status == 413)
    assert sum(1 for r in server.requests[first_413 + 1:] if r.status == 413) < 10
    assert env.uploader.delivery.size_cap is not None and env.uploader.delivery.size_cap < 2500


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_final_mark_health_error_and_keep_the_data(server, envs, status):
    server.respond = lambda req: Reply(status, body="no")
    skew = [0.0]
    env = envs(make_config(server.url()), clock=lambda: time.monotonic() + skew[0])
    fill(env.spool, batches=3, series=10)
    res = env.uploader.cycle()
    assert not res.ok and res.status == status
    assert len(server.requests) == 1  # not retried
    assert env.pending() == 30 and not res.dropped
    assert env.failures(f"http_{status}") == 1
    h = env.uploader_health()
    assert h.status == health.ERROR and h.message == f"server refused the token ({status})"
    assert env.health.overall() == health.ERROR
    # a refused token backs off (one interval, doubling): the next cycle sends nothing
    again = env.uploader.cycle()
    assert again.stopped and 9 <= again.deferred_s <= 10 and len(server.requests) == 1
    assert env.uploader_health().status == health.ERROR
    # the next cycle that gets through clears it
    skew[0] = 11.0
    server.respond = lambda req: Reply(204)
    assert env.uploader.cycle().ok and env.pending() == 0
    assert env.uploader_health().status == health.OK


def test_a_server_hanging_past_the_timeout_is_retried_and_the_cycle_is_bounded(server, envs):
    server.respond = script(Reply(504, delay=2.0), Reply(504, delay=2.0))
    env = envs(make_config(server.url(), timeout="300ms", retry={"max_attempts": 3}))
    expected = fill(env.spool, batches=2, series=5)
    t0 = time.monotonic()
    res = env.uploader.cycle()
    took = time.monotonic() - t0
    assert res.ok and took < 2.0, took  # 2 × 0.3 s timeouts + short backoffs, not 2 × 2 s
    assert env.failures("timeout") == 2
    assert sorted(samples_of([server.requests[2]])) == sorted(expected)


def test_timeouts_on_every_attempt_end_the_cycle_in_bounded_time(server, envs):
    server.respond = lambda req: Reply(504, delay=3.0)
    env = envs(make_config(server.url(), timeout="200ms", retry={"max_attempts": 3}))
    fill(env.spool, batches=1, series=5)
    t0 = time.monotonic()
    res = env.uploader.cycle()
    assert time.monotonic() - t0 < 1.5
    assert not res.ok and env.failures("timeout") == 3 and env.pending() == 5
    assert env.uploader_health().status == health.DEGRADED  # one failed cycle is not an error (W6)


def test_connection_refused_is_counted_and_retried(envs):
    from tests.support.vm import free_port
    env = envs(make_config(f"http://127.0.0.1:{free_port()}/api/v1/import", retry={"max_attempts": 2}))
    fill(env.spool, batches=1, series=5)
    res = env.uploader.cycle()
    assert not res.ok and env.failures("connect") == 2 and env.pending() == 5


def test_token_is_sent_as_bearer_and_never_logged(server, envs, tmp_path, caplog):
    tok = write_token(tmp_path / "api-token", TOKEN)
    # A server that echoes the header back in its error body must not smuggle it into our logs.
    server.respond = script(Reply(500, body="you sent Authorization: Bearer " + TOKEN),
                            Reply(401, body="echo " + TOKEN))
    env = envs(make_config(server.url(), auth_token_file=str(tok), retry={"max_attempts": 2}))
    fill(env.spool, batches=1, series=3)
    caplog.set_level(logging.DEBUG)
    res = env.uploader.cycle()
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert not res.ok
    everything = caplog.text + json.dumps(env.health.report()) + str(res) + repr(env.uploader.last_error)
    assert "echo ***" in everything  # the body was kept, the token scrubbed
    assert TOKEN not in everything


def test_missing_token_means_no_upload_and_health_error(server, envs, tmp_path):
    env = envs(make_config(server.url(), auth_token_file=str(tmp_path / "not-yet")))
    fill(env.spool, batches=2, series=3)
    res = env.uploader.cycle()
    assert not res.ok and server.requests == []
    h = env.uploader_health()
    assert h.status == health.ERROR and h.message.startswith("waiting for token: ")
    assert env.pending() == 6  # collection and spooling go on
    write_token(tmp_path / "not-yet", TOKEN)  # first boot provisions it later: picked up without restart
    assert env.uploader.cycle().ok and env.pending() == 0
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_token_file_readable_by_others_is_refused(server, envs, tmp_path):
    tok = write_token(tmp_path / "api-token", TOKEN, mode=0o644)
    env = envs(make_config(server.url(), auth_token_file=str(tok)))
    fill(env.spool, batches=1, series=1)
    assert not env.uploader.cycle().ok and server.requests == []
    assert "readable or writable by others" in env.uploader_health().message


def test_invalid_samples_are_quarantined_counted_and_never_sent(server, envs):
    env = envs(make_config(server.url()))
    now = int(time.time() * 1000)
    env.spool.append(Batch((sample("good", 1.0), sample("bad", float("nan")), sample("good2", 2.0),
                            sample("future", 1.0, ts_ms=now + 10 * 86_400_000)), now, "b", 0, True))
    env.spool.flush()
    res = env.uploader.cycle()
    assert res.ok and res.sent_samples == 2
    names = {dict(k)["__name__"] for k, _, _ in samples_of(server.requests)}
    assert names == {"good", "good2"}
    assert res.dropped == {"invalid": 2}
    assert env.dropped("invalid") == 2
    assert env.selfmetrics.value("metrics_collector_invalid_samples_total", {"reason": "not_finite"}) == 1
    assert env.selfmetrics.value("metrics_collector_invalid_samples_total", {"reason": "in_future"}) == 1
    assert env.pending() == 0


def test_live_lane_goes_first_and_the_backlog_follows_oldest_first(server, envs):
    env = envs(make_config(server.url(), batch_size=100))
    now = int(time.time() * 1000)
    old = fill(env.spool, batches=10, series=100, wall0_ms=now - 3_600_000, name="old")
    live = fill(env.spool, batches=2, series=100, wall0_ms=now - 5_000, step_ms=2_000, name="live")
    res = env.uploader.cycle()
    assert res.ok and res.live_samples == 200 and res.backlog_samples == 1000
    walls = [r.lines[0]["timestamps"][0] for r in server.requests]
    assert walls[:2] == [live[-1][1], live[0][1]]  # newest first
    assert walls[2:] == sorted(walls[2:]) and walls[2] == old[0][1]  # then oldest first
    assert env.pending() == 0


def test_backlog_is_paced_by_the_byte_budget_and_stops_at_the_interval(server, envs):
    clock = FakeClock()
    env = envs(make_config(server.url(), batch_size=100, max_bytes_per_second=2000, upload_interval="10s"),
               clock=clock.monotonic, wall=clock.wall, sleep=clock.sleep)
    now = int(clock.wall() * 1000)
    fill(env.spool, batches=100, series=100, wall0_ms=now - 86_400_000, name="old")
    live = fill(env.spool, batches=1, series=100, wall0_ms=now - 1_000, name="live")
    t0 = clock.mono
    res = env.uploader.cycle()
    assert res.ok and res.stopped and res.live_samples == 100
    spent = clock.mono - t0
    assert spent <= 10.0
    sent = sum(r.wire_bytes for r in server.requests)
    # bytes of the whole cycle within the budget: one second of burst plus rate × time
    assert sent <= 2000 * (1 + spent) + 1, (sent, spent)
    assert 0 < res.backlog_samples < 10_000
    assert samples_of([server.requests[0]]) == [(k, t, v) for k, t, v in live]
    # the next cycle goes on where this one stopped
    before = env.pending()
    assert env.uploader.cycle().ok and env.pending() < before


def test_when_the_live_lane_fills_the_interval_one_backlog_request_still_goes(envs):
    """A slow server (or a box starved of CPU): each request takes longer than the interval.
    The live lane goes first, then one backlog request per cycle, so the backlog still drains."""
    clock = FakeClock()

    def slow(req):
        clock.mono += 15.0  # longer than the 10-s interval
        return Reply(204)

    with ImportServer(slow) as srv:
        env = envs(make_config(srv.url(), batch_size=100, upload_interval="10s"),
                   clock=clock.monotonic, wall=clock.wall, sleep=clock.sleep)
        now = int(clock.wall() * 1000)
        fill(env.spool, batches=3, series=100, wall0_ms=now - 86_400_000, name="old")
        fill(env.spool, batches=1, series=100, wall0_ms=now - 1_000, name="live")
        res = env.uploader.cycle()
        assert res.ok and res.live_samples == 100 and res.backlog_samples == 100 and res.stopped
        assert len(srv.requests) == 2
        for _ in range(2):
            assert env.uploader.cycle().ok
        assert env.pending() == 0


def test_a_box_booted_in_1970_gets_its_times_from_the_servers_date(server, envs, tmp_path):
    """The real Timekeeper: batches of this boot wait (parked) until a server Date gives the
    offset, then go with corrected times; an untrusted batch of an earlier boot stays parked."""
    from belabox_metrics.platform.clock import Timekeeper

    procfs = tmp_path / "proc"
    (procfs / "sys/kernel/random").mkdir(parents=True)
    (procfs / "sys/kernel/random/boot_id").write_text("boot-this\n")
    t0 = time.monotonic()
    true_now_s = time.time()

    def boottime_ns():  # booted 500 s ago
        return int((500.0 + time.monotonic() - t0) * 1e9)

    def wall():  # the RTC-less board thinks it is 1970, 10 s after boot
        return 10.0 + (time.monotonic() - t0) + 500.0

    cfg = make_config(server.url())
    tk = Timekeeper(cfg, procfs=str(procfs), wall=wall, boottime=boottime_ns, kernel_synced=lambda: False)
    env = envs(cfg, timekeeper=tk, wall=wall)
    boot_then = boottime_ns() - 30 * 10**9  # collected 30 s ago by boottime
    env.spool.append(Batch((sample("x", 1.0),), int(wall() * 1000) - 30_000, "boot-this", boot_then, False))
    env.spool.append(Batch((sample("x", 2.0),), int(wall() * 1000) - 20_000, "boot-earlier", 1, False))
    env.spool.flush()

    first = env.uploader.cycle()  # no time source yet: both wait, nothing is sent with a 1970 time
    assert first.ok and first.parked_batches == 2 and server.requests == []

    # Yesterday's backlog, stamped while the clock was synchronised, is not "in the future"
    # just because this boot's clock says 1970: it goes, and its answer's Date is the time source.
    env.spool.append(Batch((sample("y", 3.0),), int((true_now_s - 86_400) * 1000), "boot-yesterday", 1, True))
    env.spool.flush()
    second = env.uploader.cycle()
    assert second.ok and second.sent_samples == 1 and tk.offset_ns() is not None

    third = env.uploader.cycle()  # this boot's batch is unparked and re-stamped from boottime
    assert third.ok and third.sent_samples == 1
    (key, ts, value), = samples_of([server.requests[-1]])
    assert dict(key)["__name__"] == "x" and value == 1.0
    assert abs(ts - (true_now_s - 30) * 1000) < 3000  # the true collection time, not 1970
    assert env.spool.stats().parked_batches == 1  # the earlier boot's batch cannot be fixed
    assert env.pending() == 0
    assert env.dropped("invalid") == 0


def test_stop_interrupts_a_backoff_promptly(server, envs):
    server.respond = lambda req: Reply(503, {"Retry-After": "30"})
    env = envs(make_config(server.url(), upload_interval="1s", retry={"max_retry_after": "1m"}))
    fill(env.spool, batches=1, series=3)
    env.uploader.start()
    env.uploader.wake()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    env.uploader.stop(timeout=3)
    assert time.monotonic() - t0 < 3.0
    assert env.pending() == 3


def test_background_thread_uploads_each_interval_and_after_wake(server, envs):
    env = envs(make_config(server.url(), upload_interval="1s"))
    env.uploader.start()
    fill(env.spool, batches=1, series=2)
    env.uploader.wake()
    deadline = time.monotonic() + 5
    while env.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.pending() == 0
    fill(env.spool, batches=1, series=2, name="later")  # no wake: the interval picks it up
    deadline = time.monotonic() + 5
    while env.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.pending() == 0 and env.uploader.last_success_wall is not None


def test_reconfigure_applies_new_url_and_labels_at_the_next_cycle(server, envs):
    other = ImportServer().start()
    try:
        env = envs(make_config(server.url()))
        fill(env.spool, batches=1, series=1)
        assert env.uploader.cycle().ok
        env.uploader.reconfigure(make_config(other.url("/insert/7/prometheus/api/v1/import"),
                                             extra_labels={"fleet": "eu"}))
        fill(env.spool, batches=1, series=1, name="after")
        assert env.uploader.cycle().ok
        assert len(server.requests) == 1 and len(other.requests) == 1
        assert other.requests[0].path == "/insert/7/prometheus/api/v1/import"
        assert other.requests[0].lines[0]["metric"] == {"__name__": "after", "series": "0", "fleet": "eu",
                                                        "device_id": DEVICE}
    finally:
        other.stop()


def test_health_details_follow_the_deployment_guide(server, envs):
    env = envs(make_config(server.url()))
    fill(env.spool, batches=1, series=2)
    env.uploader.cycle()
    details = env.health.report()["components"]["uploader"]["details"]
    assert details["pending_count"] == 0
    assert details["time_since_upload_seconds"] == 0
    assert details["last_upload_time"].endswith("Z")


def test_failure_counter_reasons_are_the_documented_words(server, envs):
    server.respond = script(Reply(500), Reply(502), Reply(429), Reply(503))
    env = envs(make_config(server.url(), retry={"max_attempts": 5, "max_retry_after": "10ms"}))
    fill(env.spool, batches=1, series=1)
    assert env.uploader.cycle().ok
    got = Counter({lb[0][1]: v for (n, lb), v in env.selfmetrics._counters.items()
                   if n == "metrics_collector_upload_failures_total"})
    assert got == Counter({"http_5xx": 3, "http_429": 1})


class LostAcks:
    """A spool whose acks of some batches are lost: it hands their ranges out again and again."""

    def __init__(self, spool, lost: set[int]):
        self.inner, self.lost = spool, lost

    def ack(self, slices):
        self.inner.ack([s for s in slices if s.batch_id not in self.lost])

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_range_handed_out_again_is_sent_once_and_the_backlog_goes_on(server, envs):
    env = envs(make_config(server.url(), batch_size=250))
    expected = fill(env.spool, batches=12, series=100)
    ids = sorted({s.batch_id for s in env.spool.take_oldest(10_000)})
    lost = {ids[1], ids[6]}
    env.uploader.delivery.spool = LostAcks(env.spool, lost)
    res = env.uploader.drain()
    assert res.ok and res.sent_samples == 1200
    got = samples_of(server.requests)
    assert len(got) == len(set(got)) == 1200 and sorted(got) == sorted(expected)
    assert env.pending() == 200  # only the two batches whose acks were lost


def test_drain_sends_everything_oldest_first_and_reports_progress(server, envs):
    env = envs(make_config(server.url(), batch_size=1000, max_bytes_per_second=1))  # drain ignores the budget
    now = int(time.time() * 1000)
    expected = fill(env.spool, batches=30, series=100, wall0_ms=now - 600_000)  # live and backlog alike
    seen = []
    res = env.uploader.drain(progress=seen.append)
    assert res.ok and res.sent_samples == 3000 and env.pending() == 0
    assert sorted(samples_of(server.requests)) == sorted(expected)
    firsts = [r.lines[0]["timestamps"][0] for r in server.requests]
    assert firsts == sorted(firsts)
    assert [p.sent_samples for p in seen] == [1000, 2000, 3000]
    assert seen[-1].pending_samples == 0 and seen[0].pending_samples == 2000
    assert all(p.wire_bytes > 0 and p.elapsed_s >= 0 for p in seen)


def test_drain_with_rate_limit_is_paced(server, envs):
    clock = FakeClock()
    env = envs(make_config(server.url(), batch_size=100, max_bytes_per_second=1000),
               clock=clock.monotonic, wall=clock.wall, sleep=clock.sleep)
    fill(env.spool, batches=10, series=100)
    t0 = clock.mono
    res = env.uploader.drain(rate_limit=True)
    assert res.ok and env.pending() == 0
    assert res.wire_bytes <= 1000 * (1 + clock.mono - t0) + 1


def test_drain_stops_at_a_final_failure(server, envs):
    server.respond = script(Reply(204), then=Reply(401))
    env = envs(make_config(server.url(), batch_size=100))
    fill(env.spool, batches=5, series=100)
    res = env.uploader.drain()
    assert not res.ok and res.status == 401 and res.sent_samples == 100
    assert len(server.requests) == 2 and env.pending() == 400


def test_stop_makes_one_last_bounded_try_at_the_newest_data(server, envs):
    env = envs(make_config(server.url(), upload_interval="1h"))
    env.uploader.start()
    now = int(time.time() * 1000)
    live = fill(env.spool, batches=1, series=5, wall0_ms=now - 1000)
    assert server.requests == []  # no cycle is due for an hour
    env.uploader.stop(timeout=2)
    assert sorted(samples_of(server.requests)) == sorted(live)
    assert env.pending() == 0


def test_stop_gives_up_the_last_try_when_the_server_hangs(server, envs):
    server.respond = lambda req: Reply(504, delay=5.0)
    env = envs(make_config(server.url(), upload_interval="1h", timeout="30s"))
    env.uploader.start()
    fill(env.spool, batches=1, series=5, wall0_ms=int(time.time() * 1000) - 1000)
    t0 = time.monotonic()
    env.uploader.stop(timeout=1.0)
    assert time.monotonic() - t0 < 1.5  # the request timeout shrank to the stop budget
    assert env.pending() == 5


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_tls_is_verified_and_an_untrusted_certificate_sends_nothing(envs, tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = _self_signed(tmp_path)
    with ImportServer(tls=(cert, key)) as srv:
        env = envs(make_config(srv.url()))
        fill(env.spool, batches=1, series=3)
        res = env.uploader.cycle()
        assert not res.ok and srv.requests == []
        assert env.failures("tls") == 1  # not retried: a certificate does not fix itself in seconds
        assert env.pending() == 3 and env.uploader_health().status == health.DEGRADED
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # the operator's way to trust a private CA
        assert env.uploader.cycle().ok and env.pending() == 0 and len(srv.requests) == 1


def test_url_credentials_and_query_never_reach_logs_or_health(envs, caplog):
    from tests.support.vm import free_port
    url = f"http://user:PWSECRET@127.0.0.1:{free_port()}/api/v1/import?key=QSECRET"
    env = envs(make_config(url, retry={"max_attempts": 2}))
    fill(env.spool, batches=1, series=1)
    caplog.set_level(logging.DEBUG)
    res = env.uploader.cycle()
    assert not res.ok
    everything = caplog.text + json.dumps(env.health.report()) + str(res)
    assert "127.0.0.1" in everything
    assert "PWSECRET" not in everything and "QSECRET" not in everything


def test_retry_after_holds_across_cycles(server, envs):
    server.respond = script(Reply(429, {"Retry-After": "1"}))
    env = envs(make_config(server.url(), retry={"max_attempts": 1, "jitter_percent": 0}))
    fill(env.spool, batches=1, series=3)
    assert not env.uploader.cycle().ok and len(server.requests) == 1
    again = env.uploader.cycle()  # the next cycle, at once: the server's wait still holds
    assert again.stopped and 0.5 < again.deferred_s <= 1.0 and len(server.requests) == 1
    time.sleep(again.deferred_s + 0.05)
    assert env.uploader.cycle().ok and len(server.requests) == 2
    gap = server.requests[1].received_mono - server.requests[0].received_mono
    assert gap >= 1.0, gap


def test_a_failure_never_sets_the_last_success_and_health_names_it(envs, caplog):
    from tests.support.vm import free_port
    port = free_port()
    env = envs(make_config(f"http://user:pw@127.0.0.1:{port}/api/v1/import", retry={"max_attempts": 3}))
    fill(env.spool, batches=1, series=5)
    caplog.set_level(logging.WARNING)
    assert not env.uploader.cycle().ok
    h = env.uploader_health()
    assert h.status == health.DEGRADED
    assert h.message.startswith(f"cannot connect to 127.0.0.1:{port}: connection refused since ")
    assert h.details["last_upload_time"] is None and h.details["last_error_cause"] == "refused"
    assert env.uploader.last_success_wall is None
    assert env.selfmetrics.value("metrics_collector_upload_last_success_timestamp_seconds") == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "attempt" in r.getMessage()]
    assert len(errors) == 1 and len(warnings) == 2  # one ERROR per exhausted batch, retries are warnings
    line = errors[0].getMessage()
    assert "upload" in line and "error" in line and "connection refused" in line and "pw" not in line


def test_vmauth_token_refusal_in_the_body_is_a_refused_token_not_a_poison_sample(server, envs):
    server.respond = lambda req: Reply(400, body="cannot find the provided auth token")
    env = envs(make_config(server.url()))
    fill(env.spool, batches=2, series=5)
    res = env.uploader.cycle()
    assert not res.ok and len(server.requests) == 1 and not res.dropped  # no bisection storm
    assert env.uploader_health().message == "server refused the token (400)"
