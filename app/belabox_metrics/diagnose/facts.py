"""Pure derivations for ``diagnose``: devices from samples, upload facts from health, the verdict.

Everything here takes plain data (samples, the /health JSON, numbers) and returns plain
data, so the report's content is tested without an agent, a network or a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from belabox_metrics.samples import Sample

OK, DEGRADED, ERROR = "ok", "degraded", "error"
_RANK = {OK: 0, DEGRADED: 1, ERROR: 2}
EXIT_CODES = {OK: 0, DEGRADED: 1, ERROR: 2}

# Label names the modem collector may use for the same fact; the first present wins.
_OPERATOR_LABELS = ("operator", "operator_name", "operator_code")
_TECH_LABELS = ("technology", "access_technology", "access_tech", "tech")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def worst(*statuses: str | None) -> str:
    return max((s for s in statuses if s in _RANK), key=_RANK.__getitem__, default=OK)


def _first(labels: Mapping[str, str], names: Iterable[str]) -> str | None:
    for n in names:
        v = labels.get(n)
        if v not in (None, "", "--"):
            return v
    return None


def modems(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """One entry per ``modem`` label: operator, technology, signal quality and RSRP when known."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        if not s.name.startswith("belabox_modem_"):
            continue
        labels = dict(s.labels)
        key = labels.get("modem")
        if key is None:
            continue
        m = out.setdefault(key, {"modem": key})
        if s.name == "belabox_modem_info":
            for field, names in (("operator", _OPERATOR_LABELS), ("technology", _TECH_LABELS)):
                v = _first(labels, names)
                if v and field not in m:
                    m[field] = v
            if labels.get("model"):
                m.setdefault("model", labels["model"])
        elif s.name == "belabox_modem_signal_quality_percent":
            m["signal_percent"] = s.value
        elif s.name == "belabox_modem_rsrp_dbm":
            m["rsrp_dbm"] = s.value
        elif s.name == "belabox_modem_rssi_dbm":
            m["rssi_dbm"] = s.value
        elif s.name == "belabox_modem_access_technology_info":
            v = _first(labels, _TECH_LABELS)
            if v:
                m.setdefault("technology", v)
    return [out[k] for k in sorted(out)]


