"""RetryPolicy is pure: exact delays, no sleeping (aesthetics.md §1.5, urllib3's test_backoff)."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from belabox_metrics import config
from belabox_metrics.upload.retry import RetryPolicy, parse_retry_after

NOW = 1_700_000_000.0


def test_backoff_sequence_doubles_from_initial_and_stops_at_the_cap():
    p = RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=30.0, multiplier=2.0, jitter=0.0)
    assert [p.base_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [p.delay(n, 0.7) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_huge_attempt_numbers_do_not_overflow():
    p = RetryPolicy(max_attempts=100, initial_backoff=1.0, max_backoff=30.0, multiplier=100.0, jitter=0.0)
    assert p.base_delay(100) == 30.0


def test_jitter_spreads_evenly_around_the_base_below_the_cap():
    p = RetryPolicy(initial_backoff=1.0, max_backoff=30.0, multiplier=2.0, jitter=0.2)
    assert p.delay(3, 0.0) == pytest.approx(3.2)  # 4 s - 20 %
    assert p.delay(3, 0.5) == pytest.approx(4.0)
    assert p.delay(3, 0.999999) == pytest.approx(4.8, abs=1e-5)


def test_jitter_never_pushes_a_delay_past_the_cap():
    """Tidewatch W11: jitter was added after the cap, so delays reached cap × 1.2."""
    p = RetryPolicy(max_attempts=20, initial_backoff=1.0, max_backoff=30.0, multiplier=2.0, jitter=0.2)
    for attempt in range(1, 20):
        for u in (0.0, 0.25, 0.5, 0.75, 0.999999):
            assert p.delay(attempt, u) <= 30.0
    # 16 s base: its +20 % band (19.2 s) fits; 30 s: the band is [24, 30], not a spike at 30.
    assert p.delay(5, 0.999999) == pytest.approx(19.2, abs=1e-4)
    assert p.delay(6, 0.0) == pytest.approx(24.0)
    assert p.delay(6, 0.5) == pytest.approx(27.0)


def test_near_the_cap_the_upper_edge_is_clipped():
    p = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, multiplier=9.0, jitter=0.5)
    # base 9: band [4.5, 13.5] clipped to [4.5, 10]
    assert p.delay(2, 0.0) == pytest.approx(4.5)
    assert p.delay(2, 0.999999) == pytest.approx(10.0, abs=1e-4)


def test_attempt_count_and_disabled_retry():
    p = RetryPolicy.from_config(config.RetryConfig(max_attempts=3))
    assert [p.should_retry(n) for n in (1, 2, 3)] == [True, True, False]
    off = RetryPolicy.from_config(config.RetryConfig(enabled=False, max_attempts=5))
    assert off.max_attempts == 1 and not off.should_retry(1)


def test_from_config_maps_every_key():
    cfg = config.loads("""
remote:
  url: http://127.0.0.1:8428/api/v1/import
  retry: {max_attempts: 5, initial_backoff: 500ms, max_backoff: 1m, backoff_multiplier: 3,
          jitter_percent: 10, max_retry_after: 2m}
""", environ={})
    p = RetryPolicy.from_config(cfg.remote.retry)
    assert p == RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=60.0, multiplier=3.0,
                            jitter=0.1, max_retry_after=120.0)
    assert [p.base_delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 7 ", NOW) == 7.0
    when = format_datetime(datetime.fromtimestamp(NOW + 90, tz=timezone.utc), usegmt=True)
    assert when.endswith("GMT")
    assert parse_retry_after(when, NOW) == pytest.approx(90.0)
    past = format_datetime(datetime.fromtimestamp(NOW - 90, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0
    for junk in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024"):
        assert parse_retry_after(junk, NOW) is None, junk


def test_retry_after_is_honoured_but_capped_and_jitter_stays_inside_the_cap():
    """Tidewatch W10: any Retry-After was obeyed, plus up to 1 s, uncapped."""
    p = RetryPolicy(jitter=0.2, max_retry_after=300.0)
    assert p.retry_after_delay(10.0, 0.0) == 10.0  # never earlier than the server asked
    assert p.retry_after_delay(10.0, 0.5) == pytest.approx(11.0)
    assert p.retry_after_delay(280.0, 0.999999) == pytest.approx(300.0, abs=1e-3)  # band clipped at the cap
    for u in (0.0, 0.5, 0.999999):
        assert 240.0 <= p.retry_after_delay(86_400.0, u) <= 300.0


def test_wait_after_prefers_the_servers_retry_after():
    p = RetryPolicy(initial_backoff=1.0, jitter=0.0, max_retry_after=60.0)
    assert p.wait_after(1, 30.0, 0.5) == 30.0
    assert p.wait_after(1, None, 0.5) == 1.0
    assert p.wait_after(2, 0.0, 0.5) == 2.0  # "retry now" falls back to the backoff
