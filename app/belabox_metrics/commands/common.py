"""What every subcommand shares: the --config and root options, and which config file to read."""

from __future__ import annotations

import argparse

from belabox_metrics import config as configmod


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help=f"config file (default {configmod.DEFAULT_CONFIG_PATH}; "
                        "BELABOX_METRICS_CONFIG overrides the default)")


def add_roots(p: argparse.ArgumentParser) -> None:
    p.add_argument("--procfs", metavar="DIR", help="procfs root (default: host.procfs)")
    p.add_argument("--sysfs", metavar="DIR", help="sysfs root (default: host.sysfs)")
    p.add_argument("--rootfs", metavar="DIR", help="root for board files (default: host.rootfs)")


def config_path(args: argparse.Namespace) -> str:
    return configmod.named_path(getattr(args, "config", None))


def config_file(args: argparse.Namespace) -> str | None:
    return configmod.file_to_read(getattr(args, "config", None))


def load_config(args: argparse.Namespace) -> configmod.Config:
    return configmod.load_or_defaults(getattr(args, "config", None))
