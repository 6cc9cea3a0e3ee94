"""Command line: ``metrics-collector <command>``; exit codes are part of the contract.

0 ok, 1 runtime failure, 2 usage, 75 already running, 78 configuration error
(systemd's RestartPreventExitStatus=78: restarting cannot fix a typo).
Each command's work lives in the module that owns it; this file only parses and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from belabox_metrics import __version__
from belabox_metrics import config as configmod

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_RUNNING, EXIT_CONFIG = 0, 1, 2, 75, 78


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help=f"config file (default {configmod.DEFAULT_CONFIG_PATH}; "
                        "BELABOX_METRICS_CONFIG overrides the default)")


def _add_roots(p: argparse.ArgumentParser) -> None:
    p.add_argument("--procfs", metavar="DIR", help="procfs root (default: host.procfs)")
    p.add_argument("--sysfs", metavar="DIR", help="sysfs root (default: host.sysfs)")
    p.add_argument("--rootfs", metavar="DIR", help="root for board files (default: host.rootfs)")


# name -> (module, function, help, parser setup). The module is imported only when the
# command runs, so `check-config` works even where pyudev or D-Bus are missing.
COMMANDS: dict[str, tuple[str, str, str, Callable[[argparse.ArgumentParser], None] | None]] = {}


def command(name: str, module: str, func: str, help: str,
            setup: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    COMMANDS[name] = (module, func, help, setup)


def _setup_run(p: argparse.ArgumentParser) -> None:
    _add_roots(p)


def _setup_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")


def _setup_collect(p: argparse.ArgumentParser) -> None:
    _add_roots(p)
    p.add_argument("--once", action="store_true", help="one cycle, printed, nothing stored (the default)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the Prometheus text format")
    p.add_argument("--collector", action="append", metavar="NAME", help="only these collectors")


command("run", "belabox_metrics.agent", "command_run", "run the agent in the foreground", _setup_run)
command("check-config", "belabox_metrics.cli", "command_check_config",
        "validate the config and print the effective settings", _setup_check)
command("collect", "belabox_metrics.collect_once", "command_collect",
        "run one collection cycle and print it (nothing stored)", _setup_collect)


def _register_optional() -> None:
    """Commands owned by other modules register themselves through ``cli_setup(command)``."""
    for mod in ("belabox_metrics.devices_cmd", "belabox_metrics.diagnose", "belabox_metrics.queue_cmd",
                "belabox_metrics.provision"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.cli_setup(command)


CORE_COMMANDS = ("run", "check-config", "collect")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or, when ``command`` (the one the command line names) is a
    core command, for the core ones only: `run` must not import the other commands' modules
    (diagnose alone brings urllib.request and email, about 1 MB resident for the agent's life)."""
    if command not in CORE_COMMANDS:
        _register_optional()
    parser = argparse.ArgumentParser(prog="metrics-collector",
                                     description="BELABOX on-device metrics agent")
    parser.add_argument("--version", action="version", version=f"metrics-collector {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text, setup) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        if setup:
            setup(p)
    return parser


def config_path(args: argparse.Namespace) -> str:
    return args.config or os.environ.get("BELABOX_METRICS_CONFIG") or configmod.DEFAULT_CONFIG_PATH


def config_file(args: argparse.Namespace) -> str | None:
    """The config file to read; None when none was named and none exists at the default
    path: the built-in defaults apply (a box that never got a config still collects and spools)."""
    path = config_path(args)
    if args.config is None and not os.environ.get("BELABOX_METRICS_CONFIG") and not os.path.exists(path):
        return None
    return path


def load_config(args: argparse.Namespace) -> configmod.Config:
    """The config named by --config, or the built-in defaults (see config_file)."""
    path = config_file(args)
    if path is None:
        return configmod.build(configmod.validated(None), configmod.BUILTIN_SOURCE)  # drop-ins still apply
    return configmod.load(path)


def command_check_config(args: argparse.Namespace) -> int:
    import json

    import yaml

    from belabox_metrics.token import describe_token

    cfg = load_config(args)
    plain = configmod.to_plain(cfg)
    from belabox_metrics.config_dropins import check_config_sources
    sources = check_config_sources(config_file(args), configmod)  # which file set each key
    if args.json:
        print(json.dumps({**plain, "sources": sources}, indent=2, sort_keys=True))
    else:
        print(f"# effective configuration from {cfg.source}")
        print(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False).rstrip())
        print("# set by (other keys have their built-in defaults):")
        print("\n".join(f"#   {key}: {src}" for key, src in sources.items()) or "#   nothing")
    warning = describe_token(cfg)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    module, func, _, _ = COMMANDS[args.command]
    handler = getattr(importlib.import_module(module), func)
    try:
        return int(handler(args) or 0)
    except configmod.ConfigError as e:
        # Every command reports config problems the same way: one line each, exit 78.
        for line in e.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `metrics-collector collect | head` is normal field use, not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return EXIT_OK
