"""A readable copy of a spool whose first page is damaged, for salvage to read from.

SQLite refuses a file whose 100-byte header is garbled ("file is not a database") although
every batch in it may be intact: a stray write over the start of an SD card's block, a tool that
"fixed" the file. Everything the header holds is known to us (page size, WAL mode, schema
format, our application id) except the page count, which the file's length gives. Page 1 is also
the root of SQLite's own schema table; when it is garbled as a whole, a fresh spool's page 1 is
put in its place, but only if the schema then reads back exactly as a fresh spool's does: the
schema's pages and table roots of a spool created at the current schema version are always the
same, while one created by an older version and migrated may differ and is then left unread.

Only a copy is repaired: the quarantined file stays as it was found, as evidence.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import struct
from urllib.parse import quote

from belabox_metrics.spool.schema import PAGE_SIZE, migrate

MAGIC = b"SQLite format 3\0"
HEADER = 100


def fresh_image() -> bytes:
    """The file a new spool starts as (schema only), built in memory: its page 1 and header
    are the template."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        migrate(conn)
        return conn.serialize()
    finally:
        conn.close()


def _schema(path: str) -> list[tuple] | None:
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)  # as opening.py: "?" or "#" in a path
    except sqlite3.Error:
        return None
    try:
        return conn.execute("SELECT type, name, rootpage, sql FROM sqlite_master ORDER BY name").fetchall()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def _header(template: bytes, pages: int, wal: bool) -> bytes:
    h = bytearray(template[:HEADER])
    h[18] = h[19] = 2 if wal else 1  # write/read version: WAL replays the -wal beside the copy
    struct.pack_into(">I", h, 28, pages)  # the page count: whatever the file still has
    struct.pack_into(">II", h, 32, 0, 0)  # no freelist: its trunk page is unknown, and unread
    # The change counter and "version valid for" must agree, or SQLite ignores the page count.
    struct.pack_into(">I", h, 92, struct.unpack_from(">I", h, 24)[0])
    return bytes(h)


def needs_repair(path: str) -> bool:
    """True when SQLite cannot read the schema, or the header is not ours."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER)
    except OSError:
        return False
    if len(head) < HEADER or os.path.getsize(path) < PAGE_SIZE:
        return False  # nothing to repair: an empty or tiny file held no batch
    ok = head.startswith(MAGIC) and struct.unpack_from(">H", head, 16)[0] == PAGE_SIZE
    return not ok or _schema(path) is None


def repaired_copy(path: str, target: str) -> str | None:
    """Write ``target``: ``path`` with its header (and, if need be, page 1) rebuilt. Returns
    what was done, or None when no repair makes the schema readable (``target`` is removed)."""
    template = fresh_image()
    pages = os.path.getsize(path) // PAGE_SIZE
    wal = os.path.exists(path + "-wal")
    try:
        shutil.copyfile(path, target)
        if wal:
            shutil.copyfile(path + "-wal", target + "-wal")
    except OSError:
        remove(target)
        return None
    header = _header(template, pages, wal)
    with open(target, "r+b") as fh:
        fh.write(header)
    if _schema(target) is not None:
        return "rebuilt its header"
    with open(target, "r+b") as fh:
        fh.write(header + template[HEADER:PAGE_SIZE])
    fresh = os.path.join(os.path.dirname(target), os.path.basename(target) + ".fresh")
    try:
        with open(fresh, "wb") as fh:
            fh.write(template)
        if _schema(target) == _schema(fresh):
            return "rebuilt its first page"
    finally:
        remove(fresh)
    remove(target)
    return None


def remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
