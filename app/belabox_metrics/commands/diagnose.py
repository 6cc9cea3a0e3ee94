"""``metrics-collector diagnose``: one screen that says what state a box is in, and why."""

from __future__ import annotations

import argparse
import json
import os
import sys

from belabox_metrics import exitcodes
from belabox_metrics.diagnose import render as diagnose_report
from belabox_metrics.diagnose.gather import gather


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--bundle", metavar="FILE.tar.gz",
                   help="also write a support bundle (report, redacted config, udev, modems, journal)")
    p.add_argument("--url", metavar="URL", help="the agent's health server (default: from health.listen_addr)")
    p.add_argument("--rate-seconds", type=float, default=1.0, metavar="S",
                   help="interval over which interface throughput is measured (default 1, 0 = skip)")


def use_colour(stream, environ: dict[str, str]) -> bool:
    # https://no-color.org: any non-empty NO_COLOR disables colour.
    if environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)()) and environ.get("TERM") != "dumb"


def terminal_width(stream) -> int:
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80
    return 80 if cols <= 0 else max(40, min(cols, 80))  # a pty nobody sized reports 0


def main(args: argparse.Namespace) -> int:
    report = gather(args)
    if args.bundle:
        from belabox_metrics.diagnose import bundle as diagnose_bundle
        try:
            diagnose_bundle.write_bundle(args.bundle, report, args)
        except OSError as e:
            print(f"diagnose: cannot write bundle {args.bundle}: {e.strerror or e}", file=sys.stderr)
            return exitcodes.DIAGNOSE["error"]
        print(f"bundle written to {args.bundle}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(diagnose_report.render(report, width=terminal_width(sys.stdout),
                                                colour=use_colour(sys.stdout, dict(os.environ))))
    return exitcodes.DIAGNOSE.get(report["status"], exitcodes.DIAGNOSE["error"])
