"""The one-screen renderer: sparklines, the 80x24 fit, colour only on request."""

from __future__ import annotations

import re

import pytest

from belabox_metrics.timeline.history import HistoryError
from belabox_metrics.timeline.screen import BLOCKS, render_screen, sparkline, text_width, want_color
from tests.timeline.make_sample_history import START, make_history

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_sparkline_scales_min_to_lowest_and_max_to_highest_block():
    assert sparkline([0, 2, 4, 14]) == "▁▂▃█"  # level = (v - min) / (max - min) * 7
    assert sparkline([-120, -90]) == "▁█"
    assert sparkline([1, None, 8]) == "▁ █"  # a gap stays a gap
    assert sparkline([5, 5, 5]) == "▄▄▄"  # a constant is drawn level, not as a drop
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([None, None]) == "  "
    assert sparkline([0, 1], 0, 1) == "▁█" and sparkline([0.5], 0, 10) == "▁"
    assert len(BLOCKS) == 8


def _fits(text: str, width: int = 80, height: int = 24) -> list[str]:
    lines = ANSI.sub("", text).rstrip("\n").split("\n")
    assert len(lines) <= height
    too_wide = [ln for ln in lines if text_width(ln) > width]
    assert too_wide == []
    return lines


@pytest.mark.parametrize("hours", [1, 24])
def test_sample_history_fits_80x24_without_colour(hours):
    text = render_screen(make_history(hours))
    assert "\x1b" not in text  # NO_COLOR / not a tty: plain text only
    lines = _fits(text)
    assert lines[0].startswith("history 2026-12-07 14:00 ..") and "device bx-0042" in lines[0]
    labels = [ln[:15].strip() for ln in lines]
    for want in ("wwan0 lte RSRP", "usb0 5gnr SNR", "wwan0 tx", "SoC temp", "CPU busy", "disk free /data",
                 "encoder bitrate", "stream up", "restarts", "upload backlog"):
        assert want in labels
    assert "enP3p49s0 tx" not in labels  # an idle link is not worth a screen line
    stream = next(ln for ln in lines if ln.startswith("stream up"))
    assert "▁" in stream and stream.split()[-3:] == ["down", "up", "up"]
    assert next(ln for ln in lines if ln.startswith("restarts")).split()[-2:] == ["1", "total"]
    rsrp = next(ln for ln in lines if ln.startswith("wwan0 lte RSRP"))
    assert rsrp.endswith("dBm") and "-12" in rsrp  # min of the drop, about -118


def test_events_on_the_time_axis_and_listed_newest_last():
    lines = _fits(render_screen(make_history(1)))
    axis = next(ln for ln in lines if ln.startswith("events"))
    marks = axis[16:16 + 36]
    assert marks[0] == "?" and "? clock unverified" in axis  # booted without a verified clock
    assert marks.index("u") > marks.index("m")  # the USB disconnect after the signal drop
    listed = lines[lines.index(axis) + 1:]
    assert listed[-1].startswith("k ") and "thermal" in listed[-1]
    assert any(ln.startswith("u ") and "USB disconnect" in ln for ln in listed)


def test_colour_only_when_asked():
    coloured = render_screen(make_history(1), color=True)
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == render_screen(make_history(1))


def test_no_color_convention():
    assert want_color(True, {"TERM": "xterm"})
    assert not want_color(False, {})
    assert not want_color(True, {"NO_COLOR": "1"})
    assert want_color(True, {"NO_COLOR": ""})  # present but empty does not count
    assert not want_color(True, {"TERM": "dumb"})


def test_many_rows_and_events_still_fit_and_say_what_is_left_out():
    h = make_history(1)
    for i in range(20):
        h["series"].append({"name": "belabox_modem_snr_db", "labels": {"modem": f"extra{i:02d}"},
                            "points": [[h["series"][0]["points"][0][0] + 60, i]]})
    h["events"] += [{"time": "2026-12-07T14:59:00Z", "kind": "kernel", "text": "x" * 300}] * 30
    lines = _fits(render_screen(h))
    assert len(lines) == 24
    assert any("more rows: see --html" in ln for ln in lines)
    assert any(ln.startswith("events +") for ln in lines)


def test_wide_characters_count_two_columns():
    assert text_width("ab") == 2 and text_width("信号") == 4 and text_width("é") == 1
    h = make_history(1)
    h["events"].append({"time": "2026-12-07T14:59:00Z", "kind": "モデム", "text": "信号が弱い" * 20})
    h["series"].append({"name": "node_filesystem_avail_bytes", "labels": {"mountpoint": "/データ/録画"},
                        "points": [[START + 60, 1e9]]})
    lines = _fits(render_screen({**h, "data_mountpoint": "/データ/録画"}), 80, 24)
    assert lines[-1].startswith("モ ") and lines[-1].endswith("~")
    disk = next(ln for ln in lines if ln.startswith("disk free /デ"))
    assert text_width(disk.split(" ▄")[0]) == 15  # the label is cut and padded to 15 columns


@pytest.mark.parametrize("width,height", [(80, 24), (100, 30), (60, 15), (60, 6)])
def test_other_terminal_sizes(width, height):
    _fits(render_screen(make_history(1), width=width, height=height), width, height)


def test_device_text_cannot_drive_the_terminal():
    h = make_history(1)
    h["events"] = [{"time": "2026-12-07T14:30:00Z", "kind": "usb\x1b[2J", "text": "evil\x1b]0;pwned\x07 text"}]
    h["host"] = "host\x1b[31m"
    text = render_screen(h)
    assert "\x1b" not in text and "\x07" not in text
    assert "evil ]0;pwned  text" in text


def test_empty_window_says_so():
    text = render_screen({"since": "2026-12-07T14:00:00Z", "until": "2026-12-07T15:00:00Z", "series": [],
                          "events": []})
    assert "no key signal has data in this window" in text
    assert "events" in text and "none" in text


def test_bad_history_is_one_clear_error():
    with pytest.raises(HistoryError, match="^history: 'since' is missing$"):
        render_screen({"until": "2026-12-07T15:00:00Z"})
