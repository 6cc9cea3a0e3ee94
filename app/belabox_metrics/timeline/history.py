"""The history JSON (the contract between the spool's reader and the renderers), parsed.

Shape::

    {"since": RFC3339, "until": RFC3339,
     "series": [{"name": ..., "labels": {...}, "points": [[unix_seconds, value], ...]}],
     "events": [{"time": RFC3339, "kind": ..., "text": ...}],
     "clock_unverified": [[start_unix, end_unix], ...]}        # optional

Optional, shown when present: ``device_id``, ``host``, ``data_mountpoint``.
Bad input raises :class:`HistoryError` with one line saying what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone


class HistoryError(ValueError):
    pass


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    text: str


@dataclass
class History:
    since: float
    until: float
    series: list[Series]
    events: list[Event]
    unverified: list[tuple[float, float]] = field(default_factory=list)
    device_id: str | None = None
    host: str | None = None
    data_mountpoint: str | None = None


def parse_time(value: object, what: str) -> float:
    """RFC3339 (``Z`` or an offset) or unix seconds, as unix seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if not isinstance(value, str):
        raise HistoryError(f"history: {what} is not a time: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # fromisoformat accepts "Z" only from Python 3.11
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise HistoryError(f"history: {what} is not an RFC3339 time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _points(raw: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise HistoryError(f"history: {where}.points is not a list")
    out = []
    for p in raw:
        # float() also takes Prometheus' string values; one try per point keeps a day of
        # 40 series (115k points) fast on the device.
        try:
            t, v = p
            if isinstance(t, bool) or isinstance(v, bool):
                raise TypeError
            t, v = float(t), float(v)
        except (TypeError, ValueError):
            raise HistoryError(f"history: {where}.points has an entry that is not [time, value]: {p!r:.60}") from None
        if math.isfinite(t) and math.isfinite(v):  # NaN marks staleness in Prometheus: a gap
            out.append((t, v))
    out.sort(key=lambda p: p[0])  # linear when already in order, as the spool writes them
    return out


def _text(value: object) -> str:
    return "" if value is None else str(value)


def parse_history(doc: object) -> History:
    if not isinstance(doc, dict):
        raise HistoryError("history: the document is not a JSON object")
    for key in ("since", "until"):
        if key not in doc:
            raise HistoryError(f"history: '{key}' is missing")
    since, until = parse_time(doc["since"], "since"), parse_time(doc["until"], "until")
    if until <= since:
        raise HistoryError("history: 'until' is not after 'since'")
    series = []
    raw_series = doc.get("series") or []
    if not isinstance(raw_series, list):
        raise HistoryError("history: 'series' is not a list")
    for i, s in enumerate(raw_series):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise HistoryError(f"history: series[{i}] has no name")
        labels = s.get("labels") or {}
        if not isinstance(labels, dict):
            raise HistoryError(f"history: series[{i}].labels is not an object")
        series.append(Series(s["name"], {str(k): _text(v) for k, v in labels.items()},
                             _points(s.get("points") or [], f"series[{i}]")))
    events = []
    raw_events = doc.get("events") or []
    if not isinstance(raw_events, list):
        raise HistoryError("history: 'events' is not a list")
    for i, e in enumerate(raw_events):
        if not isinstance(e, dict):
            raise HistoryError(f"history: events[{i}] is not an object")
        events.append(Event(parse_time(e.get("time"), f"events[{i}].time"), _text(e.get("kind")) or "event",
                            _text(e.get("text"))))
    events.sort(key=lambda e: e.time)
    unverified = []
    for i, period in enumerate(doc.get("clock_unverified") or []):
        if not (isinstance(period, (list, tuple)) and len(period) == 2):
            raise HistoryError(f"history: clock_unverified[{i}] is not [start, end]")
        a, b = (parse_time(x, f"clock_unverified[{i}]") for x in period)
        unverified.append((min(a, b), max(a, b)))
    return History(since, until, series, events, unverified,
                   _opt(doc, "device_id"), _opt(doc, "host"), _opt(doc, "data_mountpoint"))


def _opt(doc: dict, key: str) -> str | None:
    v = doc.get(key)
    return str(v) if v not in (None, "") else None


def iso(t: float, seconds: bool = True) -> str:
    fmt = "%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ"
    return datetime.fromtimestamp(t, timezone.utc).strftime(fmt)


def clock(t: float, seconds: bool = True) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S" if seconds else "%H:%M")
