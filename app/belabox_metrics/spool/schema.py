"""The spool's SQLite file: connection settings, schema, migrations and the start-up check."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from belabox_metrics.config import StorageConfig

# "BMC1" in the header: a foreign SQLite file at our path is recognised, never migrated.
APPLICATION_ID = 0x424D4331
# WAL frames and checkpoints write whole pages, so a small page means fewer bytes per commit:
# a 1.6 KB batch every 10 s measured 40 MB/day at 512 bytes, 75 at 1024, 162 at 4096 (design §4).
PAGE_SIZE = 512

SCHEMA_V1 = (
    # id: collection order, and the handle slices carry between take and ack.
    # Small columns first: with 512-byte pages a batch overflows, and only the first ~40 bytes
    # of a row stay in the b-tree leaf; scans and progress updates then never touch the blob.
    """CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        n INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        parked INTEGER NOT NULL DEFAULT 0,
        dict_id INTEGER,
        boot INTEGER NOT NULL,
        clock_synced INTEGER NOT NULL,
        wall_ms INTEGER NOT NULL,
        boottime_ns INTEGER NOT NULL,
        data BLOB NOT NULL)""",
    "CREATE TABLE boots (id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE)",
    "CREATE TABLE dicts (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE parked (batch_id INTEGER PRIMARY KEY, reason TEXT NOT NULL, since_ms INTEGER NOT NULL)",
    "CREATE TABLE dropped (reason TEXT PRIMARY KEY, samples INTEGER NOT NULL)",
    f"PRAGMA application_id = {APPLICATION_ID}",
)

# Every row of a dictionary depends on it, so it is stored twice: damage to one copy (a garbled
# SD card block) must not take days of batches with it.
SCHEMA_V2 = (
    "CREATE TABLE dict_copies (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "INSERT INTO dict_copies SELECT id, data FROM dicts",
)

# Field history (spool/history/persist.py): key-signal points of acknowledged batches, one compressed
# row per ~10 min, and the agent's start/stop marks.
SCHEMA_V3 = (
    "CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, "
    "data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS history_marks (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, "
    "text TEXT NOT NULL)",
)

# (version, statements): append only; each runs in its own transaction at open.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
)
DICT_TABLES = ("dicts", "dict_copies")
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(Exception):
    """A spool problem worth one line in the log and in health."""


class DamagedError(StoreError):
    """The file cannot serve as our spool (corrupt, not a database, foreign, too new): move it aside."""


@dataclass(frozen=True)
class Budget:
    """How ``storage.max_size_mb`` is shared between the database file and its WAL."""

    max_pages: int  # PRAGMA max_page_count: the database file's hard ceiling
    wal_bytes: int  # journal_size_limit: what the WAL may keep between checkpoints
    autocheckpoint_pages: int
    wal_checkpoint_bytes: int  # maintain() checkpoints once the WAL passes this

    @classmethod
    def of(cls, cfg: StorageConfig) -> Budget:
        cap = max(1, cfg.max_size_mb) << 20
        # 1/16 of the cap (4 MiB of 64) for the WAL: checkpoints stay rare (less rewriting)
        # while database + WAL stay under the cap.
        wal = max(64 << 10, cap // 16)
        # Half the WAL share before SQLite's own checkpoint, so one large transaction on top
        # still fits the share.
        frames = max(32, wal // 2 // (PAGE_SIZE + 24))
        return cls(max_pages=(cap - wal) // PAGE_SIZE, wal_bytes=wal, autocheckpoint_pages=frames,
                   wal_checkpoint_bytes=min(cfg.wal_checkpoint_size_mb << 20, wal))


def is_damage(e: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB, as opposed to permissions, locks or a full disk."""
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (11, 26)
    msg = str(e)
    return "malformed" in msg or "not a database" in msg or "corrupt" in msg


BUSY_TIMEOUT_S = 2.0  # how long an opener waits for another process's lock before giving up


def connect(path: str) -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): transactions are explicit, so a read never holds
    # a snapshot open and blocks checkpoints. One connection serves every thread under a lock.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def is_locked(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return (code & 0xFF) == 5 if code is not None else "locked" in str(e)


def configure(conn: sqlite3.Connection, budget: Budget) -> None:
    """Connection settings; raises DamagedError when the file is not usable as a database."""
    # EXCLUSIVE keeps the WAL index in heap memory instead of the mmap'd -shm file, whose dirty
    # pages the kernel writes back to flash after every commit: two thirds of all bytes written
    # (bench_spool_writes). Costs: no other process can open the spool while the agent runs.
    # Must precede the first WAL access.
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    # Only takes effect while the file is still empty; must precede the switch to WAL.
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    # WAL: commits append sequentially and the uploader's reads never block collection.
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise StoreError(f"cannot use WAL mode on this filesystem (got {mode})")
    # NORMAL: no fsync per commit (flash wear); a power cut loses at most the last commits and
    # never corrupts the file. Debian's build defaults to FULL (DEFAULT_WAL_SYNCHRONOUS=2).
    conn.execute("PRAGMA synchronous = NORMAL")
    # Debian builds with SQLITE_SECURE_DELETE: freed pages would be zeroed, i.e. written again,
    # after every acknowledged batch. Nothing here is secret.
    conn.execute("PRAGMA secure_delete = OFF")
    # The WAL file is truncated back to this after a checkpoint, so it counts against the cap.
    conn.execute(f"PRAGMA journal_size_limit = {budget.wal_bytes}")
    # SQLite's own checkpoint keeps the WAL within its share of the cap between our maintain() calls.
    conn.execute(f"PRAGMA wal_autocheckpoint = {budget.autocheckpoint_pages}")
    # max_page_count comes later (RowWriter.enforce_cap), once an oversized file has been shrunk.


def check(conn: sqlite3.Connection) -> None:
    """The start-up integrity check: every page read once. On a full 64 MB spool here it took
    0.53 s from a cold cache, 0.16 s warm (an SD card at 20 MB/s: about 3 s). integrity_check
    costs the same with our single tiny index; quick_check stays cheap if indexes come later."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as e:
        if is_damage(e):
            raise DamagedError(f"not a usable database ({e})") from None
        raise
    if rows != ["ok"]:
        detail = "; ".join(" ".join(r.replace("*** in database main ***", "").split()) for r in rows)
        raise DamagedError(f"integrity check failed: {detail[:300]}")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    # schema_version alone: a first open that died before migration 1 committed.
    if tables - {"schema_version"} and app_id != APPLICATION_ID:
        raise DamagedError(f"not a metrics-collector spool (tables: {', '.join(sorted(tables))[:200]})")
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                 "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
    found = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise DamagedError(f"schema version {found} is newer than this agent's {SCHEMA_VERSION}")
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in statements:
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, int(time.time())))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
