"""``metrics-collector check-config``: validate the config and print the effective settings.

What is printed is redacted (belabox_metrics.redact): URL passwords and query values,
secret-named extra labels and the token go; the token shows as its fingerprint only.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import config_file, load_config
from belabox_metrics.config.dropins import check_config_sources
from belabox_metrics.diagnose.secrets import redactor
from belabox_metrics.platform.token_file import load_token
from belabox_metrics.redact import fingerprint


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")
    p.add_argument("--sources", action="store_true",
                   help="with --json: add a 'sources' map naming the file (or variable) that set each key")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    red = redactor(cfg)
    plain = red.config(configmod.to_plain(cfg))
    state = load_token(cfg)
    sources = check_config_sources(config_file(args), configmod)  # which file set each key
    if args.json:  # the config alone (it loads as a config again), unless --sources asks for more
        print(json.dumps({**plain, "sources": sources} if args.sources else plain, indent=2, sort_keys=True))
    else:
        print(f"# effective configuration from {cfg.source}")
        if state.token:
            print(f"# upload token from {state.source}: {fingerprint(state.token)}")
        print(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False).rstrip())
        print("# set by (other keys have their built-in defaults):")
        print("\n".join(f"#   {key}: {src}" for key, src in sources.items()) or "#   nothing")
    if state.problem:
        print(f"warning: {red.text(state.problem)}", file=sys.stderr)
    return exitcodes.OK
