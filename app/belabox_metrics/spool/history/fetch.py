"""Getting the history document wherever it is: from the running agent (which holds the spool
exclusively) over its health server's ``/history``, else from the spool file opened read-only.
Used by ``metrics-collector history`` and by ``diagnose --bundle`` (timeline.html).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import socket
import sqlite3
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from belabox_metrics import config as configmod
from belabox_metrics.platform import lock
from belabox_metrics.spool.history import query as history_query

AGENT_TIMEOUT = 60.0
BUNDLE_HOURS = 24
BUNDLE_POINTS = 1800


class Failed(Exception):
    """The history cannot be had; the message is one line."""


def fetch(cfg: configmod.Config, db: str, since_ms: int, until_ms: int, patterns=(),
          max_points: int | None = None, raw: bool = False) -> dict | bytes:
    """The history document: from the running agent, else from the spool file read-only. With
    ``raw`` the agent's answer comes back as the JSON bytes it sent (nothing parsed: --json)."""
    if lock.is_held(lock.lock_path_for(db)):
        return _from_agent(cfg, since_ms, until_ms, patterns, max_points, raw)
    if not os.path.exists(db):
        raise Failed(f"{db}: no spool file")
    try:
        ro = _ReadOnly(db)
    except sqlite3.Error as e:
        raise Failed(f"{db}: cannot read the spool ({e})") from None
    try:
        return history_query.from_spool(ro, since_ms, until_ms, patterns, max_points=max_points,
                                        device_id=cfg.device_id or "", host=socket.gethostname())
    except history_query.HistoryUnavailable as e:
        if "locked" in str(e):  # the agent started in between
            return _from_agent(cfg, since_ms, until_ms, patterns, max_points, raw)
        if "unable to open" in str(e) and not os.access(db, os.R_OK):
            raise Failed(f"{db}: permission denied (run as root or as the metrics user)") from None
        raise Failed(f"{db}: {e}") from None
    finally:
        ro.conn.close()


class _ReadOnly:
    """Just the connection (SQLite's mode=ro: never writes, migrates or checkpoints). Not
    Spool.open_readonly: its running totals scan every row, 1-2 s on a full 64 MB spool."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=2.0,
                                    isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def history_db(self):
        yield self.conn


def _from_agent(cfg: configmod.Config, since_ms: int, until_ms: int, patterns, max_points,
                raw: bool = False) -> dict | bytes:
    if not cfg.health.enabled:
        raise Failed("the agent is running with health.enabled: false, so its history cannot be asked "
                      "for; stop it (systemctl stop metrics-collector) to read the spool directly")
    host, port = configmod.parse_listen_addr(cfg.health.listen_addr)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    query = [("since", since_ms), ("until", until_ms), *[("series", p) for p in patterns]]
    if max_points:
        query.append(("max_points", max_points))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/history?{urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=AGENT_TIMEOUT) as r:
            body = r.read()
            return body if raw else json.loads(body)
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error") or e.reason
        except (ValueError, AttributeError):
            why = e.reason
        if e.code == 404:
            why = "this agent version has no /history; restart it after the upgrade"
        raise Failed(f"the running agent answered {e.code}: {why}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise Failed(f"the agent holds the spool but its health server at {host}:{port} does not answer "
                      f"({reason})") from None


def bundle_page(cfg: configmod.Config, db: str | None, now_s: float) -> str:
    """timeline.html for ``diagnose --bundle``: the last day, or a page saying why there is none."""
    from belabox_metrics.timeline.history import HistoryError
    from belabox_metrics.timeline.html import render_html
    until = int(now_s * 1000)
    try:
        if not db:
            raise Failed("no spool path known")
        return render_html(fetch(cfg, db, until - BUNDLE_HOURS * 3600_000, until, max_points=BUNDLE_POINTS))
    except (Failed, HistoryError) as e:
        return (f"<!DOCTYPE html><meta charset=utf-8><title>timeline</title>"
                f"<p>No history in this bundle: {html.escape(str(e))}</p>\n")
