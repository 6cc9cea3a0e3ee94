"""``metrics-collector history``: one terminal screen (80x24) of the key signals.

Readable without colour: a sparkline per signal (▁..█, a space where there is no data),
min, max and last with units; then an event line on the same time axis (an event's
marker is the first letter of its kind, ``*`` for several kinds in one column, ``?``
where the clock was not verified) and the latest events that fit. Times are UTC.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from belabox_metrics.timeline import rows as rw
from belabox_metrics.timeline import signals as sig
from belabox_metrics.timeline import units
from belabox_metrics.timeline.history import History, clock, iso, parse_history

BLOCKS = "▁▂▃▄▅▆▇█"
LABEL_W = 15
NUM_W = 6
UNIT_W = 6
# label, space, sparkline, space, three numbers with spaces, space, unit
FIXED_W = LABEL_W + 1 + 1 + (3 * NUM_W + 2) + 1 + UNIT_W
MIN_EVENT_LINES = 3

_RESET = "\x1b[0m"
_STYLE = {"head": "\x1b[1m", "dim": "\x1b[2m", "spark": "\x1b[36m", "up": "\x1b[32m", "down": "\x1b[31m",
          "event": "\x1b[1;35m", "unverified": "\x1b[33m"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _paint(text: str, style: str, color: bool) -> str:
    return f"{_STYLE[style]}{text}{_RESET}" if color and text else text


def _clean(text: str) -> str:
    """Text from the device (event text, labels) must not drive the terminal."""
    return _CONTROL.sub(" ", text)


def text_width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _fit(text: str, width: int) -> str:
    if text_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = text_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "~"


def _pad(text: str, width: int) -> str:
    text = _fit(text, width)
    return text + " " * (width - text_width(text))


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s % 86400 == 0:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def column_values(row: rw.Row, cols: list[rw.Column | None]) -> list[float | None]:
    """One number per column: the worst state, the events counted, else the mean."""
    if row.kind == sig.STATE:
        return [c.lo if c else None for c in cols]
    if row.kind == sig.INCREASE:
        return [c.total if c else None for c in cols]
    return [c.mean if c else None for c in cols]


def sparkline(values: list[float | None], lo: float | None = None, hi: float | None = None) -> str:
    """Blocks scaled from ``lo`` (▁) to ``hi`` (█), default the values' own range; None is a space."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    lo = min(present) if lo is None else lo
    hi = max(present) if hi is None else hi
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi <= lo:
            out.append(BLOCKS[3] if v > 0 or lo < 0 else BLOCKS[0])
        else:
            level = round((min(max(v, lo), hi) - lo) / (hi - lo) * (len(BLOCKS) - 1))
            out.append(BLOCKS[level])
    return "".join(out)


def _stats(row: rw.Row) -> tuple[str, str, str, str]:
    vals = [v for _, v in row.points]
    if row.kind == sig.STATE:
        return (units.state_word(min(vals)), units.state_word(max(vals)), units.state_word(vals[-1]), "")
    if row.kind == sig.INCREASE:
        return ("", "", units.num(sum(vals)), "total")
    div, label = units.scale_for(row.unit, max(abs(min(vals)), abs(max(vals))))
    return (units.num(min(vals) / div), units.num(max(vals) / div), units.num(vals[-1] / div), label)


def _row_line(row: rw.Row, history: History, spark_w: int, color: bool) -> str:
    values = column_values(row, rw.columns(row, history.since, history.until, spark_w))
    if row.kind == sig.STATE:
        line = sparkline(values, 0.0, 1.0)
        if color:
            line = re.sub(f"{BLOCKS[-1]}+|[{BLOCKS[:-1]}]+",
                          lambda m: _paint(m.group(0), "up" if m.group(0)[0] == BLOCKS[-1] else "down", True), line)
    else:
        line = sparkline(values, 0.0 if row.kind == sig.INCREASE else None)
        line = _paint(line, "spark", color)
    lo, hi, last, unit = _stats(row)
    label = _pad(_clean(row.title), LABEL_W)
    return f"{label} {line} {lo:>{NUM_W}} {hi:>{NUM_W}} {last:>{NUM_W}} {unit}".rstrip()


