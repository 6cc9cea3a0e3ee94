"""``metrics-collector diagnose``: one screen that says what state a box is in, and why.

The running agent is asked first (``/health``, ``/metrics``); when it does not answer,
the lock file, systemd and the spool file (opened read-only) tell why, and a one-off
collection shows the devices. Exit code: 0 ok, 1 degraded, 2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from belabox_metrics import __version__
from belabox_metrics import config as configmod
from belabox_metrics.diagnose import devices as diagnose_devices
from belabox_metrics.diagnose import facts as diagnose_facts
from belabox_metrics.diagnose import kernel as diagnose_kernel
from belabox_metrics.diagnose.secrets import redactor
from belabox_metrics.health.registry import rfc3339
from belabox_metrics.health.scrape import parse_exposition
from belabox_metrics.platform import lock
from belabox_metrics.redact import redact_url
from belabox_metrics.spool import view as spool_view

UNIT = "metrics-collector"
HTTP_TIMEOUT = 3.0
SUBPROCESS_TIMEOUT = 10.0


# --- small I/O edges ----------------------------------------------------------------------

def http_get(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, str]:
    """(status, body) for any HTTP answer; raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback, operator-given)
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:  # /health answers 503 with the JSON body when in error
        return e.code, e.read().decode("utf-8", "replace")
    except urllib.error.URLError as e:
        reason = e.reason
        raise OSError(getattr(reason, "strerror", None) or str(reason)) from None


def run_tool(argv: list[str], timeout: float = SUBPROCESS_TIMEOUT) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); 127 when the tool is missing, 124 on a timeout."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except PermissionError:
        return 126, "", f"{argv[0]}: permission denied"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: timed out after {timeout:g}s"
    return p.returncode, p.stdout, p.stderr


def systemd_running(root: str = "/") -> bool:
    # sd_booted(3): systemd is PID 1 exactly when this directory exists.
    return os.path.isdir(os.path.join(root, "run/systemd/system"))


def parse_systemctl_show(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def systemd_state() -> dict[str, str] | None:
    if not systemd_running() or not shutil.which("systemctl"):
        return None
    rc, out, _ = run_tool(["systemctl", "show", UNIT, "-p", "ActiveState,SubState,Result,ExecMainStatus,MainPID"])
    return parse_systemctl_show(out) if rc == 0 else None


def kernel_clock_synchronised() -> bool | None:
    """adjtimex(2) with no changes: returns TIME_ERROR (5) while the kernel says unsynchronised."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # larger than struct timex on every ABI; modes=0
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != 5


# --- gathering ------------------------------------------------------------------------------

def health_url(cfg: configmod.Config, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    host, port = configmod.parse_listen_addr(cfg.health.listen_addr)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def load_config(args: argparse.Namespace) -> tuple[configmod.Config, list[str]]:
    """The config, or the defaults plus the problems: a broken config is a finding, not a stop."""
    try:
        return configmod.load_or_defaults(args.config), []
    except configmod.ConfigError as e:
        return configmod.from_mapping({}, source=configmod.named_path(args.config), environ={}), list(e.problems)


def data_paths(cfg: configmod.Config, environ: dict[str, str]) -> list[tuple[str, bool, str]]:
    """Where the spool may be: (db path, persistent, reason), the agent's choice first."""
    out = []
    try:
        from belabox_metrics.spool import location as paths
        dp = paths.resolve_data_dir(cfg, environ, probe=paths.probe_existing)  # look, never create
        out.append((dp.db_path, dp.persistent, dp.reason))
    except ImportError:
        pass
    except Exception as e:  # an unusable data dir is a finding; the candidates below still get a look
        out.append((cfg.storage.path, True, f"data dir: {e}"))
    name = os.path.basename(cfg.storage.path) or "metrics.db"
    for candidate in (cfg.storage.path,
                      os.path.join(cfg.storage.fallback_path, name) if cfg.storage.fallback_path else None,
                      os.path.join("/run/belabox-metrics", name)):
        if candidate and all(candidate != p for p, _, _ in out):
            out.append((candidate, not candidate.startswith("/run/"), ""))
    return out


def lock_facts(db_path: str) -> dict[str, Any]:
    path = lock.lock_path_for(db_path)
    held = lock.is_held(path)
    pid = lock.read_pid(path)
    alive = pid is not None and _pid_alive(pid)
    return {"path": path, "exists": os.path.exists(path), "held": held, "pid": pid, "pid_alive": alive}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the metrics user)
        return True
    return True


