"""Key-signal table and the row derivation: rates, counter resets, gaps, selection."""

from __future__ import annotations

import pathlib
import re

import pytest

from belabox_metrics.timeline import rows as rw
from belabox_metrics.timeline import signals as sig
from belabox_metrics.timeline.history import HistoryError, parse_history, parse_time
from tests.timeline.make_sample_history import make_history

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = ROOT / "app" / "belabox_metrics"
GOLDEN = ROOT / "tests" / "collectors" / "expected"


def doc(series, events=(), since=0, until=600, **extra):
    return {"since": since, "until": until, "series": series, "events": list(events), **extra}


def s(name, labels=None, points=()):
    return {"name": name, "labels": labels or {}, "points": [list(p) for p in points]}


def rows_of(d, **kw):
    return rw.build_rows(parse_history(d), **kw)


def test_rates_between_points():
    assert rw.rates([(0, 100), (30, 400), (60, 1000)]) == [(30, 10.0), (60, 20.0)]


def test_counter_reset_counts_from_zero_not_negative():
    # 900 -> 60: the counter restarted (modem re-enumerated); the growth is 60, not -840
    assert rw.increments([(0, 300), (30, 900), (60, 60)]) == [(30, 600), (60, 60)]
    assert rw.rates([(0, 300), (30, 900), (60, 60)]) == [(30, 20.0), (60, 2.0)]


def test_no_rate_across_a_gap():
    pts = [(0, 0), (30, 30), (60, 60), (90, 90), (990, 120), (1020, 150)]
    # 900 s between 90 and 990 is 30 typical intervals: no value is invented across it
    assert [t for t, _ in rw.rates(pts)] == [30, 60, 90, 1020]


def test_cpu_busy_from_mode_counters():
    series = []
    for cpu in ("0", "1"):
        for mode, per_step in (("idle", 20), ("iowait", 1), ("user", 6), ("system", 3)):
            series.append(s("node_cpu_seconds_total", {"cpu": cpu, "mode": mode},
                            [(0, 1000), (30, 1000 + per_step), (60, 1000 + 2 * per_step)]))
    (row,) = rows_of(doc(series, until=60))
    assert row.key == "cpu_busy" and row.unit == "percent"
    assert row.points == [(30, pytest.approx(30.0)), (60, pytest.approx(30.0))]


def test_modem_rows_use_rsrp_else_rssi_and_name_by_interface_and_technology():
    series = [
        s("belabox_modem_info", {"modem": "aaaa11112222", "interface": "wwan0", "access_tech": "lte"},
          [(0, 1)]),
        s("belabox_modem_rsrp_dbm", {"modem": "aaaa11112222", "access_tech": "lte"}, [(0, -90), (30, -100)]),
        s("belabox_modem_rssi_dbm", {"modem": "aaaa11112222", "access_tech": "lte"}, [(0, -60)]),
        s("belabox_modem_rssi_dbm", {"modem": "bbbb33334444", "access_tech": "umts"}, [(0, -75)]),
    ]
    got = {r.key: r.title for r in rows_of(doc(series))}
    assert got == {"modem_rsrp:aaaa11112222": "wwan0 lte RSRP", "modem_rssi:bbbb33334444": "bbbb3333 RSSI"}


def test_technology_change_keeps_one_row_per_modem():
    series = [s("belabox_modem_rsrp_dbm", {"modem": "m1", "access_tech": "5gnr"}, [(0, -80), (30, -82)]),
              s("belabox_modem_rsrp_dbm", {"modem": "m1", "access_tech": "lte"}, [(60, -99)])]
    (row,) = rows_of(doc(series))
    assert row.points == [(0, -80), (30, -82), (60, -99)]


def test_links_exclude_loopback_and_rate_is_bits_per_second():
    series = [s("node_network_transmit_bytes_total", {"device": d}, [(0, 0), (10, 1250)]) for d in ("lo", "wwan0")]
    (row,) = rows_of(doc(series))
    assert row.key == "link_tx:wwan0" and row.points == [(10, 1000.0)]  # 125 B/s = 1 kbit/s


def test_disk_free_prefers_the_data_mountpoint():
    series = [s("node_filesystem_avail_bytes", {"mountpoint": m}, [(0, v)])
              for m, v in (("/", 1), ("/data", 2), ("/srv/rec", 3))]
    assert [r.points for r in rows_of(doc(series)) if r.key.startswith("disk_free")] == [[(0, 2)]]
    mine = rows_of(doc(series, data_mountpoint="/srv/rec"))
    assert [(r.key, r.title) for r in mine] == [("disk_free:/srv/rec", "disk free /srv/rec")]


def test_rows_without_data_in_window_are_left_out():
    series = [s("belabox_soc_temp_celsius", {"type": "x"}, [(9000, 50)]),  # after the window
              s("belabox_encoder_bitrate_bps", {}, []),
              s("node_memory_MemAvailable_bytes", {}, [(100, 5e9)])]
    assert [r.key for r in rows_of(doc(series))] == ["mem_available"]


