"""The import format: grouping per series, line and request bounds, labels, validation."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from belabox_metrics.samples import FUTURE_SLACK_MS, sample
from belabox_metrics.upload.wire import Encoder, Part, Validator, count, halve, split_requests, sub_slice, whole
from tests.support.slices import make_slice

NOW_MS = 1_700_000_000_000


def decode(body) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(body.data).decode().splitlines()]


def series_of(rows: list[dict]) -> dict[tuple, tuple[list, list]]:
    out: dict[tuple, tuple[list, list]] = {}
    for r in rows:
        assert len(r["values"]) == len(r["timestamps"])
        v, t = out.setdefault(tuple(sorted(r["metric"].items())), ([], []))
        v.extend(r["values"])
        t.extend(r["timestamps"])
    return out


def test_samples_of_one_series_across_slices_share_lines_in_time_order():
    slices = [make_slice(i, NOW_MS + 10_000 * i,
                         [sample("node_load1", 0.5 + i), sample("node_cpu_seconds_total", 100.0 + i,
                                                                 {"cpu": "0", "mode": "idle"})])
              for i in (2, 0, 1)]  # handed over newest-first by the live lane
    enc = Encoder("dev1", chunk_size=50)
    body = enc.encode([whole(s) for s in slices])
    rows = decode(body)
    assert len(rows) == 2 and body.lines == 2 and body.samples == 6
    load = next(r for r in rows if r["metric"]["__name__"] == "node_load1")
    assert load["values"] == [0.5, 1.5, 2.5]
    assert load["timestamps"] == [NOW_MS, NOW_MS + 10_000, NOW_MS + 20_000]
    cpu = next(r for r in rows if r["metric"]["__name__"] == "node_cpu_seconds_total")
    assert cpu["metric"] == {"__name__": "node_cpu_seconds_total", "cpu": "0", "mode": "idle", "device_id": "dev1"}


def test_chunk_size_bounds_samples_per_line():
    slices = [make_slice(i, NOW_MS + 1000 * i, [sample("a", float(i)), sample("b", float(i))]) for i in range(7)]
    rows = decode(Encoder("d", chunk_size=3).encode([whole(s) for s in slices]))
    per_series = {}
    for r in rows:
        assert len(r["values"]) <= 3
        per_series.setdefault(r["metric"]["__name__"], []).append(len(r["values"]))
    assert per_series == {"a": [3, 3, 1], "b": [3, 3, 1]}
    got = series_of(rows)
    assert got[(("__name__", "a"), ("device_id", "d"))][0] == [float(i) for i in range(7)]


def test_split_requests_bounds_samples_per_request_and_cuts_parts():
    slices = [make_slice(i, NOW_MS + i, [sample("x", float(k)) for k in range(4)]) for i in range(3)]
    reqs = split_requests([whole(s) for s in slices], 5)
    assert [count(r) for r in reqs] == [5, 5, 2]
    # every sample exactly once, in order
    seen = [(p.slice.batch_id, i) for r in reqs for p in r for i in range(p.lo, p.hi)]
    assert seen == [(b, i) for b in range(3) for i in range(4)]
    assert split_requests([], 5) == []
    assert [count(r) for r in split_requests([whole(s) for s in slices], 100)] == [12]


def test_halve_splits_by_sample_count():
    parts = [whole(make_slice(1, NOW_MS, [sample("x", float(k)) for k in range(5)]))]
    left, right = halve(parts)
    assert (count(left), count(right)) == (3, 2)
    assert (left[0].lo, left[0].hi, right[0].lo, right[0].hi) == (0, 3, 3, 5)
    with pytest.raises(ValueError):
        halve([Part(parts[0].slice, 0, 1)])


def test_device_id_and_extra_labels_on_every_line_and_never_overridden_by_the_sample():
    """Tidewatch W14: a tag named device_id or __name__ replaced the real label."""
    s = make_slice(1, NOW_MS, [
        sample("m", 1.0, {"device_id": "spoofed", "site": "sample-site", "iface": "wwan0"}),
        sample("n", 2.0),
    ])
    enc = Encoder("real-dev", {"site": "studio", "fleet": "eu", "device_id": "extra-spoof", "__name__": "x",
                               "__meta": "y"})
    rows = decode(enc.encode([whole(s)]))
    by_name = {r["metric"]["__name__"]: r["metric"] for r in rows}
    assert by_name["m"] == {"__name__": "m", "device_id": "real-dev", "site": "studio", "fleet": "eu",
                            "iface": "wwan0"}
    assert by_name["n"] == {"__name__": "n", "device_id": "real-dev", "site": "studio", "fleet": "eu"}


def test_values_round_trip_exactly_and_non_ascii_label_values_are_kept():
    vals = [0.1, 1e-7, 123456789.123, 2.0**53, -0.0, 5e300]
    s = make_slice(1, NOW_MS, [sample("v", v, {"k": str(i), "where": "Zürich ✓"}) for i, v in enumerate(vals)])
    rows = decode(Encoder("d").encode([whole(s)]))
    got = {r["metric"]["k"]: r["values"][0] for r in rows}
    assert [got[str(i)] for i in range(len(vals))] == vals
    assert all(r["metric"]["where"] == "Zürich ✓" for r in rows)


def test_timekeeper_shift_moves_timestamps():
    s = make_slice(1, 5_000, [sample("x", 1.0, ts_ms=5_000), sample("x", 2.0, ts_ms=6_000)])
    rows = decode(Encoder("d").encode([whole(s, shift_ms=NOW_MS)]))
    assert rows[0]["timestamps"] == [NOW_MS + 5_000, NOW_MS + 6_000]


def test_validation_cuts_invalid_samples_out_with_reasons():
    good = sample("ok_metric", 1.0, {"a": "b"})
    samples = [
        good,
        sample("nan_metric", math.nan),
        sample("inf_metric", math.inf),
        sample("bad-name", 1.0),
        sample("bad_label", 1.0, {"1abc": "x"}),
        sample("reserved_label", 1.0, {"__meta": "x"}),
        sample("old", 1.0, ts_ms=1_000),
        sample("future", 1.0, ts_ms=NOW_MS + FUTURE_SLACK_MS + 60_000),
        good,
        sample("ok_metric", -math.inf, {"a": "b"}),  # a known-good series with a bad value
        good,
    ]
    sl = make_slice(7, NOW_MS, samples)
    valid, invalid = Validator().split([whole(sl)], NOW_MS)
    assert [(p.lo, p.hi) for p in valid] == [(0, 1), (8, 9), (10, 11)]
    assert [(p.lo, r) for p, r in invalid] == [
        (1, "not_finite"), (2, "not_finite"), (3, "bad_name"), (4, "bad_label"), (5, "bad_label"),
        (6, "too_old"), (7, "in_future"), (9, "not_finite")]
    # the same slice again: the cached series verdicts change nothing
    again = Validator()
    again.split([whole(sl)], NOW_MS)
    assert again.split([whole(sl)], NOW_MS)[1] == invalid


def test_validation_applies_the_timekeeper_shift_before_the_window_check():
    sl = make_slice(1, 2_000, [sample("x", 1.0, ts_ms=2_000)])  # 1970: too old as stored
    assert Validator().split([whole(sl)], NOW_MS)[1][0][1] == "too_old"
    valid, invalid = Validator().split([whole(sl, shift_ms=NOW_MS)], NOW_MS)
    assert invalid == [] and count(valid) == 1


def test_sub_slice_keeps_batch_coordinates():
    sl = make_slice(3, NOW_MS, [sample("x", float(k)) for k in range(10)], start=4)
    sub = sub_slice(sl, 2, 5)
    assert (sub.batch_id, sub.start, sub.end) == (3, 6, 9)
    assert [s.value for s in sub.samples] == [2.0, 3.0, 4.0]
    assert sub_slice(sl, 0, 10) is sl


def test_realistic_batches_cost_under_six_bytes_per_sample():
    """300 node_exporter-like series every 10 s, 100 batches in one request, 50 per line."""
    series = [("node_cpu_seconds_total", {"cpu": str(c), "mode": m}) for c in range(8)
              for m in ("user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice")]
    series += [(f"node_network_{d}_{k}_total", {"device": f"wwan{i}"}) for i in range(4)
               for d in ("receive", "transmit") for k in ("bytes", "packets", "errs", "drop", "fifo")]
    series += [(f"node_memory_{k}_bytes", {}) for k in range(196)]
    series = series[:300]
    slices = []
    for b in range(100):
        wall = NOW_MS + b * 10_000
        slices.append(make_slice(b, wall, [sample(n, float(1_000_000 + b * 37 * (i + 1) % 9973), lb)
                                           for i, (n, lb) in enumerate(series)]))
    body = Encoder("rk3588-0001", {"fleet": "eu"}, chunk_size=50).encode([whole(s) for s in slices])
    assert body.samples == 30_000
    assert len(body.data) / body.samples < 6.0


def test_unknown_now_has_no_future_limit_but_keeps_the_1970_floor():
    sl = make_slice(1, NOW_MS, [sample("x", 1.0, ts_ms=NOW_MS + 10 * FUTURE_SLACK_MS), sample("x", 1.0, ts_ms=5)])
    valid, invalid = Validator().split([whole(sl)], None)
    assert count(valid) == 1 and [r for _, r in invalid] == ["too_old"]
