"""Follows the kernel log through journalctl in one reader thread.

Two steps so counters mean "events in this boot" and survive an agent restart unchanged:
``journalctl -k -o json`` replays this boot (``-k`` implies ``-b``) and exits, then
``journalctl -k -f -o json --after-cursor=C`` follows from the last entry replayed, so a
line is never counted twice. When journalctl is missing, exits or cannot read the kernel's
entries, ``state()`` says why and the follower retries with a growing delay.
``-q`` is deliberately not passed: it would hide journalctl's warning that the user is not
in the systemd-journal group, which is the one problem an operator can fix.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

# Signals that end journalctl along with the agent at a normal stop (terminal, systemd, hangup).
_STOP_SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}

# journalctl's words when it shows only the user's own journal (systemd src/journal/journalctl.c).
_PERMISSION_HINTS = ("not seeing messages from other users", "insufficient permissions",
                     "No journal files were opened", "Permission denied")


class JournalFollower:
    def __init__(self, on_entry: Callable[[dict], None], command: Sequence[str] = ("journalctl",),
                 retry_delay: float = 5.0, max_retry_delay: float = 300.0):
        self._on_entry = on_entry
        self._command = list(command)
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._cursor: str | None = None
        self._replayed = False
        self._status = ("starting", "")
        self.replay_done = threading.Event()
        self.settled = threading.Event()  # the first replay attempt ended, well or not
        self.bad_lines = 0

    # --- control -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:  # the same lock _phase takes to publish a new process
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout)

    def state(self) -> tuple[str, str]:
        """(status, message): ``starting``, ``following`` (healthy) or ``failed``."""
        with self._lock:
            return self._status

    def _set(self, status: str, message: str = "") -> None:
        with self._lock:
            changed = self._status[0] != status
            self._status = (status, message)
        if changed and status == "failed":
            log.warning("kernel events: %s", message)

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._retry_delay
        while not self._stop.is_set():
            if self._once():
                delay = self._retry_delay  # it ran for a while: the next failure starts over
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self._max_retry_delay)

    def _once(self) -> bool:
        """Replay (first time only) then follow until journalctl ends. True when the
        follow phase got going, so the caller restarts the backoff."""
        if not self._replayed:
            ok = self._phase(["-k", "-o", "json", "--no-pager"], follow=False)
            self.settled.set()
            # Entries already counted must not be replayed again: with a cursor, go on
            # from it even when the replay ended badly.
            if not ok and self._cursor is None:
                return False
            self._replayed = True
            self.replay_done.set()
            if not ok:
                return False
        after = [f"--after-cursor={self._cursor}"] if self._cursor else ["-n", "0"]
        return self._phase(["-k", "-f", "-o", "json", "--no-pager", *after], follow=True)

    def _phase(self, args: list[str], follow: bool) -> bool:
        if self._stop.is_set():
            return True
        argv = self._command + args
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                        text=True, encoding="utf-8", errors="replace", bufsize=1)
            except FileNotFoundError:
                self._set("failed", f"{self._command[0]} not found: the kernel log cannot be read")
                return False
            except OSError as e:
                self._set("failed", f"cannot run {self._command[0]}: {e.strerror or e}")
                return False
            with self._lock:
                self._proc = proc
                stopping = self._stop.is_set()
            if stopping:  # stop() ran between the check above and Popen
                proc.terminate()
            if follow:
                self._set("following")
            lines = 0
            assert proc.stdout is not None
            for line in proc.stdout:
                lines += 1
                self._line(line)
            code = proc.wait()
            with self._lock:
                self._proc = None
            err.seek(0)
            stderr = err.read(4096).decode("utf-8", "replace")
        if self._stop.is_set():
            return True
        hint = _permission_problem(stderr)
        if hint:
            self._set("failed", f"the journal hides kernel messages from this user ({hint}); "
                                "the unit needs SupplementaryGroups=systemd-journal")
            return False
        if -code in _STOP_SIGNALS:
            # A Ctrl-C reaches journalctl together with the agent (one process group), and
            # systemd's stop sends SIGTERM to the whole cgroup: journalctl often ends before
            # the agent's own stop() runs. Not a failure: try again after the usual delay,
            # which a stopping agent never reaches.
            log.info("kernel events: %s was stopped by %s; following again shortly",
                     self._command[0], _STOP_SIGNALS[-code])
            self._set("starting")
            return False
        if code != 0:
            # The last line: journalctl's own error, or the exception after a traceback.
            last = stderr.strip().splitlines()[-1].strip()[:200] if stderr.strip() else "no message"
            self._set("failed", f"{self._command[0]} exited with status {code}: {last}")
            return False
        if follow:
            self._set("failed", f"{self._command[0]} -f ended unexpectedly after {lines} lines")
        return True

    def _line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            entry = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return
        if not isinstance(entry, dict):
            self.bad_lines += 1
            return
        cursor = entry.get("__CURSOR")
        if isinstance(cursor, str):
            self._cursor = cursor
        self._on_entry(entry)


def _permission_problem(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if any(h in line for h in _PERMISSION_HINTS):
            return line.strip()[:160]
    return None
