"""``metrics-collector history``: what happened on this box, on one screen (or as JSON / HTML).

Reads the key signals kept for ``storage.history_retention`` plus whatever else the spool (and,
while it runs, the agent's one-hour ring) still holds. The running agent holds the spool
exclusively, so the history is then asked of it over its health server (``/history``);
with the agent stopped the spool file is opened read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import load_config
from belabox_metrics.platform import lock
from belabox_metrics.spool import history_query
from belabox_metrics.spool import view as spool_view
from belabox_metrics.timeline import render_html, render_screen
from belabox_metrics.timeline.history import HistoryError
from belabox_metrics.timeline.screen import want_color

# Points per series handed to the renderers: the HTML plots 900 pixel columns (min and max
# per column); a day at 1 s would otherwise be 86k points per series.
RENDER_POINTS = 1800
AGENT_TIMEOUT = 60.0


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="WHEN", default="1h",
                   help="start: RFC 3339 time, Unix seconds, or a duration ago (default 1h)")
    p.add_argument("--until", metavar="WHEN", help="end, same forms (default now)")
    p.add_argument("--series", metavar="PATTERN", action="append", default=[],
                   help="also include series whose name matches (shell pattern, e.g. 'node_disk_*'); repeatable")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the history JSON (all points)")
    out.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with every series")


class _Failed(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = exitcodes.FAILURE):
        super().__init__(message)
        self.code = code


def main(args: argparse.Namespace) -> int:
    from belabox_metrics.commands.queue import parse_when, spool_path
    cfg = load_config(args)  # a ConfigError becomes exit 78 in cli.main
    now = time.time()
    try:
        since_ms = parse_when(args.since, now)
        until_ms = parse_when(args.until, now) if args.until else int(now * 1000)
        if until_ms <= since_ms:
            raise ValueError("--until must be after --since")
        if until_ms - since_ms > 8 * 86400_000:
            raise ValueError("at most 8 days at once")
    except ValueError as e:
        print(f"history: {e}", file=sys.stderr)
        return exitcodes.USAGE
    max_points = None if args.json else RENDER_POINTS
    try:
        doc = fetch(cfg, spool_path(cfg), since_ms, until_ms, args.series, max_points)
        return _output(doc, args)
    except _Failed as e:
        print(f"history: {e}", file=sys.stderr)
        return e.code
    except HistoryError as e:
        print(str(e), file=sys.stderr)
        return exitcodes.FAILURE


def fetch(cfg: configmod.Config, db: str, since_ms: int, until_ms: int, patterns=(),
          max_points: int | None = None) -> dict:
    """The history document: from the running agent, else from the spool file read-only."""
    if lock.is_held(lock.lock_path_for(db)):
        return _from_agent(cfg, since_ms, until_ms, patterns, max_points)
    try:
        with spool_view.open_readonly(db, cfg.storage) as spool:
            return history_query.from_spool(spool, since_ms, until_ms, patterns, max_points=max_points,
                                            device_id=cfg.device_id or "", host=socket.gethostname())
    except spool_view.SpoolLocked:  # the agent started in between
        return _from_agent(cfg, since_ms, until_ms, patterns, max_points)
    except (spool_view.SpoolUnreadable, history_query.HistoryUnavailable) as e:
        raise _Failed(str(e)) from None


def _from_agent(cfg: configmod.Config, since_ms: int, until_ms: int, patterns, max_points) -> dict:
    if not cfg.health.enabled:
        raise _Failed("the agent is running with health.enabled: false, so its history cannot be asked "
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
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error") or e.reason
        except (ValueError, AttributeError):
            why = e.reason
        if e.code == 404:
            why = "this agent version has no /history; restart it after the upgrade"
        raise _Failed(f"the running agent answered {e.code}: {why}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise _Failed(f"the agent holds the spool but its health server at {host}:{port} does not answer "
                      f"({reason})") from None


def _output(doc: dict, args: argparse.Namespace) -> int:
    if args.json:
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
        return exitcodes.OK
    if args.html:
        page = render_html(doc)
        tmp = f"{args.html}.tmp{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(page)
            os.replace(tmp, args.html)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise _Failed(f"{args.html}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.html} ({len(page.encode()) // 1024} kB, {len(doc.get('series') or [])} series, "
              f"{len(doc.get('events') or [])} events)")
        return exitcodes.OK
    size = shutil.get_terminal_size((80, 24))
    text = render_screen(doc, width=size.columns, height=size.lines,
                         color=want_color(sys.stdout.isatty(), os.environ))
    sys.stdout.write(text.rstrip("\n") + "\n")
    return exitcodes.OK
