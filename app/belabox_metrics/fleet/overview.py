"""`belabox-fleet list`: one row per device from the agents' own metrics in VictoriaMetrics.

What a row says and where it comes from (instant queries at "now", grouped by device_id):

- last seen: the newest timestamp of the agent's heartbeat series (``tlast_over_time``),
  the collection time of its newest sample that reached the server;
- uploader state: ``metrics_collector_component_status{component="uploader"}`` (0 ok,
  1 degraded, 2 error), as the box itself judged it at that time;
- backlog: ``metrics_collector_spool_pending_samples`` and ``..._parked_samples``;
- modems: ``belabox_modem_state`` series (present) and those at MM_MODEM_STATE_CONNECTED
  (11, up); ``belabox_modem_present`` counts as present where the agent sends it;
- ``belabox_soc_temp_celsius``, ``metrics_collector_build_info{version}``.

Any of them may be absent (older agents): the field is then null, never a guess.

A dark box has sent nothing for a while, so its values are looked up in ever longer
windows (only for the boxes still missing) and show its state when it went dark. Queries
over long windows touch only those boxes' series: a fleet of 200 costs a few queries.

Pure parts (``build_rows``, ``render_table``) take query results, not HTTP.
Imports: stdlib, requests, and the fleet registry.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import requests

from belabox_metrics.fleet.registry import Device, FleetError

HEARTBEAT = ("metrics_collector_samples_collected_total|metrics_collector_spool_pending_samples|"
             "metrics_collector_upload_last_success_timestamp_seconds|metrics_collector_build_info")
UPLOADER_STATES = {0: "ok", 1: "degraded", 2: "error"}
MODEM_CONNECTED = 11  # MMModemState MM_MODEM_STATE_CONNECTED
# Windows for the last value of each series; later windows only for boxes not found yet.
WINDOWS = ("15m", "1d", "30d", "400d")
STATUS_ORDER = {"dark": 0, "never": 1, "refused": 2, "ok": 3}


def queries(selector: str, window: str) -> dict[str, str]:
    """PromQL per field; ``selector`` restricts device_id (e.g. ``device_id!=""``)."""
    s, w = selector, window
    return {
        "last_seen": f'max by (device_id) (tlast_over_time({{__name__=~"{HEARTBEAT}",{s}}}[{w}]))',
        "uploader": f'max by (device_id) (last_over_time(metrics_collector_component_status'
                    f'{{component="uploader",{s}}}[{w}]))',
        "pending": f"sum by (device_id) (last_over_time(metrics_collector_spool_pending_samples{{{s}}}[{w}]))",
        "parked": f"sum by (device_id) (last_over_time(metrics_collector_spool_parked_samples{{{s}}}[{w}]))",
        "last_upload": f"max by (device_id) (last_over_time("
                       f"metrics_collector_upload_last_success_timestamp_seconds{{{s}}}[{w}]))",
        "modems_present": f"count by (device_id) (last_over_time(belabox_modem_state{{{s}}}[{w}]))",
        "modems_flag": f"sum by (device_id) (last_over_time(belabox_modem_present{{{s}}}[{w}]) > 0)",
        "modems_up": f"count by (device_id) (last_over_time(belabox_modem_state{{{s}}}[{w}]) >= {MODEM_CONNECTED})",
        "soc_temp": f"max by (device_id) (last_over_time(belabox_soc_temp_celsius{{{s}}}[{w}]))",
        "version": f"max by (device_id, version) (tlast_over_time(metrics_collector_build_info{{{s}}}[{w}]))",
    }


def id_selector(ids: Iterable[str]) -> str:
    return 'device_id=~"' + "|".join(re.escape(i).replace("\\", "\\\\") for i in sorted(ids)) + '"'


@dataclass
class Row:
    device_id: str
    status: str  # dark | never | refused | ok
    registry: str  # active | revoked | unregistered (seen in VictoriaMetrics, not in the registry)
    last_seen: float | None = None  # unix seconds
    dark_since: float | None = None
    uploader: str | None = None  # ok | degraded | error, as the box reported it
    pending_samples: int | None = None
    parked_samples: int | None = None
    last_upload_success: float | None = None
    modems_up: int | None = None
    modems_present: int | None = None
    soc_temp_celsius: float | None = None
    agent_version: str | None = None
    labels: dict = field(default_factory=dict)


def merge(found: dict[str, dict], results: dict[str, list[dict]]) -> None:
    """Fold one window's query results into ``found`` (device_id -> field -> value); a field a
    shorter window already filled is kept."""
    newest_version: dict[str, tuple[float, str]] = {}
    for name, series in results.items():
        for s in series:
            did = s.get("metric", {}).get("device_id")
            try:
                value = float(s["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not did or math.isnan(value):
                continue
            if name == "version":
                # The version whose series has the newest sample, not the highest string.
                ver = s["metric"].get("version")
                if ver and value > newest_version.get(did, (-1.0, ""))[0]:
                    newest_version[did] = (value, ver)
                continue
            found.setdefault(did, {}).setdefault(name, value)
    for did, (_, ver) in newest_version.items():
        found.setdefault(did, {}).setdefault("version", ver)


def build_rows(devices: dict[str, Device], found: dict[str, dict], now: float, dark_after_s: float) -> list[Row]:
    rows = []
    for did in sorted(set(devices) | set(found)):
        d = devices.get(did)
        f = found.get(did, {})
        last = f.get("last_seen")
        registry = d.state if d is not None else "unregistered"
        if registry == "revoked":
            status = "refused"
        elif last is None:
            status = "never"
        elif now - last > dark_after_s:
            status = "dark"
        else:
            status = "ok"
        present = f.get("modems_present")
        if f.get("modems_flag") is not None:
            present = max(present or 0, f["modems_flag"])
        rows.append(Row(
            device_id=did, status=status, registry=registry, last_seen=last,
            dark_since=last if status in ("dark", "refused") else None,
            uploader=UPLOADER_STATES.get(int(f["uploader"])) if "uploader" in f else None,
            pending_samples=_int(f.get("pending")), parked_samples=_int(f.get("parked")),
            last_upload_success=f.get("last_upload"),
            modems_up=_int(f.get("modems_up", 0 if present is not None else None)), modems_present=_int(present),
            soc_temp_celsius=f.get("soc_temp"), agent_version=f.get("version"),
            labels=dict(d.labels) if d is not None else {}))
    # Dark boxes first, the longest dark on top; then never seen, revoked, and the healthy.
    rows.sort(key=lambda r: (STATUS_ORDER[r.status], r.dark_since or 0.0, r.device_id))
    return rows


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def as_json(rows: list[Row], now: float) -> dict:
    return {"generated_at": now, "devices": [asdict(r) for r in rows]}


def _ago(t: float, now: float) -> str:
    s = max(0, int(now - t))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _stamp(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))


def render_table(rows: list[Row], now: float) -> str:
    head = ("DEVICE", "STATUS", "SINCE", "LAST SEEN", "UPLOADER", "PENDING", "PARKED", "MODEMS", "SOC°C", "AGENT")
    lines = [head]
    for r in rows:
        status = r.status.upper() if r.status != "ok" else "ok"
        since = _stamp(r.dark_since) if r.dark_since is not None else "-"
        modems = "-" if r.modems_present is None else f"{r.modems_up or 0}/{r.modems_present}"
        lines.append((r.device_id, status, since, f"{_ago(r.last_seen, now)} ago" if r.last_seen else "never",
                      r.uploader or "-", _opt(r.pending_samples), _opt(r.parked_samples), modems,
                      "-" if r.soc_temp_celsius is None else f"{r.soc_temp_celsius:.0f}", r.agent_version or "-"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _opt(v) -> str:
    return "-" if v is None else str(v)


class Querier:
    """Instant queries against the fleet's VictoriaMetrics (single node or vmselect)."""

    def __init__(self, query_url: str, session: requests.Session | None = None, timeout: float = 20.0):
        self.url = query_url.rstrip("/") + "/api/v1/query"
        self.http = session or requests.Session()
        self.timeout = timeout

    def query(self, promql: str, at: float) -> list[dict]:
        try:
            r = self.http.post(self.url, data={"query": promql, "time": f"{at:.3f}"}, timeout=self.timeout)
        except requests.RequestException as e:
            raise FleetError(f"VictoriaMetrics at {self.url} is not reachable ({e.__class__.__name__})") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or body.get("status") != "success":
            err = " ".join(str(body.get("error") or r.text).split())[:200]
            raise FleetError(f"VictoriaMetrics query failed (HTTP {r.status_code}): {err}")
        return body.get("data", {}).get("result", [])


def collect(devices: dict[str, Device], query: Callable[[str, float], list[dict]], now: float,
            windows: tuple[str, ...] = WINDOWS) -> dict[str, dict]:
    found: dict[str, dict] = {}
    missing: set[str] | None = None  # None: every device_id (the first window)
    for w in windows:
        if missing is not None and not missing:
            break
        sel = 'device_id!=""' if missing is None else id_selector(missing)
        merge(found, {name: query(q, now) for name, q in queries(sel, w).items()})
        missing = {did for did in devices if "last_seen" not in found.get(did, {})}
    return found
