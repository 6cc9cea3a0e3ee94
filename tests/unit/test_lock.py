"""The single-instance lock: PID in the file, a second holder refused, stale files harmless."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from belabox_metrics.platform.lock import AlreadyRunning, InstanceLock, is_held, lock_path_for, read_pid


def test_lock_holds_pid_and_refuses_a_second_holder(tmp_path):
    path = lock_path_for(str(tmp_path / "metrics.db"))
    assert path.endswith("metrics.db.lock")
    with InstanceLock(path):
        assert read_pid(path) == os.getpid()
        assert is_held(path)
        code = ("import sys; from belabox_metrics.platform.lock import InstanceLock, AlreadyRunning\n"
                f"try:\n InstanceLock({path!r}).acquire()\nexcept AlreadyRunning as e:\n print(e.pid); sys.exit(75)\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert res.returncode == 75 and res.stdout.strip() == str(os.getpid())
    assert not is_held(path)
    assert os.path.exists(path), "the lock file is kept so its inode stays stable"


def test_stale_lock_file_never_blocks(tmp_path):
    path = str(tmp_path / "metrics.db.lock")
    with open(path, "w") as fh:
        fh.write("999999\n")  # a PID from a process that is gone
    lock = InstanceLock(path)
    lock.acquire()
    assert read_pid(path) == os.getpid()
    inode = os.stat(path).st_ino
    lock.release()
    lock.acquire()
    assert os.stat(path).st_ino == inode
    lock.release()


def test_same_process_second_lock_is_refused(tmp_path):
    path = str(tmp_path / "x.lock")
    a = InstanceLock(path)
    a.acquire()
    with pytest.raises(AlreadyRunning):
        InstanceLock(path).acquire()
    a.release()


def test_a_clean_stop_leaves_no_stale_lock_report(tmp_path):
    """A released lock leaves an empty file; only a holder that died keeps its PID there."""
    from belabox_metrics.diagnose.gather import lock_facts, not_running_reason

    db = str(tmp_path / "metrics.db")
    lock = InstanceLock(lock_path_for(db))
    lock.acquire()
    lock.release()
    assert read_pid(lock_path_for(db)) is None
    reason = not_running_reason(lock_facts(db), "http://127.0.0.1:9", "connection refused", None)
    assert "stopped cleanly" in reason and "stale" not in reason
    with open(lock_path_for(db), "w") as fh:
        fh.write("999999\n")  # what a kill -9 leaves
    assert "stale lock file" in not_running_reason(lock_facts(db), "http://127.0.0.1:9", "refused", None)
