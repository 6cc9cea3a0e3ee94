"""No module in app/ reads a fixed /proc or /sys path: roots are constructor arguments, so
every collector runs against the board trees. Only config defaults may name them."""

from __future__ import annotations

import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
ALLOWED = {"config.py"}  # HostConfig's defaults
LITERAL = re.compile(r"""["'](/proc/|/sys/)""")


def test_no_proc_or_sys_literals_outside_config_defaults():
    offenders = []
    for path in sorted(APP.rglob("*.py")):
        if path.name in ALLOWED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LITERAL.search(line):
                offenders.append(f"{path.relative_to(APP)}:{n}: {line.strip()}")
    assert not offenders, "fixed kernel paths:\n" + "\n".join(offenders)


def test_the_check_itself_catches_a_literal():
    assert LITERAL.search('open("/sys/class/net")') and LITERAL.search("x = '/proc/stat'")
    assert not LITERAL.search('procfs: str = "/proc"')
