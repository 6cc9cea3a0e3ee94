"""Pure parts of the uploader: the byte budget, status classification, URL redaction.

The `uploader` health rule is health.uploader_health (tests/unit/test_health_rules.py)."""

from __future__ import annotations

import pytest

from belabox_metrics.upload.retry import decide as classify_status
from belabox_metrics.upload.transport import AUTH, FATAL, GAVE_UP, REJECTED, redact_url
from belabox_metrics.upload.transport import OK as SENT
from belabox_metrics.upload.uploader import ByteBudget


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_byte_budget_paces_to_the_rate():
    clock = Clock()
    b = ByteBudget(1000, clock)
    assert b.ready_in(1000) == 0.0  # one second of burst to start with
    b.charge(1000)
    assert b.ready_in(500) == pytest.approx(0.5)
    clock.t = 0.5
    assert b.ready_in(500) == 0.0
    b.charge(500)
    clock.t = 10.0  # idle time refills at most one second's worth
    assert b.tokens == 0 and b.ready_in(1000) == 0.0 and b.tokens == 1000


def test_byte_budget_big_request_waits_for_a_full_bucket_and_leaves_a_debt():
    clock = Clock()
    b = ByteBudget(1000, clock)
    b.charge(1000)
    assert b.ready_in(5000) == pytest.approx(1.0)  # waits for a full bucket, not for 5 s
    clock.t = 1.0
    b.charge(5000)
    assert b.ready_in(1) == pytest.approx(4.001)


def test_byte_budget_zero_is_unlimited():
    b = ByteBudget(0, Clock())
    b.charge(10**9)
    assert b.ready_in(10**9) == 0.0


@pytest.mark.parametrize("code, kind, retry, reason", [
    (200, SENT, False, ""), (204, SENT, False, ""),
    (400, REJECTED, False, "http_400"), (413, REJECTED, False, "http_413"),
    (401, AUTH, False, "http_401"), (403, AUTH, False, "http_403"),
    (429, GAVE_UP, True, "http_429"), (408, GAVE_UP, True, "http_408"),
    (500, GAVE_UP, True, "http_5xx"), (503, GAVE_UP, True, "http_5xx"),
    (404, FATAL, False, "http_404"), (301, FATAL, False, "http_3xx"), (409, FATAL, False, "http_409"),
])
def test_status_classification(code, kind, retry, reason):
    """Tidewatch W12 retried 403, 404 and 413 over cellular for nothing."""
    assert classify_status(code) == (kind, retry, reason)


def test_redact_url_hides_the_password_and_query_values():
    # The one redaction of belabox_metrics.redact: the user name and query names stay for support.
    assert redact_url("https://user:pw@vm.example:8428/insert/3/prometheus/api/v1/import?extra_label=a=b&k=s") \
        == "https://user:<redacted>@vm.example:8428/insert/3/prometheus/api/v1/import?extra_label=<redacted>&k=<redacted>"


# --- naming failures -------------------------------------------------------------------------

def test_failures_are_named_by_cause():
    from belabox_metrics.upload import failures as f
    assert f.cause_of("connect", "cannot connect (Connection refused)") == f.REFUSED
    assert f.cause_of("connect", "cannot connect (Connection reset by peer)") == f.RESET
    assert f.cause_of("connect", "bad HTTP answer (RemoteDisconnected)") == f.RESET
    assert f.cause_of("connect", "the answer was cut short") == f.RESET
    assert f.cause_of("connect", "cannot connect (Name or service not known)") == f.DNS
    assert f.cause_of("timeout", "no complete answer within 30.0s") == f.TIMEOUT
    assert f.cause_of("tls", "TLS failed (certificate verify failed)") == f.TLS
    assert f.describe(f.REFUSED, "vm:8428", 30) == "cannot connect to vm:8428: connection refused"
    assert f.describe(f.TIMEOUT, "vm:8428", 30) == "server not answering: timeout after 30s (vm:8428)"
    assert f.host_of("https://u:secret@vm.example:8427/api/v1/import?token=x") == "vm.example:8427"


def test_token_refusal_and_its_backoff():
    from belabox_metrics.upload import failures as f
    assert f.token_refused(401, "") and f.token_refused(403, "nope")
    assert f.token_refused(400, "cannot find the provided auth token")
    assert not f.token_refused(400, "cannot parse line 3") and not f.token_refused(500, "unauthorized")
    assert [f.auth_backoff(60, n, 300) for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 300, 300]


def test_upload_intervals_are_spread_so_boxes_drift_apart():
    """Boxes that start together must not hit the server in step for ever (belabox-fleet's storm)."""
    from belabox_metrics import config
    from belabox_metrics.upload.uploader import INTERVAL_JITTER, Uploader

    cfg = config.Config(upload_interval=60.0)
    draws = iter([0.0, 0.5, 0.999])
    up = Uploader(cfg, spool=None, health=None, selfmetrics=None, device_id="x", token=None,
                  rng=lambda: next(draws))
    got = [up.next_interval() for _ in range(3)]
    assert got[0] == 60.0 * (1 - INTERVAL_JITTER) and got[1] == 60.0 and got[2] < 60.0 * (1 + INTERVAL_JITTER)
    assert got[0] != got[2]


def test_after_a_failed_cycle_the_next_is_spread_over_a_whole_interval():
    """The aligned fleet storm: 1,000 boxes that lost the server together came back within one
    second of each other (5.6x the steady request rate) with only the ±10 % spread."""
    from belabox_metrics import config
    from belabox_metrics.upload.uploader import FAILURE_JITTER, Uploader

    cfg = config.Config(upload_interval=10.0)
    draws = iter([0.0, 0.999])
    up = Uploader(cfg, spool=None, health=None, selfmetrics=None, device_id="x", token=None,
                  rng=lambda: next(draws))
    lo, hi = up.next_interval(failed=True), up.next_interval(failed=True)
    assert lo == 10.0 * (1 - FAILURE_JITTER) == 5.0 and 14.9 < hi < 15.0
