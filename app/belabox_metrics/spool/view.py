"""Read-only access to the spool for ``diagnose`` and ``queue stats|export``.

The file is opened with SQLite's ``?mode=ro`` URI, so looking never writes, migrates or
checkpoints: it is safe while the agent runs, and safe on a spool an operator is
investigating (a damaged file stays as it was found).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class SpoolUnreadable(Exception):
    """The spool cannot be read; the message is one line naming the file."""


class SpoolLocked(SpoolUnreadable):
    """The agent holds the file with SQLite's exclusive locking mode (store_schema.configure)."""


@contextlib.contextmanager
def open_readonly(db_path: str, storage_cfg) -> Iterator:
    if not os.path.exists(db_path):
        raise SpoolUnreadable(f"{db_path}: no spool file")
    try:
        spool = _open(db_path, storage_cfg)
    except PermissionError:
        raise SpoolUnreadable(f"{db_path}: permission denied (run as root or as the metrics user)") from None
    except Exception as e:  # sqlite3.DatabaseError and friends: a finding for the report, not a traceback
        if "locked" in str(e):
            raise SpoolLocked(f"{db_path}: held exclusively by the running agent") from None
        raise SpoolUnreadable(f"{db_path}: cannot read the spool ({e})") from None
    try:
        yield spool
    finally:
        _close(spool)


def read_stats(db_path: str, storage_cfg):
    with open_readonly(db_path, storage_cfg) as spool:
        try:
            return spool.stats()
        except Exception as e:  # see open_readonly
            if "locked" in str(e):
                raise SpoolLocked(f"{db_path}: held exclusively by the running agent") from None
            raise SpoolUnreadable(f"{db_path}: cannot read the spool ({e})") from None


def _close(spool) -> None:
    spool.close()  # a read-only Spool only closes its connection (no checkpoint)


def _open(db_path: str, storage_cfg):
    from belabox_metrics.spool import store
    return store.Spool.open_readonly(db_path, storage_cfg)