def _marker_line(history: History, spark_w: int, color: bool) -> tuple[str, bool]:
    width = (history.until - history.since) / spark_w
    marks = ["─"] * spark_w
    unverified = False
    for a, b in history.unverified:
        for c in range(spark_w):
            start = history.since + c * width
            if a < start + width and b >= start:
                marks[c] = "?"
                unverified = True
    kinds: dict[int, set[str]] = {}
    for e in history.events:
        if history.since <= e.time <= history.until:
            c = min(spark_w - 1, int((e.time - history.since) / width))
            kinds.setdefault(c, set()).add(e.kind)
    for c, ks in kinds.items():
        marks[c] = marker(next(iter(ks))) if len(ks) == 1 else "*"
    if color:
        marks = [_paint(m, "unverified", True) if m == "?" else m if m == "─" else _paint(m, "event", True)
                 for m in marks]
    return "".join(marks), unverified


def want_color(isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal and only without NO_COLOR (https://no-color.org: any
    non-empty value); TERM=dumb gets none either."""
    return isatty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def marker(kind: str) -> str:
    ch = _clean(kind)[:1].lower()
    return ch if ch.strip() else "e"


def render_screen(history: dict, width: int = 80, height: int = 24, color: bool = False) -> str:
    """The history as at most ``height`` lines of at most ``width`` columns (without colour codes)."""
    h = parse_history(history)
    spark_w = max(8, width - FIXED_W)
    label_pad = " " * LABEL_W
    start, end = iso(h.since, False)[:-1], iso(h.until, False)[:-1]
    same_day = end[:10] == start[:10]
    head = f"history {start} .. {end[11:] if same_day else end} UTC ({duration(h.until - h.since)})"
    for key, val in (("device", h.device_id), ("host", h.host)):
        if val:
            head += f"  {key} {_clean(val)}"
    t0, t1 = clock(h.since, False), clock(h.until, False)
    axis = t0 + " " * max(1, spark_w - len(t0) - len(t1)) + t1
    colhead = f"{label_pad} {axis} {'min':>{NUM_W}} {'max':>{NUM_W}} {'last':>{NUM_W}}"
    lines = [_paint(_fit(head, width), "head", color), _paint(colhead, "dim", color)]

    all_rows = [r for r in rw.build_rows(h) if r.screen]
    shown = [r for r in all_rows if not (r.hide_zero_on_screen and all(v == 0 for _, v in r.points))]
    events = [e for e in h.events if h.since <= e.time <= h.until]
    budget = max(1, height - 3 - min(len(events), MIN_EVENT_LINES))
    more = 0
    if len(shown) > budget:
        keep = budget - 1  # one line says how many rows are left out
        more = len(shown) - keep
        shown = shown[:keep]
    if not shown and not more:
        lines.append(_fit(f"{label_pad} no key signal has data in this window", width))
    for row in shown:
        lines.append(_row_line(row, h, spark_w, color))
    if more:
        lines.append(_fit(f"{label_pad} +{more} more rows: see --html", width))

    marks, unverified = _marker_line(h, spark_w, color)
    room = height - len(lines) - 1
    listed = events[-room:] if room > 0 else []
    label = "events" if len(listed) == len(events) else f"events +{len(events) - len(listed)}"
    note = " ? clock unverified" if unverified else ""
    lines.append(f"{_pad(label, LABEL_W)} {marks}{note}")
    if not events:
        lines[-1] = lines[-1] + ("" if note else " none")
    for e in listed:
        when = clock(e.time) if same_day else iso(e.time, False)[5:-1]
        text = f"{marker(e.kind)} {when} {_pad(_clean(e.kind), 8)} {_clean(e.text)}"
        lines.append(_fit(text, width))
    return "\n".join(lines[:height]) + "\n"
