"""Single-instance lock: an exclusive flock on ``<db>.lock`` holding the PID.

The file is never deleted: removing it would let two processes lock two different
inodes during overlapping start/stop cycles (the deployment guide's "Process Locking").
A stale file from a dead process is harmless because flock dies with its holder; a clean stop
empties it, so a PID in a free file means the holder died without stopping.
"""

from __future__ import annotations

import errno
import fcntl
import os


class AlreadyRunning(Exception):
    def __init__(self, path: str, pid: int | None):
        self.path, self.pid = path, pid
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"already running: {who} holds {path}")


def lock_path_for(db_path: str) -> str:
    return db_path + ".lock"


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
        return int(text) if text.isdigit() else None
    except (OSError, ValueError):
        return None


def is_held(path: str) -> bool:
    """True when some live process holds the lock (probes with a shared non-blocking lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


class InstanceLock:
    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunning(self.path, read_pid(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """A clean stop empties the file (keeping its inode, see above): a PID left in it then
        means the holder died without stopping, which is what diagnose calls a stale lock."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass  # a read-only remount since start: the PID stays, the lock still goes
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