def not_running_reason(lk: dict[str, Any], url: str, err: str, sysd: dict[str, str] | None) -> str:
    if lk["held"]:
        why = f"PID {lk['pid']} holds {lk['path']} but {url}/health does not answer ({err})"
    elif lk["exists"] and lk["pid"] is not None:
        gone = "no longer exists" if not lk["pid_alive"] else "is alive but holds no lock"
        why = f"stale lock file {lk['path']} (PID {lk['pid']} {gone}); {url} does not answer ({err})"
    elif lk["exists"]:
        why = f"stopped cleanly (lock file {lk['path']} is free and empty); {url} does not answer ({err})"
    else:
        why = f"no lock file at {lk['path']} (never started with this data path); {url}: {err}"
    if sysd:
        why += (f"; systemd: {sysd.get('ActiveState', '?')}, result {sysd.get('Result', '?')}, "
                f"last exit status {sysd.get('ExecMainStatus', '?')}")
    return why


def gather(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = dict(os.environ if environ is None else environ)
    cfg, cfg_problems = load_config(args)
    url = health_url(cfg, getattr(args, "url", None))
    report: dict[str, Any] = {"version": __version__, "generated": rfc3339(time.time()),
                              "config": {"source": cfg.source, "problems": cfg_problems}, "problems": []}
    health_doc, metrics_text, err = None, None, ""
    try:
        status, body = http_get(url + "/health")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "components" not in doc:
            raise OSError(f"/health answered HTTP {status} without the health JSON")
        health_doc = doc
        _, metrics_text = http_get(url + "/metrics")
    except OSError as e:
        err = str(e) or e.__class__.__name__
    candidates = data_paths(cfg, environ)
    svc: dict[str, Any] = {"url": url}
    sysd = systemd_state()
    if sysd:
        svc["systemd"] = sysd
    lk = None
    for path, _, _ in candidates:
        facts = lock_facts(path)
        if facts["held"] or (lk is None and facts["exists"]):
            lk = facts
            if facts["held"]:
                break
    lk = lk or lock_facts(candidates[0][0])
    svc["lock"] = lk
    if health_doc is not None:
        svc.update(state="running", health_status=health_doc.get("status"),
                   uptime_seconds=health_doc.get("uptime_seconds"), pid=lk["pid"] if lk["held"] else None)
        report["components"] = {k: {"status": v.get("status"), "message": v.get("message", ""),
                                    "details": v.get("details", {})}
                                for k, v in (health_doc.get("components") or {}).items()}
    else:
        svc.update(state="not running", reason=not_running_reason(lk, url, err, sysd))
    report["service"] = svc
    samples = parse_exposition(metrics_text).samples if metrics_text else []
    report["device_id"] = _device_id(samples, cfg, args)
    report["spool"] = spool_facts(cfg, candidates, health_doc, samples)
    report["uploads"] = uploads(cfg, health_doc, samples, report["spool"])
    running_cfg = (((health_doc or {}).get("components") or {}).get("config") or {}).get("details", {}).get("path")
    if running_cfg and running_cfg != cfg.source:
        report["problems"].append({"severity": "degraded", "text": (
            f"diagnose read {cfg.source}, the agent runs {running_cfg}: pass --config {running_cfg}")})
    report["clock"] = clock_facts(health_doc)
    report["devices"] = diagnose_devices.device_facts(cfg, args, samples, running=metrics_text is not None)
    report["board"] = diagnose_devices.board_facts(cfg, args)
    report["kernel_events"] = diagnose_kernel.kernel_facts(cfg, diagnose_devices.roots(cfg, args), samples,
                                                           running=metrics_text is not None)
    _local_findings(cfg, report)
    report["status"] = diagnose_facts.verdict(report)
    # Every output (text, --json, the bundle) is made from this one redacted report.
    return redactor(cfg, environ).tree(report)


def _device_id(samples, cfg: configmod.Config, args) -> str:
    for s in samples:
        d = s.label("device_id")
        if d:
            return d
    try:
        from belabox_metrics.platform import device_id as device_id_mod
        return device_id_mod.derive_device_id(cfg, *diagnose_devices.roots(cfg, args))
    except Exception:  # a box whose identity cannot be derived still gets its report
        return cfg.device_id if cfg.device_id != "auto" else "?"


def spool_facts(cfg: configmod.Config, candidates, health_doc, samples) -> dict[str, Any]:
    """From the running agent when it publishes its spool figures (the spool is its exclusive
    file then), else from the file itself, opened read-only."""
    storage = (((health_doc or {}).get("components") or {}).get("storage") or {}).get("details") or {}
    db_path, persistent, reason = candidates[0]
    for path, pers, why in candidates:
        if storage.get("path") == path or (not storage and os.path.exists(path)):
            db_path, persistent, reason = path, pers, why
            break
    if storage.get("path"):
        db_path = storage["path"]
        persistent = storage.get("persistent", persistent)
        reason = storage.get("volatile_reason") or reason
    out: dict[str, Any] = {"path": db_path, "persistent": persistent, "reason": reason}
    live = diagnose_facts.spool_from_metrics(samples) if health_doc is not None else None
    if live is not None:
        out.update(live, source="the running agent")
        return out
    if not os.path.exists(db_path):
        out["error"] = "no spool file (the agent has not run with this data path)"
        return out
    try:
        st = spool_view.read_stats(db_path, cfg.storage)
    except spool_view.SpoolUnreadable as e:
        out["error"] = str(e)
        return out
    out.update(source="the spool file, read-only",
               pending_samples=st.pending_samples, pending_bytes=st.pending_bytes,
               db_size_bytes=st.db_size_bytes, wal_size_bytes=st.wal_size_bytes, dropped=dict(st.dropped),
               parked_samples=getattr(st, "parked_samples", 0),
               oldest_age_seconds=(max(0.0, time.time() - st.oldest_wall_ms / 1000)
                                   if st.oldest_wall_ms else None))
    return out


def uploads(cfg: configmod.Config, health_doc, samples, spool: dict[str, Any]) -> dict[str, Any]:
    # A running agent knows whether it uploads; the file diagnose read may not be the one it runs.
    agent_up = ((health_doc or {}).get("components") or {}).get("uploader") or {}
    agent_uploads = bool(agent_up) and "spool only" not in str(agent_up.get("message") or "")
    if not cfg.remote.url and not agent_uploads:
        return {"url": None}
    url = redact_url(cfg.remote.url) if cfg.remote.url else (
        (agent_up.get("details") or {}).get("url") or "the running agent's remote.url")
    out = {"url": url, **diagnose_facts.upload_facts(health_doc, samples),
           "max_bytes_per_second": cfg.remote.max_bytes_per_second}
    out["drain_estimate_seconds"] = diagnose_facts.drain_estimate(spool.get("pending_bytes"),
                                                                   cfg.remote.max_bytes_per_second)
    return out


def clock_facts(health_doc) -> dict[str, Any]:
    comp = ((health_doc or {}).get("components") or {}).get("time")
    out: dict[str, Any] = {"synchronised": kernel_clock_synchronised()}
    if comp:
        # The agent's verdict wins: it also trusts the clock when the upload server's Date agrees.
        d = comp.get("details") or {}
        out["synchronised"] = comp.get("status") == "ok"
        for key in ("synchronized", "synchronised", "trusted"):
            if isinstance(d.get(key), bool):
                out["synchronised"] = d[key]
                break
        if d.get("skew_ms") is not None:
            out["skew_ms"] = float(d["skew_ms"])
        out["message"] = comp.get("message")
        out["status"] = comp.get("status")
    return out


def _local_findings(cfg: configmod.Config, report: dict[str, Any]) -> None:
    problems = report["problems"]
    if cfg.remote.url:
        from belabox_metrics.platform.token_file import candidate_paths, load_token
        if candidate_paths(cfg) and report["service"]["state"] != "running":
            state = load_token(cfg)
            if state.problem:
                problems.append({"severity": "error", "text": state.problem})
    sp = report.get("spool") or {}
    if sp and sp.get("persistent") is False:
        problems.append({"severity": "degraded",
                         "text": f"spool is on volatile storage: {sp.get('reason') or 'data lost on reboot'}"})
