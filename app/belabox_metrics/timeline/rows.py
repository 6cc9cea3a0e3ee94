"""From history series to plotted rows: select by the signal table, derive rates, bucket.

Pure functions; both renderers use them, so the screen and the HTML show the same values.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from belabox_metrics.timeline import signals as sig
from belabox_metrics.timeline.history import History, Series

Points = list[tuple[float, float]]

# Two points further apart than this many typical intervals have a gap between them:
# no rate is computed across it and no value is drawn through it.
GAP_INTERVALS = 3.0
IDLE_MODES = ("idle", "iowait")


@dataclass
class Row:
    key: str  # unique per row: signal key, plus ":" and the group value
    title: str
    unit: str
    kind: str
    points: Points
    max_gap: float  # seconds; a longer distance between two points is drawn as a gap
    screen: bool = True
    hide_zero_on_screen: bool = False
    detail: str = ""  # what the row is made of, for a tooltip


def typical_interval(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if b[0] > a[0]]
    return statistics.median(gaps) if gaps else None


def _gap_limit(points: Sequence[tuple[float, float]]) -> float:
    step = typical_interval(points)
    return float("inf") if step is None else GAP_INTERVALS * step


def increments(points: Points) -> Points:
    """Counter growth between consecutive points, stamped at the later point.

    A value below the previous one is a counter reset (agent or device restarted, a USB
    modem re-enumerated): the counter restarted from 0, so the growth is the new value.
    """
    out = []
    limit = _gap_limit(points)
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        dt = t1 - t0
        if dt <= 0 or dt > limit:
            continue
        out.append((t1, v1 - v0 if v1 >= v0 else v1))
    return out


def rates(points: Points) -> Points:
    """Per-second rate of a counter between consecutive points (resets as in :func:`increments`)."""
    out = []
    limit = _gap_limit(points)
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        dt = t1 - t0
        if dt <= 0 or dt > limit:
            continue
        out.append((t1, (v1 - v0 if v1 >= v0 else v1) / dt))
    return out


def merge(parts: Iterable[Points], how: str) -> Points:
    """Several series' points merged by timestamp with max, min or sum.

    Samples of one batch share one timestamp; rounding to 1 ms absorbs float noise."""
    parts = list(parts)
    if len(parts) == 1:
        return list(parts[0])
    acc: dict[float, list[float]] = defaultdict(list)
    for pts in parts:
        for t, v in pts:
            acc[round(t, 3)].append(v)
    fn = {"max": max, "min": min, "sum": sum}[how]
    return [(t, fn(vs)) for t, vs in sorted(acc.items())]


def cpu_busy(series: Sequence[Series]) -> Points:
    """Percent of CPU time not idle, over all CPUs, from node_cpu_seconds_total."""
    idle: dict[float, float] = defaultdict(float)
    total: dict[float, float] = defaultdict(float)
    for s in series:
        is_idle = s.labels.get("mode") in IDLE_MODES
        for t, d in increments(s.points):
            k = round(t, 3)
            total[k] += d
            if is_idle:
                idle[k] += d
    return [(t, max(0.0, min(100.0, 100.0 * (1 - idle[t] / total[t])))) for t in sorted(total) if total[t] > 0]


def _derive(signal: sig.Signal, series: Sequence[Series]) -> Points:
    if signal.kind == sig.BUSY:
        return cpu_busy(series)
    if signal.kind == sig.RATE:
        parts = [rates(s.points) for s in series]
    elif signal.kind == sig.INCREASE:
        parts = [increments(s.points) for s in series]
    else:
        parts = [s.points for s in series]
    pts = merge(parts, signal.combine)
    if signal.scale != 1.0:
        pts = [(t, v * signal.scale) for t, v in pts]
    return pts


def _modem_names(history: History) -> dict[str, str]:
    """Modem key -> a readable name: its network interface and latest access technology."""
    names = {}
    for s in history.series:
        if s.name == "belabox_modem_info" and s.labels.get("modem"):
            key = s.labels["modem"]
            iface = s.labels.get("interface") or key[:8]
            tech = (s.labels.get("access_tech") or "").split(",")[0]
            latest = s.points[-1][0] if s.points else float("-inf")
            prev = names.get(key)
            if prev is None or latest >= prev[0]:
                names[key] = (latest, f"{iface} {tech}".strip())
    return {k: v[1] for k, v in names.items()}


def _clip(points: Points, since: float, until: float) -> Points:
    return [(t, v) for t, v in points if since <= t <= until]


def build_rows(history: History, include_other: bool = False) -> list[Row]:
    """The rows for this history, in the signal table's order; rows without data left out.

    With ``include_other`` every series no key signal uses becomes a row of its own
    (counters as rates), so the HTML shows everything the history holds.
    """
    rows: list[Row] = []
    used: set[int] = set()
    made: set[tuple[str, str]] = set()  # (signal key, group) of rows made so far
    modem_names = _modem_names(history)
    for i, s in enumerate(history.series):
        if s.name in sig.INFO_METRICS:
            used.add(i)
    for signal in sig.KEY_SIGNALS:
        groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, s in enumerate(history.series):
            if s.name in signal.metrics and sig.selects(signal, s.labels):
                group = s.labels.get(signal.group_by, "") if signal.group_by else ""
                groups[group][s.name].append(i)
        chosen = sorted(groups)
        if signal.prefer is not None:
            wanted = ((history.data_mountpoint,) if history.data_mountpoint else ()) + signal.prefer[1]
            chosen = [next((g for g in wanted if g in groups), chosen[0])] if chosen else []
        for group in chosen:
            if signal.unless and (signal.unless, group) in made:
                continue
            metric = next(m for m in signal.metrics if m in groups[group])
            idx = groups[group][metric]
            used.update(i for ids in groups[group].values() for i in ids)
            member = [history.series[i] for i in idx]
            pts = _clip(_derive(signal, member), history.since, history.until)
            if not pts:
                continue
            made.add((signal.key, group))
            name = modem_names.get(group, group[:8]) if signal.group_by == "modem" else group
            rows.append(Row(
                key=f"{signal.key}:{group}" if group else signal.key,
                title=signal.title.replace("{group}", name).strip(),
                unit=signal.unit, kind=signal.kind, points=pts,
                max_gap=_row_gap(member, pts),
                screen=signal.screen, hide_zero_on_screen=signal.hide_zero_on_screen,
                detail=_detail(metric, member)))
    if include_other:
        rows.extend(_other_rows(history, used))
    return rows


def _row_gap(member: Sequence[Series], pts: Points) -> float:
    steps = [st for st in (typical_interval(s.points) for s in member) if st]
    step = min(steps) if steps else typical_interval(pts)
    return GAP_INTERVALS * step if step else 0.0  # a lone point is drawn in its own column only


def _detail(metric: str, member: Sequence[Series]) -> str:
    if len(member) == 1 and member[0].labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(member[0].labels.items()))
        return f"{metric}{{{inner}}}"
    return metric if len(member) == 1 else f"{metric} ({len(member)} series)"


_SUFFIX_UNITS = (("_bps", "bps"), ("_bytes", "bytes"), ("_celsius", "celsius"), ("_dbm", "dBm"),
                 ("_db", "dB"), ("_percent", "percent"), ("_hertz", "hertz"), ("_seconds", "seconds"),
                 ("_volts", "volts"), ("_amps", "amps"), ("_watts", "watts"))


def other_unit(name: str) -> tuple[str, str]:
    """(kind, unit) of a series no key signal describes, from Prometheus naming conventions."""
    if name.endswith("_total"):
        base = name[: -len("_total")]
        for suffix, unit in _SUFFIX_UNITS:
            if base.endswith(suffix):
                return sig.RATE, {"bytes": "Bps", "seconds": "ratio"}.get(unit, unit + "/s")
        return sig.RATE, "per_s"
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return sig.GAUGE, unit
    return sig.GAUGE, ""


def _other_rows(history: History, used: set[int]) -> list[Row]:
    out = []
    for i, s in enumerate(history.series):
        if i in used:
            continue
        kind, unit = other_unit(s.name)
        pts = _clip(rates(s.points) if kind == sig.RATE else s.points, history.since, history.until)
        if not pts:
            continue
        label = _detail(s.name, [s])
        out.append(Row(key=f"series:{label}", title=label, unit=unit, kind=kind, points=pts,
                       max_gap=_row_gap([s], pts), screen=False, detail=label))
    return out


@dataclass(frozen=True)
class Column:
    lo: float
    hi: float
    mean: float
    last: float
    total: float  # sum of the points inside the column (counter increments: events in it)


def columns(row: Row, since: float, until: float, n: int) -> list[Column | None]:
    """``n`` equal time columns: each holds the points in it, plus the value carried in
    from the point before it when that point is within ``max_gap`` (so a 30 s series on
    a 10 s column is continuous and a step has its vertical edge); None where no data.
    """
    width = (until - since) / n
    out: list[Column | None] = []
    pts = row.points
    j = 0
    prev: tuple[float, float] | None = None
    for c in range(n):
        start = since + c * width
        end = start + width
        while j < len(pts) and pts[j][0] < start:
            prev = pts[j]
            j += 1
        vals = []
        if prev is not None and start - prev[0] <= row.max_gap and (
                j >= len(pts) or pts[j][0] - prev[0] <= row.max_gap):
            vals.append(prev[1])
        inside = []
        k = j
        while k < len(pts) and (pts[k][0] < end or (c == n - 1 and pts[k][0] <= end)):
            inside.append(pts[k][1])
            k += 1
        vals.extend(inside)
        if not vals:
            out.append(None)
            continue
        mean_of = inside or vals
        out.append(Column(min(vals), max(vals), sum(mean_of) / len(mean_of), vals[-1], sum(inside)))
    return out