def filesystems(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Mounted filesystems with size and free space (node_exporter's filesystem names)."""
    size: dict[str, float] = {}
    avail: dict[str, float] = {}
    dev: dict[str, str] = {}
    for s in samples:
        if s.name not in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"):
            continue
        labels = dict(s.labels)
        mp = labels.get("mountpoint")
        if mp is None:
            continue
        dev[mp] = labels.get("device", "")
        (size if s.name == "node_filesystem_size_bytes" else avail)[mp] = s.value
    out = []
    for mp in sorted(dev):
        entry: dict[str, Any] = {"mountpoint": mp, "device": dev[mp]}
        if mp in size:
            entry["size_bytes"] = size[mp]
        if mp in avail:
            entry["avail_bytes"] = avail[mp]
        if size.get(mp) and mp in avail:
            entry["used_percent"] = round(100.0 * (1 - avail[mp] / size[mp]), 1)
        out.append(entry)
    return out


def interfaces(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Network interfaces with carrier and byte counters (rates come from two readings)."""
    out: dict[str, dict[str, Any]] = {}
    names = {"node_network_carrier": "carrier", "node_network_up": "up",
             "node_network_receive_bytes_total": "rx_bytes", "node_network_transmit_bytes_total": "tx_bytes"}
    for s in samples:
        field = names.get(s.name)
        if field is None:
            continue
        device = s.label("device")
        if device is None:
            continue
        out.setdefault(device, {"device": device})[field] = s.value
    return [out[k] for k in sorted(out)]


def temperatures(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    out = []
    for s in samples:
        if s.name == "node_thermal_zone_temp":
            out.append({"sensor": s.label("type") or s.label("zone") or "?", "celsius": s.value})
    return sorted(out, key=lambda t: t["sensor"])


STREAM_PROCESSES = ("belaUI", "belacoder", "srtla_send")


def stream(samples: Iterable[Sample]) -> dict[str, Any] | None:
    """Is the stream up: belaUI/belacoder/srtla_send, restarts, encoder bitrate, bonded links and
    duplicate addresses, from the belabox collector's series. None on a box without belaUI."""
    procs: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"links": [], "duplicates": []}
    for s in samples:
        proc = s.label("process")
        if s.name == "belabox_process_up" and proc:
            procs.setdefault(proc, {})["up"] = s.value >= 1
        elif s.name == "belabox_process_restarts_total" and proc:
            procs.setdefault(proc, {})["restarts"] = int(s.value)
        elif s.name == "belabox_encoder_bitrate_bps":
            out["bitrate_bps"] = s.value
        elif s.name == "belabox_bond_link_info":
            out["links"].append(f"{s.label('device') or '?'}")
        elif s.name == "belabox_network_duplicate_address" and s.value >= 1:
            out["duplicates"].append(s.label("device") or "?")
    if not procs and "bitrate_bps" not in out:
        return None
    out["processes"] = {p: procs.get(p, {"up": False}) for p in STREAM_PROCESSES}
    out["links"].sort()
    out["duplicates"].sort()
    return out


def add_rates(ifaces: list[dict[str, Any]], later: Mapping[str, tuple[float, float]], seconds: float) -> None:
    """Fill rx_bps/tx_bps from counters read ``seconds`` after the ones in ``ifaces``."""
    if seconds <= 0:
        return
    for i in ifaces:
        after = later.get(i["device"])
        if after is None or "rx_bytes" not in i or "tx_bytes" not in i:
            continue
        for key, now in (("rx", after[0]), ("tx", after[1])):
            delta = now - i[f"{key}_bytes"]
            if delta >= 0:  # a counter reset (driver reload) gives no rate, not a negative one
                i[f"{key}_bps"] = delta * 8 / seconds


def upload_facts(health: Mapping[str, Any] | None, metrics: Iterable[Sample]) -> dict[str, Any]:
    """Last success, last error and its HTTP status from the uploader's health and counters."""
    out: dict[str, Any] = {}
    comp = ((health or {}).get("components") or {}).get("uploader") or {}
    details = comp.get("details") or {}
    if comp:
        out["status"] = comp.get("status")
        out["message"] = comp.get("message")
    for key in ("last_upload_time", "last_success", "last_success_time"):
        if details.get(key):
            out["last_success"] = details[key]
            break
    for key in ("time_since_upload_seconds",):
        if details.get(key) is not None:
            out["since_success_seconds"] = details[key]
    for key in ("last_error", "error"):
        if details.get(key):
            out["last_error"] = details[key]
            break
    if "last_error" not in out and comp.get("status") not in (None, OK):
        out["last_error"] = comp.get("message")  # the uploader names the failure in its message
    if "last_error_status" in details or "last_error_cause" in details:
        # The agent says which status belongs to the current error (None: not an HTTP one),
        # so a 204 from an earlier success never labels a later timeout.
        if details.get("last_error_status") and out.get("last_error"):
            out["http_status"] = details["last_error_status"]
    else:
        for key in ("last_error_status", "http_status", "last_status", "status_code"):
            v = details.get(key)
            # last_status is the last answer's, also a success's: a 2xx is no error to show.
            if v not in (None, "", 0) and not (isinstance(v, int) and 200 <= v < 300):
                out["http_status"] = v
                break
    if details.get("last_error_cause"):
        out["last_error_cause"] = details["last_error_cause"]
    m = _HTTP_STATUS.search(out.get("last_error") or "")
    if m and "http_status" not in out:
        out["http_status"] = int(m.group(1))
        out["last_error"] = out["last_error"][:m.start()] + out["last_error"][m.end():]
        rest = re.sub(r"^\((.*?)\)", r"\1", out["last_error"].strip(" :;,"))
        out["last_error"] = rest or f"HTTP {m.group(1)}"
    if "last_error_time" in details:
        out["last_error_time"] = details["last_error_time"]
    metrics = list(metrics)
    failures = {s.label("reason") or "?": s.value for s in metrics
                if s.name == "metrics_collector_upload_failures_total" and s.value}
    if failures:
        out["failures"] = failures
    uploaded = sum(s.value for s in metrics if s.name == "metrics_collector_uploaded_samples_total")
    if uploaded:
        out["uploaded_samples"] = uploaded
    return out


_SPOOL_GAUGES = {
    "metrics_collector_spool_pending_samples": "pending_samples",
    "metrics_collector_spool_pending_bytes": "pending_bytes",
    "metrics_collector_spool_database_bytes": "db_size_bytes",
    "metrics_collector_spool_wal_bytes": "wal_size_bytes",
    "metrics_collector_spool_oldest_pending_age_seconds": "oldest_age_seconds",
    "metrics_collector_spool_parked_bytes": "parked_bytes",
    "metrics_collector_spool_oldest_parked_age_seconds": "oldest_parked_age_seconds",
}


def spool_from_metrics(samples: Iterable[Sample]) -> dict[str, Any] | None:
    """The spool's figures as the running agent publishes them; None when it does not."""
    out: dict[str, Any] = {}
    dropped: dict[str, float] = {}
    parked: dict[str, int] = {}
    for s in samples:
        key = _SPOOL_GAUGES.get(s.name)
        if key is not None:
            out[key] = s.value
        elif s.name == "metrics_collector_dropped_samples_total":
            dropped[s.label("reason") or "?"] = dropped.get(s.label("reason") or "?", 0) + s.value
        elif s.name == "metrics_collector_spool_parked_samples" and s.value:
            parked[s.label("reason") or "?"] = parked.get(s.label("reason") or "?", 0) + int(s.value)
    if "pending_samples" not in out:
        return None
    if not out.get("pending_samples"):
        out["oldest_age_seconds"] = None  # the agent reports 0 for "nothing pending"
    out["parked_samples"] = sum(parked.values())
    out["parked_by_reason"] = dict(sorted(parked.items()))
    if not out["parked_samples"]:
        out["oldest_parked_age_seconds"] = None
    out["dropped"] = dropped
    return out


def drain_estimate(pending_bytes: int | None, max_bytes_per_second: int) -> float | None:
    """Seconds to send the backlog at the configured backlog-lane budget; None when unbounded
    or unknown (an unthrottled drain is bound by the link, which we cannot know here)."""
    if not pending_bytes or max_bytes_per_second <= 0:
        return 0.0 if pending_bytes == 0 else None
    return pending_bytes / max_bytes_per_second


def verdict(report: Mapping[str, Any]) -> str:
    """ok / degraded / error for the whole report: the agent's own roll-up, a service that
    is not running (error), configuration problems (error) and local findings."""
    service = report.get("service") or {}
    statuses = [service.get("health_status")]
    if service.get("state") != "running":
        statuses.append(ERROR)
    if (report.get("config") or {}).get("problems"):
        statuses.append(ERROR)
    for p in report.get("problems") or []:
        statuses.append(p.get("severity"))
    return worst(*statuses)
