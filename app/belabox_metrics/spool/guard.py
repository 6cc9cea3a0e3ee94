"""Watching the spool's file and filesystem while the agent runs, and putting a lost file back.

Faults found by probing (issue 13): a full disk, a filesystem the kernel turned read-only, the
file deleted or replaced under the running agent, and damage. What this module guarantees:

- A write fault is *named* (disk_full, read_only, io_error, ...) and stays the storage state
  until a commit succeeds again: a cycle in which nothing was due to commit proves nothing.
- Samples that are lost are counted under the fault's name (the buffer that holds batches while
  the disk refuses them drops its oldest beyond its bound).
- A spool whose path no longer leads to the open file (deleted, or a new filesystem mounted
  over the directory) is rebuilt at once: the open connection still reads the old inode, so
  SQLite's backup copies every pending batch into a new file at the path; only when that copy
  fails is the old content counted as dropped (``spool_deleted``).
- An empty file at start is said to be empty (log + health) before it is initialised.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import sqlite3
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOTICE_TTL_S = 600.0  # how long a repaired fault keeps storage degraded, so it is seen
RETRY_REBUILD_S = 5.0  # a rebuild that failed (the new place refuses too) is retried this often


@dataclass(frozen=True)
class Fault:
    reason: str  # the drop reason for samples it costs: disk_full, read_only, io_error, corrupt ...
    message: str
    since: float  # wall time of the first failure


def classify(exc: BaseException, directory: str) -> tuple[str, str]:
    """(reason, one-line message) for a failed write. The filesystem is asked first (statvfs):
    SQLite reports a read-only mount as "disk I/O error" or "readonly database"."""
    detail = str(exc) or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", None)  # the extended code tells I/O errors apart
    if name and name not in ("SQLITE_FULL", "SQLITE_ERROR"):
        detail += f" ({name})"
    try:
        vfs = os.statvfs(directory)
    except OSError as e:
        return "spool_deleted", f"spool directory {directory} is gone ({e.strerror}): {detail}"
    if vfs.f_flag & os.ST_RDONLY or _refuses_writes(directory):
        return "read_only", f"filesystem of {directory} is read-only: {detail}"
    code = getattr(exc, "sqlite_errorcode", None)
    err = getattr(exc, "errno", None)
    if (code is not None and code & 0xFF == 13) or err == errno.ENOSPC or vfs.f_bavail == 0:
        free = vfs.f_bavail * vfs.f_frsize
        return "disk_full", f"disk full ({free} bytes free in {directory}): {detail}"
    if code is not None and code & 0xFF == 8:  # SQLITE_READONLY
        return "read_only", f"spool cannot be written: {detail}"
    if code is not None and code & 0xFF in (11, 26):
        return "corrupt", f"spool damaged while running: {detail}"
    return "io_error", f"cannot write the spool: {detail}"


def _refuses_writes(directory: str) -> bool:
    """ext4 after an error (errors=remount-ro) is read-only while statvfs still says rw: ask by
    creating a file, as the kernel answers EROFS for that at once."""
    probe = os.path.join(directory, f".write-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    except OSError as e:
        return e.errno == errno.EROFS
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return False


def identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Guard:
    """The storage state one Spool reports: a write fault until a commit succeeds, and notices
    of repaired faults that stay visible for NOTICE_TTL_S. Thread-safe enough: plain attribute
    swaps read by the health thread."""

    def __init__(self, path: str, clock=time.monotonic):
        self.path = path
        self._clock = clock
        self.ident = identity(path)
        self.wal_ident = identity(path + "-wal")
        self.fault: Fault | None = None
        self._notice: tuple[str, float] | None = None
        self._next_rebuild = 0.0

    # --- write faults -------------------------------------------------------------------

    def failed(self, exc: BaseException) -> Fault:
        reason, message = classify(exc, os.path.dirname(self.path))
        if self.fault is None or self.fault.reason != reason:
            self.fault = Fault(reason, message, time.time())
            log.error("storage fault (%s): %s", reason, message)
        else:
            self.fault = Fault(reason, message, self.fault.since)
        return self.fault

    def committed(self) -> None:
        if self.fault is not None:
            gone = time.time() - self.fault.since
            log.warning("storage recovered after %.0fs of %s", gone, self.fault.reason)
            self.notice(f"recovered from {self.fault.reason} lasting {gone:.0f}s")
            self.fault = None

    def drop_reason(self) -> str:
        """What a sample lost now is counted as: the fault that keeps it from the disk."""
        return self.fault.reason if self.fault is not None else "buffer_full"

    # --- notices ------------------------------------------------------------------------

    def notice(self, text: str) -> None:
        self._notice = (text, self._clock())

    def current_notice(self) -> str | None:
        if self._notice is None:
            return None
        text, at = self._notice
        if self._clock() - at > NOTICE_TTL_S:
            self._notice = None
            return None
        return text

    # --- the file under the path --------------------------------------------------------

    def moved(self) -> str | None:
        """Why the path no longer leads to the open file, or None when it still does."""
        now = identity(self.path)
        if now is None:
            return "spool file deleted while running"
        if now != self.ident:
            return "spool file replaced while running (new inode or filesystem)"
        # Committed batches live in the WAL until a checkpoint: losing it loses them. SQLite
        # keeps it (exclusive locking mode) until close, so a change is someone else's doing.
        wal = identity(self.path + "-wal")
        if self.wal_ident is None:
            self.wal_ident = wal
        elif wal != self.wal_ident:
            return "spool WAL file deleted or replaced while running"
        return None

    def damaged(self) -> bool:
        """A write failed with SQLITE_CORRUPT: the file is to be moved aside and salvaged."""
        return self.fault is not None and self.fault.reason == "corrupt"

    def rebuild_due(self) -> bool:
        now = self._clock()
        if now < self._next_rebuild:
            return False
        self._next_rebuild = now + RETRY_REBUILD_S
        return True

    def cannot_rebuild(self, why: str, exc: BaseException) -> None:
        self.fault = Fault("spool_deleted", f"{why}; cannot rebuild it yet: {exc}", time.time())
        log.error("spool %s: %s; cannot rebuild it yet: %s", self.path, why, exc)

    def replaced_damaged(self, message: str) -> None:
        """The damaged file is moved aside and a fresh one in use (Upkeep._recover_damage)."""
        self.adopt()
        self.fault = None
        self.notice(message)

    def rebuilt(self, why: str, pending_batches: int) -> None:
        self.adopt()
        if self.fault is not None and self.fault.reason == "spool_deleted":
            self.fault = None
        msg = f"{why}: rebuilt at once with {pending_batches} pending batches"
        log.warning("spool %s: %s", self.path, msg)
        self.notice(msg)

    def lost_at_stop(self, samples: int) -> int:
        log.error("spool %s: the file was deleted and could not be rebuilt: %d pending samples "
                  "are lost", self.path, samples)
        return samples

    def adopt(self) -> None:
        """The path now leads to our (new) file."""
        self.ident = identity(self.path)
        self.wal_ident = identity(self.path + "-wal")
        self._next_rebuild = 0.0


def empty_file(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def copy_out(conn: sqlite3.Connection, path: str) -> str:
    """Copy the database as ``conn`` sees it (its WAL included) to a new file beside ``path``;
    returns that file's name. The old inode stays readable while ``conn`` holds it open."""
    tmp = f"{path}.rebuild-{os.getpid()}"
    discard(tmp)
    dest = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.backup(dest)
    except BaseException:
        dest.close()
        discard(tmp)
        raise
    dest.close()
    return tmp


def copy_to(conn: sqlite3.Connection, target: str) -> None:
    """The rebuild's copy, put in place at ``target``; the old connection is left as it was."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    install(copy_out(conn, target), target)


def install(tmp: str, path: str) -> None:
    """Put a rebuilt file at ``path``. A -wal left at the path belongs to the old file; replayed
    onto the new one it would corrupt it, so it goes first."""
    discard(path + "-wal")
    discard(path + "-shm")
    os.replace(tmp, path)


def retire(conn: sqlite3.Connection, path: str) -> None:
    """Close the old connection for good before anything opens the new file. Its close deletes
    ``<path>-wal`` by name, and a statement still alive in some cursor defers that close
    (sqlite3_close_v2) to whenever the cursor is collected: by then the name would belong to
    the new file's WAL. So collect now, and clear the name again after."""
    conn.close()
    del conn
    gc.collect()
    discard(path + "-wal")
    discard(path + "-shm")


def discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
