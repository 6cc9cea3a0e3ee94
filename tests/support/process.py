"""Stopping a child process by PID, the one way the test helpers do it."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait ``timeout``, then SIGKILL; returns once the PID is gone (its port and
    files can be reused at once). Nothing to do for None or a process that already ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(proc, timeout)


def kill(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGKILL if still running, and reap it (a test's cleanup after a failure)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout)