def test_thermal_zone_only_without_soc_temperature():
    zone = s("node_thermal_zone_temp", {"type": "cpu", "zone": "0"}, [(0, 40)])
    soc = s("belabox_soc_temp_celsius", {"type": "package-thermal"}, [(0, 50)])
    assert [r.key for r in rows_of(doc([zone]))] == ["thermal_max"]
    assert [r.key for r in rows_of(doc([zone, soc]))] == ["soc_temp"]


def test_stream_up_is_the_worst_of_belacoder_and_srtla_send():
    series = [s("belabox_process_up", {"process": "belacoder"}, [(0, 1), (30, 1)]),
              s("belabox_process_up", {"process": "srtla_send"}, [(0, 1), (30, 0)]),
              s("belabox_process_up", {"process": "belaUI"}, [(0, 0), (30, 0)])]
    by_key = {r.key: r for r in rows_of(doc(series))}
    assert by_key["stream_up"].points == [(0, 1), (30, 0)]
    assert not by_key["process_up:srtla_send"].screen


def test_other_series_only_with_include_other():
    series = [s("node_load1", {}, [(0, 1.5)]), s("node_context_switches_total", {}, [(0, 0), (10, 50)])]
    assert rows_of(doc(series)) == []
    other = {r.title: r for r in rows_of(doc(series), include_other=True)}
    assert other["node_load1"].points == [(0, 1.5)]
    assert other["node_context_switches_total"].points == [(10, 5.0)]


def test_columns_carry_a_sparse_series_and_show_gaps():
    row = rw.Row("k", "t", "dBm", sig.GAUGE, [(0, 1), (30, 2), (60, 3), (300, 4)], max_gap=90)
    cols = rw.columns(row, 0, 360, 36)  # 10 s columns for 30 s points
    assert cols[1].mean == 1 and cols[4].lo == 2 and cols[4].hi == 2
    assert cols[3] is not None and (cols[3].lo, cols[3].hi) == (1, 2)  # the step's edge
    assert cols[15] is None  # 240 s after the last point before the gap: not drawn through
    assert cols[30].last == 4


def test_parse_time_and_bad_input():
    assert parse_time("1970-01-01T00:01:00Z", "x") == 60
    assert parse_time("1970-01-01T01:01:00+01:00", "x") == 60
    for bad, msg in (([], "not a JSON object"), ({"since": 0}, "'until' is missing"),
                     ({"since": 10, "until": 5}, "not after"), ({"since": "yesterday", "until": 5}, "RFC3339"),
                     (doc([{"name": "x", "points": [[1]]}]), r"not \[time, value\]")):
        with pytest.raises(HistoryError, match=msg):
            parse_history(bad)


def test_nan_points_are_gaps_not_values():
    h = parse_history(doc([s("belabox_soc_temp_celsius", {}, [(0, 40), (30, float("nan")), (60, "41.5")])]))
    assert h.series[0].points == [(0, 40), (60, 41.5)]


def test_every_key_metric_is_one_the_agent_emits():
    # Guards the table against a renamed metric: each name is quoted in the agent's source or
    # is in a collector golden file (node_memory_* names are built from /proc/meminfo keys).
    source = "\n".join(p.read_text() for p in APP.rglob("*.py") if "timeline" not in p.relative_to(APP).parts)
    golden = "\n".join(p.read_text() for p in GOLDEN.glob("*.prom"))
    missing = [m for m in sig.KEY_METRICS
               if not re.search(rf'"{m}"', source) and not re.search(rf"^{m}[{{ ]", golden, re.M)]
    assert missing == []


def test_is_key_series():
    assert sig.is_key_series("belabox_modem_rsrp_dbm", {"modem": "x"})
    assert sig.is_key_series("node_network_transmit_bytes_total", {"device": "wwan0"})
    assert not sig.is_key_series("node_network_transmit_bytes_total", {"device": "lo"})
    assert not sig.is_key_series("node_disk_reads_completed_total", {})
    assert set(sig.KEY_SERIES_PATTERNS) == sig.KEY_METRICS


def test_sample_history_tells_its_story():
    by_key = {r.key: r for r in rw.build_rows(parse_history(make_history()))}
    rsrp = [v for _, v in by_key["modem_rsrp:3f9a0c12d4e7"].points]
    assert min(rsrp) < -110 < -100 < max(rsrp)
    assert min(v for _, v in by_key["stream_up"].points) == 0
    assert sum(v for _, v in by_key["restarts"].points) == 1
    assert max(v for _, v in by_key["backlog"].points) > 1000
    usb0 = by_key["link_tx:usb0"].points
    assert min(v for _, v in usb0) >= 0  # the counter reset on reconnect is no negative rate
