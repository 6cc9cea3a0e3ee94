"""queue export encoders, time parsing and the progress line; pure."""

from __future__ import annotations

import json

import pytest

from belabox_metrics.commands.queue import parse_when, progress_line
from belabox_metrics.health.scrape import parse_exposition
from belabox_metrics.samples import sample
from belabox_metrics.spool.export import jsonl_lines, prometheus_lines


def _samples():
    return [sample("node_load1", 0.5 + i, {"device_id": "spoofed"}, ts_ms=1_700_000_000_000 + i * 1000)
            for i in range(5)] + [sample("x_total", 7, {"q": 'a"b\\c'}, ts_ms=1_700_000_000_000),
                                  sample("nan", float("nan"), ts_ms=1_700_000_000_000)]


def test_jsonl_groups_series_and_sets_device_id():
    lines = list(jsonl_lines(_samples(), "dev1", {"site": "berlin"}, chunk=3))
    rows = [json.loads(line) for line in lines]
    load = [r for r in rows if r["metric"]["__name__"] == "node_load1"]
    assert [len(r["values"]) for r in load] == [3, 2]
    assert load[0]["metric"] == {"__name__": "node_load1", "device_id": "dev1", "site": "berlin"}
    assert load[1]["timestamps"] == [1_700_000_003_000, 1_700_000_004_000]
    assert all(r["metric"]["__name__"] != "nan" for r in rows)  # JSON has no NaN


def test_prometheus_lines_round_trip():
    text = "".join(prometheus_lines(_samples(), "dev1"))
    parsed = parse_exposition(text)
    assert parsed.bad_lines == 0
    x = [s for s in parsed.samples if s.name == "x_total"][0]
    assert x.label("q") == 'a"b\\c' and x.label("device_id") == "dev1" and x.ts_ms == 1_700_000_000_000


def test_parse_when():
    now = 1_700_000_000.0
    assert parse_when("1700000000", now) == 1_700_000_000_000
    assert parse_when("2h", now) == 1_700_000_000_000 - 7_200_000
    assert parse_when("2023-11-14T22:13:20Z", now) == 1_700_000_000_000
    with pytest.raises(ValueError, match="not a time"):
        parse_when("yesterday", now)


def test_progress_line_fits():
    line = progress_line(90_000, 200_000, 1_234_567, 2.0)
    assert len(line) <= 80
    assert "45%" in line and "90,000/200,000 samples" in line and "45,000/s" in line and "ETA 2s" in line
    assert "100%" in progress_line(200_000, 200_000, 5, 4.0)
