"""journalctl ended by the signal that stops the agent (Ctrl-C, systemd's SIGTERM to the cgroup)
is not a failure: no warning, no failed state, and it is followed again after the retry delay.
Any other exit still warns (tests/unit/test_kernel_events.py covers those)."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from belabox_metrics.platform.journal import JournalFollower

# Replay prints nothing; follow kills itself with the signal named in $1 (as a Ctrl-C would).
FAKE = """#!/bin/sh
echo "$*" >> "{log}"
case " $* " in *" -f "*) kill -{sig} $$; sleep 5 ;; esac
exit 0
"""


def _follower(tmp_path, sig: str) -> tuple[JournalFollower, object]:
    log = tmp_path / "calls.log"
    script = tmp_path / "journalctl"
    script.write_text(FAKE.format(log=log, sig=sig))
    script.chmod(0o755)
    return JournalFollower(lambda e: None, [str(script)], retry_delay=0.05), log


def _wait(pred, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("sig", ["INT", "TERM", "HUP"])
def test_stop_signal_is_no_failure_and_following_resumes(tmp_path, caplog, sig):
    follower, log = _follower(tmp_path, sig)
    caplog.set_level(logging.INFO, logger="belabox_metrics.platform.journal")
    follower.start()
    try:
        # Two follow attempts: the first was stopped by the signal, the second came after the delay.
        assert _wait(lambda: log.exists() and log.read_text().count(" -f ") >= 2), log.read_text()
        assert follower.state()[0] != "failed"
    finally:
        follower.stop()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, [r.getMessage() for r in warnings]
    assert any(f"stopped by SIG{sig}" in r.getMessage() for r in caplog.records)


def test_other_signals_still_warn(tmp_path, caplog):
    follower, log = _follower(tmp_path, "KILL")
    caplog.set_level(logging.INFO, logger="belabox_metrics.platform.journal")
    follower.start()
    try:
        assert _wait(lambda: follower.state()[0] == "failed")
    finally:
        follower.stop()
    assert f"status -{int(signal.SIGKILL)}" in follower.state()[1]
    assert any(r.levelno == logging.WARNING for r in caplog.records)
