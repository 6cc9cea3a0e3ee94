"""`belabox-fleet` command line: arguments, one-line errors, exit codes.

Exit codes: 0 ok, 1 runtime (vmauth or VictoriaMetrics unreachable, unknown device, token
in use), 2 usage (bad arguments or values), 78 bad fleet directory or settings. Errors are
one line on stderr, never a traceback, and never show a token (belabox_metrics.redact).

Imports: stdlib, and the fleet modules (which use yaml and requests).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from belabox_metrics.fleet import lifecycle, overview
from belabox_metrics.fleet.registry import (
    EXIT_USAGE,
    FleetDir,
    FleetError,
    Settings,
    check_device_id,
    check_url,
    parse_duration,
    parse_labels,
)
from belabox_metrics.fleet.vmauth import write
from belabox_metrics.redact import redact_text

PROG = "belabox-fleet"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage and two lines)
        where = self.prog.removeprefix(PROG).strip()
        raise FleetError(f"{where + ': ' if where else ''}{message} (see --help)", EXIT_USAGE)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Server side of a BELABOX fleet: device registry and tokens for vmauth "
                                       "in front of VictoriaMetrics, and the fleet overview.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("init", help="create a fleet directory and its vmauth config",
                       description="Create DIR (0700) with fleet.yaml, an empty registry, vmauth.yml and vmauth.env.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--vm", required=True, metavar="URL",
                   help="VictoriaMetrics write prefix: http://127.0.0.1:8428 (single node) or "
                        "http://vminsert:8480/insert/0/prometheus (cluster tenant 0)")
    c.add_argument("--public-url", required=True, metavar="URL",
                   help="what boxes upload to (vmauth behind TLS), e.g. https://metrics.example.com")
    c.add_argument("--query-url", metavar="URL",
                   help="VictoriaMetrics query prefix for list (default: --vm; a cluster: "
                        "http://vmselect:8481/select/0/prometheus)")
    c.add_argument("--listen", default="127.0.0.1:8427", metavar="HOST:PORT", help="vmauth's listen address")
    c.add_argument("--grace", type=_duration, default=86400.0, metavar="DURATION",
                   help="how long a rotated-out token stays valid at most (default 24h)")
    c.add_argument("--dark-after", type=_duration, default=300.0, metavar="DURATION",
                   help="list shows a box as dark after this long without a sample (default 5m)")

    c = sub.add_parser("enroll", help="add a device, make its token, write its seed",
                       description="Add device ID with a new token and write the seed for scripts/flash --seed.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("id", metavar="ID")
    c.add_argument("--label", action="append", default=[], metavar="K=V", help="extra label for the box's samples")
    c.add_argument("--seed-out", required=True, metavar="FILE", help="where to write belabox-metrics.yaml (0600)")
    c.add_argument("--vm", metavar="URL", help="route this box to another VictoriaMetrics write prefix (tenant)")

    c = sub.add_parser("register", help="add a device that generated its own token at first boot",
                       description="Add device ID with the token the box generated (copied into FILE).")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("id", metavar="ID")
    c.add_argument("--token-file", required=True, metavar="FILE")
    c.add_argument("--label", action="append", default=[], metavar="K=V", help="recorded in the registry")
    c.add_argument("--vm", metavar="URL", help="route this box to another VictoriaMetrics write prefix (tenant)")

    c = sub.add_parser("revoke", help="refuse a device's tokens from now on",
                       description="Mark device ID revoked; vmauth refuses its tokens within 5 s.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("id", metavar="ID")

    c = sub.add_parser("rotate", help="give a device a new token; the old one lasts until the box uses the new",
                       description="New token for device ID and a new seed; the old token stays valid until "
                                   "vmauth sees the new one used, or the grace period ends.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("id", metavar="ID")
    c.add_argument("--seed-out", required=True, metavar="FILE")
    c.add_argument("--grace", type=_duration, metavar="DURATION", help="override the fleet's grace period")

    c = sub.add_parser("list", help="one line per device: dark boxes first",
                       description="Per device: status, dark since, last sample, uploader state, backlog, "
                                   "modems up, SoC temperature, agent version (from VictoriaMetrics).")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--json", action="store_true", help="machine-readable output")

    c = sub.add_parser("sync", help="retire rotated-out tokens and push the config to vmauth (for a timer)",
                       description="Regenerate vmauth.yml, retire old tokens that are due, reload vmauth.")
    c.add_argument("dir", metavar="DIR")
    return p


def _report(change: lifecycle.Change) -> int:
    print(change.summary)
    for name in change.retired or ():
        print(f"retired old token {name}")
    if change.applied is not None:
        stream = sys.stdout if change.applied.reached else sys.stderr
        print(change.applied.message, file=stream)
    return 0


def cmd_init(a) -> int:
    host, sep, port = a.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise FleetError(f"bad --listen {a.listen!r}: want HOST:PORT", EXIT_USAGE)
    vm = check_url(a.vm, "--vm")
    settings = Settings(vm_url=vm, query_url=check_url(a.query_url, "--query-url") if a.query_url else vm,
                        public_url=check_url(a.public_url, "--public-url"), vmauth_listen=a.listen,
                        grace_s=a.grace, dark_after_s=a.dark_after)
    fleet = FleetDir.create(a.dir, settings)
    write(fleet)
    print(f"created fleet directory {fleet.path}; start vmauth with EnvironmentFile={fleet.file('vmauth.env')} "
          "(see fleet/belabox-fleet-vmauth.service)")
    return 0


def cmd_list(a) -> int:
    fleet = FleetDir(a.dir).load()
    assert fleet.settings is not None
    retired = lifecycle.settle_if_due(a.dir)
    if retired:
        fleet = FleetDir(a.dir).load()
    now = time.time()
    found = overview.collect(fleet.devices, overview.Querier(fleet.settings.query_url).query, now)
    rows = overview.build_rows(fleet.devices, found, now, fleet.settings.dark_after_s)
    if a.json:
        print(json.dumps(overview.as_json(rows, now), indent=1, sort_keys=True))
    else:
        print(overview.render_table(rows, now))
    return 0


def run(a) -> int:
    if a.command == "init":
        return cmd_init(a)
    if a.command == "list":
        return cmd_list(a)
    if a.command == "sync":
        return _report(lifecycle.sync(a.dir))
    check_device_id(a.id)
    vm = check_url(a.vm, "--vm") if getattr(a, "vm", None) else None
    if a.command == "enroll":
        return _report(lifecycle.enroll(a.dir, a.id, parse_labels(a.label), a.seed_out, vm))
    if a.command == "register":
        return _report(lifecycle.register(a.dir, a.id, parse_labels(a.label), a.token_file, vm))
    if a.command == "revoke":
        return _report(lifecycle.revoke(a.dir, a.id))
    if a.command == "rotate":
        return _report(lifecycle.rotate(a.dir, a.id, a.seed_out, a.grace))
    raise FleetError(f"unknown command {a.command}", EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        return run(args)
    except FleetError as e:
        print(f"{PROG}: {redact_text(str(e))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


__all__ = ["build_parser", "main"]
