"""Fixtures for tests/fleet: one real fleet stack per module (VictoriaMetrics, vmauth)."""

from __future__ import annotations

import pytest

from tests.fleet.stack import Stack
from tests.support.vm import VMError


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fleet"))
    try:
        s.start()
    except VMError as e:
        s.stop()
        pytest.fail(str(e), pytrace=False)
    try:
        yield s
    finally:
        s.stop()
