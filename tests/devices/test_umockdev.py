"""Runs the umockdev cases (tests/devices/umockdev_cases) in a child pytest under
`umockdev-wrapper`, which they need for LD_PRELOAD; a failing case fails here with its output."""

from __future__ import annotations

import pytest

from tests.devices.conftest import run_under_umockdev


@pytest.mark.parametrize("case", ["case_discovery.py", "case_cli.py", "case_modems.py"])
def test_umockdev_case(case):
    result = run_under_umockdev(case)
    assert result.returncode == 0, f"{case} failed under umockdev:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
