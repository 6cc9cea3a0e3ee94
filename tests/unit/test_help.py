"""Every command answers --help with its usage and exit 0, and does nothing else.

The scripts are discovered by listing (every executable file directly under scripts/ and
image/), the CLI's subcommands by walking its argparse parser, so a new script or command is
covered without editing this file. "Nothing else" is checked on the checkout itself: no file
appears, disappears or changes size (capture-hardware once took --help for a board name and
wrote hardware/--help/).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from belabox_metrics.commands import cli
from tests.support.cli import cli_env

REPO = Path(__file__).resolve().parents[2]
# Caches and state the test run itself changes; everything else is the checkout.
IGNORED = {".git", ".venv", "var", "__pycache__", ".pytest_cache", ".ruff_cache", "dist", "build"}


def executables() -> list[str]:
    found = []
    for folder in ("scripts", "image"):
        for p in sorted((REPO / folder).iterdir()):
            if p.is_file() and os.access(p, os.X_OK):
                found.append(f"{folder}/{p.name}")
    return found


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser, e.g. ("queue",), ("queue", "stats")."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out.extend(subcommands(sub, (*prefix, name)))
    return out


def snapshot() -> dict[str, int]:
    files = {}
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in IGNORED and not d.endswith(".egg-info")]
        for n in names:
            p = os.path.join(root, n)
            try:
                files[os.path.relpath(p, REPO)] = os.lstat(p).st_size
            except OSError:
                pass
    return files


def check_help(argv: list[str], env: dict[str, str] | None = None) -> None:
    before = snapshot()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    after = snapshot()
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{argv} exited {res.returncode}:\n{out[-2000:]}"
    assert any(line.lower().startswith("usage") for line in out.splitlines()), f"no usage line:\n{out[-2000:]}"
    changed = sorted(set(before) ^ set(after)) + sorted(k for k in before.keys() & after.keys()
                                                         if before[k] != after[k])
    assert not changed, f"{argv} changed the checkout: {changed[:20]}"


SCRIPTS = executables()
COMMANDS = subcommands(cli.build_parser())


def test_discovery_finds_the_known_ones():
    assert {"scripts/test", "scripts/run-local", "scripts/capture-hardware", "image/build"} <= set(SCRIPTS)
    assert {("run",), ("check-config",), ("collect",), ("queue",), ("queue", "stats")} <= set(COMMANDS)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_script_help(script, flag):
    # PATH without the venv: a script must not need anything beyond what it sets up itself to print usage.
    check_help([str(REPO / script), flag])


def test_reconstruct_hardware_help():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    check_help([sys.executable, "-m", "scripts.reconstruct_hardware", "--help"], env=env)


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "top")
def test_cli_help(command):
    check_help([sys.executable, "-m", "belabox_metrics", *command, "--help"], env=cli_env())
