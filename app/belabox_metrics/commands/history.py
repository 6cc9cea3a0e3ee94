"""``metrics-collector history``: what happened on this box, on one screen (or as JSON / HTML).

Reads the key signals kept for ``storage.history_retention`` plus whatever else the spool (and,
while it runs, the agent's one-hour ring) still holds. The running agent holds the spool
exclusively, so the history is then asked of it over its health server (``/history``);
with the agent stopped the spool file is opened read-only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from belabox_metrics import exitcodes
from belabox_metrics.commands.common import load_config
from belabox_metrics.spool.history import fetch as history_fetch
from belabox_metrics.spool.history import query as history_query
from belabox_metrics.timeline.history import HistoryError
from belabox_metrics.timeline.html import render_html
from belabox_metrics.timeline.screen import render_screen, want_color

# Points per series handed to the renderers: the HTML plots 900 pixel columns (min and max
# per column); the screen has at most a few hundred character columns. A day at 10 s is
# 8640 points per series, at 1 s 86400.
HTML_POINTS = 1800
SCREEN_POINTS = 600


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="WHEN", default="1h",
                   help="start: RFC 3339 time, Unix seconds, or a duration ago (default 1h)")
    p.add_argument("--until", metavar="WHEN", help="end, same forms (default now)")
    p.add_argument("--series", metavar="PATTERN", action="append", default=[],
                   help="also include series whose name matches (shell pattern, e.g. 'node_disk_*'); repeatable")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the history JSON (all points)")
    out.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with every series")


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
    max_points = None if args.json else HTML_POINTS if args.html else SCREEN_POINTS
    try:
        doc = history_fetch.fetch(cfg, spool_path(cfg), since_ms, until_ms, args.series, max_points,
                                  raw=args.json)
        return _output(doc, args)
    except history_fetch.Failed as e:
        print(f"history: {e}", file=sys.stderr)
        return exitcodes.FAILURE
    except HistoryError as e:
        print(str(e), file=sys.stderr)
        return exitcodes.FAILURE


def _output(doc: dict, args: argparse.Namespace) -> int:
    if args.json:  # series by series: a day of every point is tens of MB as Python lists
        if isinstance(doc, bytes):
            sys.stdout.buffer.write(doc.rstrip(b"\n") + b"\n")
        else:
            history_query.write_json(doc, sys.stdout.write)
            sys.stdout.write("\n")
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
            raise history_fetch.Failed(f"{args.html}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.html} ({len(page.encode()) // 1024} kB, {len(doc.get('series') or [])} series, "
              f"{len(doc.get('events') or [])} events)")
        return exitcodes.OK
    size = shutil.get_terminal_size((80, 24))
    text = render_screen(doc, width=size.columns, height=size.lines,
                         color=want_color(sys.stdout.isatty(), os.environ))
    sys.stdout.write(text.rstrip("\n") + "\n")
    return exitcodes.OK
