"""``metrics-collector check-config``: validate the config and print the effective settings."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import load_config
from belabox_metrics.platform.token_file import describe_token


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    plain = configmod.to_plain(cfg)
    if args.json:
        print(json.dumps(plain, indent=2, sort_keys=True))
    else:
        print(f"# effective configuration from {cfg.source}")
        print(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False).rstrip())
    warning = describe_token(cfg)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return exitcodes.OK
