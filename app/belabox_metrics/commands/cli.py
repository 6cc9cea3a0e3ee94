"""Command line: ``metrics-collector <command>``: parsing and dispatch only.

Each subcommand lives in its own module here with ``setup(parser)`` and ``main(args)``; only the
named command's module is imported, so `run` never loads diagnose's or queue's imports (about
1 MB resident for the agent's life). Exit codes come from ``belabox_metrics.exitcodes``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

from belabox_metrics import __version__, childproc, exitcodes

if TYPE_CHECKING:
    import argparse

# The rest of the project is imported inside main(), after `run`'s config child has been started:
# these imports (config, yaml: 60 ms) then happen while the child starts and imports jsonschema.

# name -> (module under belabox_metrics.commands, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the agent in the foreground"),
    "check-config": ("check_config", "validate the config and print the effective settings"),
    "collect": ("collect", "run one collection cycle and print it (nothing stored)"),
    "devices": ("devices", "list the disks, network interfaces and modems discovery sees, and why"),
    "diagnose": ("diagnose", "show the agent's state, spool, uploads, clock and devices on one screen"),
    "queue": ("queue", "inspect, export, drain or compact the local spool"),
    "provision-import": ("provision", "import the boot partition's belabox-metrics.yaml (token and settings); "
                                      "run at every boot"),
    "history": ("history", "what happened: the key signals and events of the last hours on one screen"),
}


def command_module(name: str):
    return importlib.import_module(f"belabox_metrics.commands.{COMMANDS[name][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the options of ``command`` (the one the command line names) are set up from
    its module, or of every command when ``command`` is None."""
    import argparse

    from belabox_metrics.commands.common import add_config

    parser = argparse.ArgumentParser(prog="metrics-collector", description="BELABOX on-device metrics agent")
    parser.add_argument("--version", action="version", version=f"metrics-collector {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config(p)
        if command is None or command == name:
            command_module(name).setup(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        childproc.prestart(childproc.CONFIG_VALIDATOR)
    from belabox_metrics import config as configmod
    from belabox_metrics.platform.device_id import DeviceIdError

    # Only the named command's module is imported ("" sets none up: top-level --help needs none).
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return exitcodes.USAGE
    try:
        return int(command_module(args.command).main(args) or 0)
    except (configmod.ConfigError, DeviceIdError) as e:
        # Every command reports config problems the same way: one line each, exit 78.
        for line in e.problems:
            print(line, file=sys.stderr)
        return exitcodes.CONFIG
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED
    except BrokenPipeError:
        # `metrics-collector collect | head` is normal field use, not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return exitcodes.OK
