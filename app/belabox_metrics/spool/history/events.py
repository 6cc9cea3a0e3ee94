"""Pure helpers of the history document: series points deduplicated and thinned for the
renderers, and events derived from them (counter increases, modems appearing and vanishing).
No spool, no I/O: query.py reads, this decides what the points mean."""

from __future__ import annotations

import bisect
from array import array

from belabox_metrics.spool.history import persist as h

_UPLOAD_REASONS = {"http_5xx": "server error (5xx)", "timeout": "timed out", "connect": "cannot connect"}
_KERNEL_KINDS = {"usb": "usb", "hdmirx": "hdmi", "under_voltage": "power", "over_current": "power",
                 "thermal": "thermal"}


def known(boot_id: str) -> bool:
    return bool(boot_id) and not boot_id.startswith("unknown-")  # an unreadable boot id is per start


def dedup(ts: array, vs: array) -> tuple[array, array]:
    """Sorted by time, one point per time (the sources overlap)."""
    pts = sorted(zip(ts, vs, strict=True), key=lambda p: p[0])
    out_t, out_v = array("q"), array("d")
    for t, v in pts:
        if not out_t or out_t[-1] != t:
            out_t.append(t)
            out_v.append(v)
    return out_t, out_v


def thin(ts, vs, max_points: int, counter: bool) -> tuple[list, list]:
    """Fewer points for the renderers: per time bucket the min and max (gauges: the envelope
    stays) or the last value (counters: rates between kept points are averages)."""
    buckets = max(1, max_points if counter else max_points // 2)
    t0, span = ts[0], ts[-1] - ts[0] + 1
    out_t: list[int] = []
    out_v: list[float] = []
    lo = 0
    for b in range(1, buckets + 1):
        hi = bisect.bisect_left(ts, t0 + span * b // buckets, lo)
        if hi > lo:
            if counter:
                keep = [hi - 1 - lo]
            else:
                seg = vs[lo:hi]
                try:
                    keep = sorted({seg.index(min(seg)), seg.index(max(seg))})
                except ValueError:  # NaN (a stale marker) compares with nothing
                    keep = [0, hi - 1 - lo] if hi - lo > 1 else [0]
            for k in keep:
                out_t.append(ts[lo + k])
                out_v.append(vs[lo + k])
        lo = hi
    return out_t, out_v


def counter_events(name: str, labels: dict, pts: list[tuple[int, float]], fresh: bool = False
                    ) -> list[tuple[int, str, str]]:
    if name not in h.EVENT_METRICS:
        return []
    out, run_start, run_n = [], None, 0
    if fresh and pts[0][1] > 0 and name == h.KERNEL_EVENTS:
        t, n = pts[0][0], int(pts[0][1])
        out.append((t, _kernel_kind(labels.get("kind", "")), _kernel_text(labels, n) + " before the agent started"))
    elif fresh and pts[0][1] > 0:  # the agent's own counter: every failure since it started
        run_start, run_n = pts[0][0], int(pts[0][1])
    for (_, a), (t, b) in zip(pts, pts[1:], strict=False):
        inc = b - a if b >= a else b  # a drop is a reset (new boot, agent restart)
        if inc <= 0:
            if run_start is not None and name == h.UPLOAD_FAILURES:
                out.append(_upload_event(run_start, run_n, labels))
                run_start, run_n = None, 0
            continue
        if name == h.UPLOAD_FAILURES:  # a run of failures while offline is one event
            run_start = run_start if run_start is not None else t
            run_n += int(inc)
        else:
            out.append((t, _kernel_kind(labels.get("kind", "")), _kernel_text(labels, int(inc))))
    if run_start is not None:
        out.append(_upload_event(run_start, run_n, labels))
    return out


def _upload_event(t: int, n: int, labels: dict) -> tuple[int, str, str]:
    reason = labels.get("reason", "unknown")
    return (t, "upload", f"upload failed: {_UPLOAD_REASONS.get(reason, reason)}" + (f" (x{n})" if n > 1 else ""))


def _kernel_kind(kind: str) -> str:
    return next((v for k, v in _KERNEL_KINDS.items() if kind.startswith(k)), "kernel")


def _kernel_text(labels: dict, n: int) -> str:
    what = labels.get("kind", "event").replace("_", " ")
    where = " ".join(x for x in (labels.get("device"), labels.get("modem")) if x and x not in what)
    return f"{what}{' ' + where if where else ''}" + (f" (x{n})" if n > 1 else "")


def presence_events(labels: dict, times: list[int], walls: list[int]) -> list[tuple[int, str, str]]:
    """A modem's info series appearing or vanishing between batches: added/removed."""
    if not times or not walls:
        return []
    name = labels.get("interface") or labels.get("modem") or labels.get("model") or "modem"
    model = labels.get("model") or labels.get("manufacturer") or ""
    what = f"{name}{' (' + model + ')' if model and model != name else ''}"
    out = []
    first_i = bisect.bisect_left(walls, times[0])
    if first_i > 0:
        out.append((times[0], "modem", f"modem added: {what}"))
    for a, b in zip(times, times[1:], strict=False):
        i, j = bisect.bisect_right(walls, a), bisect.bisect_left(walls, b)
        if j > i:  # batches between the two points had no info for it
            out.append((walls[i], "modem", f"modem removed: {what}"))
            out.append((b, "modem", f"modem added: {what}"))
    last_i = bisect.bisect_right(walls, times[-1])
    if last_i < len(walls):
        out.append((walls[last_i], "modem", f"modem removed: {what}"))
    return out
