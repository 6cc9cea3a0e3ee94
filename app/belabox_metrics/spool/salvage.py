"""Moving a damaged spool aside and reading back whatever batches it still holds."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

from belabox_metrics.samples import Batch
from belabox_metrics.spool.codec import CodecError, Decoder, Dictionary
from belabox_metrics.spool.reader import read_dictionary

log = logging.getLogger(__name__)

KEEP_QUARANTINED = 2  # a failing SD card would otherwise fill the disk with 64 MB copies
MAX_PROBES = 200_000  # id look-ups across an unreadable stretch of the table (about 2 s)
_MAX_MISSES = 2_000  # past the one readable end, ids run out: stop probing after this many misses


def quarantine(path: str, now: datetime | None = None) -> str:
    """Rename ``path`` (with its -wal and -shm) to ``<path>.corrupt-<UTC time>``; returns the new name.
    The WAL moves along: it may hold the newest committed batches."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    target, n = f"{path}.corrupt-{stamp}", 1
    while os.path.exists(target):
        target, n = f"{path}.corrupt-{stamp}-{n}", n + 1
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    _prune(path, keep=target)
    return target


def _prune(path: str, keep: str) -> None:
    copies = sorted(p for p in glob.glob(glob.escape(path) + ".corrupt-*")
                    if not p.endswith(("-wal", "-shm")))
    for old in [p for p in copies if p != keep][: max(0, len(copies) - KEEP_QUARANTINED)]:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old + suffix)
        log.info("removed old quarantined spool %s", old)


@dataclass
class Salvage:
    """What came out of a damaged file."""

    batches: int = 0
    samples: int = 0
    lost_batches: int = 0  # rows found but unreadable
    lost_samples: int = 0  # their sample counts, when those could still be read
    dropped: dict[str, int] = field(default_factory=dict)  # the old file's drop counters
    error: str = ""  # why nothing at all could be read, if so
    repair: str = ""  # what spool.repair did to a copy so that SQLite would read it


def _open_damaged(path: str) -> sqlite3.Connection:
    try:
        # Read-only keeps the evidence as it was; it still replays the WAL in memory.
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError:
        return sqlite3.connect(path, isolation_level=None)


def _ids(conn: sqlite3.Connection) -> list[int]:
    """Every batch id that can be reached: a scan from each end, then look-ups across the
    stretch in between that a damaged interior page hid from both scans."""
    head: list[int] = []
    try:
        for (i,) in conn.execute("SELECT id FROM batches ORDER BY id"):
            head.append(i)
        return sorted(set(head))
    except sqlite3.DatabaseError:
        pass
    lo = head[-1] if head else None
    tail: list[int] = []
    with contextlib.suppress(sqlite3.DatabaseError):
        for (i,) in conn.execute("SELECT id FROM batches ORDER BY id DESC"):
            if lo is not None and i <= lo:
                break
            tail.append(i)
    hi = tail[-1] if tail else None
    if lo is None and hi is None:
        return []  # the table's root is gone: there is no way in
    if lo is not None and hi is not None:
        probe = range(lo + 1, min(hi, lo + 1 + MAX_PROBES))
        give_up = MAX_PROBES
    elif lo is not None:
        probe, give_up = range(lo + 1, lo + 1 + MAX_PROBES), _MAX_MISSES
    else:
        probe, give_up = range(hi - 1, max(0, hi - 1 - MAX_PROBES), -1), _MAX_MISSES
    found, misses = [], 0
    for i in probe:
        try:
            hit = conn.execute("SELECT 1 FROM batches WHERE id = ?", (i,)).fetchone()
        except sqlite3.DatabaseError:
            hit = None
        if hit:
            found.append(i)
            misses = 0
        else:
            misses += 1
            if misses >= give_up:
                break
    # A damaged interior page can lead a scan through the same leaves twice.
    return sorted(set(head) | set(found) | set(tail))


def salvage(path: str, report: Salvage) -> Iterator[tuple[Batch, str | None]]:
    """Yield ``(batch, parked_reason)`` for every readable batch of a damaged spool, oldest first,
    with acknowledged samples already cut off. Counts go to ``report``. A file whose first page
    SQLite refuses is read through a repaired copy (spool/repair.py), removed afterwards."""
    from belabox_metrics.spool import repair  # only a damaged file needs it

    if not repair.needs_repair(path):
        yield from _salvage(path, report)
        return
    copy = path + ".repair"
    report.repair = repair.repaired_copy(path, copy) or ""
    if not report.repair:
        yield from _salvage(path, report)
        return
    try:
        yield from _salvage(copy, report)
    finally:
        repair.remove(copy)


def _salvage(path: str, report: Salvage) -> Iterator[tuple[Batch, str | None]]:
    try:
        conn = _open_damaged(path)
    except sqlite3.Error as e:
        report.error = str(e)
        return
    try:
        try:
            ids = _ids(conn)
        except sqlite3.DatabaseError as e:
            report.error = str(e)
            return
        with contextlib.suppress(sqlite3.DatabaseError):
            report.dropped = {r: int(n) for r, n in conn.execute("SELECT reason, samples FROM dropped")}
        dicts: dict[int, Dictionary | None] = {}
        decoder = Decoder()
        for i in ids:
            n = 0
            try:
                n, done, parked, dict_id, boot, synced, wall_ms, boottime_ns, data = conn.execute(
                    "SELECT n, done, parked, dict_id, boot, clock_synced, wall_ms, boottime_ns, data "
                    "FROM batches WHERE id = ?", (i,)).fetchone()
                if dict_id is not None and dict_id not in dicts:
                    try:
                        dicts[dict_id] = read_dictionary(conn, dict_id)
                    except CodecError:
                        dicts[dict_id] = None
                if dict_id is not None and dicts[dict_id] is None:
                    raise CodecError(f"dictionary {dict_id} is lost in both copies")
                samples = decoder.decode(data, wall_ms, dicts.get(dict_id))
                if len(samples) != n:
                    raise CodecError("sample count does not match")
                boot_row = conn.execute("SELECT boot_id FROM boots WHERE id = ?", (boot,)).fetchone()
                reason = None
                if parked:
                    r = conn.execute("SELECT reason FROM parked WHERE batch_id = ?", (i,)).fetchone()
                    reason = r[0] if r else "untrusted_clock"
            except (sqlite3.Error, CodecError, TypeError, ValueError) as e:
                report.lost_batches += 1
                report.lost_samples += n if isinstance(n, int) else 0
                log.debug("salvage: batch %d unreadable: %s", i, e)
                continue
            rest = samples[done:]
            if not rest:
                continue
            # Stored timestamps are absolute now; the batch's own time stays the collection time.
            yield Batch(rest, wall_ms, boot_row[0] if boot_row else "", boottime_ns, bool(synced)), reason
            report.batches += 1
            report.samples += len(rest)
    finally:
        conn.close()
