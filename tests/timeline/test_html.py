"""The HTML renderer without a browser: escaping, self-containment, one plot per row, size."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from belabox_metrics.timeline import html as th
from belabox_metrics.timeline.history import parse_history
from belabox_metrics.timeline.rows import build_rows
from tests.timeline.make_sample_history import make_history

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(text: str) -> list[tuple[str, dict]]:
    p = Tags()
    p.feed(text)
    return p.tags


def evil_history() -> dict:
    h = make_history(1)
    t0 = h["series"][0]["points"][0][0]
    h["series"].append({"name": "belabox_modem_info", "points": [[t0, 1]],
                        "labels": {"modem": "m-evil", "interface": EVIL, "access_tech": EVIL}})
    h["series"].append({"name": "belabox_modem_snr_db", "labels": {"modem": "m-evil", "x": EVIL},
                        "points": [[t0 + 60, 3]]})
    h["series"].append({"name": "some_gauge", "labels": {"evil": EVIL}, "points": [[1_796_652_000, 1]]})
    h["events"].append({"time": "2026-12-07T14:30:00Z", "kind": EVIL, "text": EVIL})
    h["device_id"] = EVIL
    return h


def test_every_device_text_is_escaped():
    page = th.render_html(evil_history())
    assert "<img" not in page and 'alert("x")' not in page
    scripts = [t for t, _ in tags(page) if t == "script"]
    assert len(scripts) == 2  # the error hook and the read-out: nothing injected
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert all("onerror" not in attrs for _, attrs in tags(page))


def test_self_contained_no_network():
    page = th.render_html(make_history(1))
    for needle in ("http://", "https://", "//cdn", "@import", "url(", " src=", "<link", "@font-face"):
        assert needle not in page, needle
    csp = next(a["content"] for t, a in tags(page) if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in csp


def test_one_plot_per_row_and_every_column_is_a_pixel():
    h = make_history(1)
    page = th.render_html(h)
    plots = [a for t, a in tags(page) if t == "svg" and "plot" in a.get("class", "").split()]
    rows = build_rows(parse_history(h), include_other=True)
    assert [a["data-series"] for a in plots] == [r.key for r in rows]
    assert len(plots) >= 20
    for a in plots:
        assert len(a["data-v"].split(" ")) == th.PLOT_W
    stream = next(a for a in plots if a["data-series"] == "stream_up")
    assert "0" in stream["data-v"].split(" ") and "state" in stream["class"]


def test_event_markers_and_unverified_clock_are_drawn():
    page = th.render_html(make_history(1))
    assert page.count('class="unv"') >= 2  # in the event strip and in the plots
    assert re.search(r'<path class="ev" d="M[0-9.]+ ', page)
    assert "srtla_send exited with status 1" in page


def test_a_day_of_40_series_at_30s_stays_under_1mb():
    h = make_history(24, step=30, cpus=4)
    assert len(h["series"]) >= 40
    assert sum(len(s["points"]) for s in h["series"]) >= 40 * 2880
    # and 40 series no key signal knows about, each its own plot
    base = h["series"][0]["points"]
    for i in range(40):
        h["series"].append({"name": f"node_hwmon_temp_celsius_{i}", "labels": {"chip": f"c{i}"},
                            "points": [[t, 40 + (j % 97) * 0.37 + i] for j, (t, _) in enumerate(base)]})
    size = len(th.render_html(h).encode())
    print(f"24h, {len(h['series'])} series: {size} bytes")
    assert size < 1_000_000
