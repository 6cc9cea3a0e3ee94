"""Run ``metrics-collector`` with a wall clock the test controls, for the time end-to-end tests.

The wall clock becomes ``CLOCK_BOOTTIME + base``, with ``base`` read from the file named by
``BBM_TEST_WALL_FILE`` (re-read every 50 ms, so a test can step the clock mid-run): base 0 is
a board that booted in 1970, ``true offset - 3 days`` one that booted on a stale saved clock.
Everything else is real: the agent, its threads, the spool, the network, VictoriaMetrics.
The kernel is reported unsynchronised, as on the boards and CI machines this is about.

    python -m tests.support.fakewall run --config FILE
"""

from __future__ import annotations

import os
import sys
import time

_real_monotonic = time.monotonic
_boottime = time.CLOCK_BOOTTIME
_path = os.environ["BBM_TEST_WALL_FILE"]
_cache = [-1.0, 0.0]


def _base() -> float:
    now = _real_monotonic()
    if now - _cache[0] > 0.05:
        try:
            with open(_path, encoding="ascii") as fh:
                _cache[1] = float(fh.read().strip())
        except (OSError, ValueError):
            pass  # mid-write: keep the last value
        _cache[0] = now
    return _cache[1]


def fake_time() -> float:
    return time.clock_gettime(_boottime) + _base()


def fake_time_ns() -> int:
    return int(fake_time() * 1e9)


# Before anything imports the package, so every `time.time` default argument is the fake.
time.time = fake_time
time.time_ns = fake_time_ns

from belabox_metrics.commands import cli  # noqa: E402
from belabox_metrics.platform import clock as timekeeping  # noqa: E402


def _unsynced() -> bool:
    return False


timekeeping.kernel_clock_synced = _unsynced
timekeeping.Timekeeper.__init__.__kwdefaults__["kernel_synced"] = _unsynced

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
