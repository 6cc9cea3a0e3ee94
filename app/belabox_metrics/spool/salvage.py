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
from typing import TYPE_CHECKING
from urllib.parse import quote

from belabox_metrics.samples import Batch
from belabox_metrics.spool.codec import CodecError, Decoder, Dictionary
from belabox_metrics.spool.reader import dictionary_from_copies, read_dictionary

if TYPE_CHECKING:
    from belabox_metrics.spool import pagescan

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
    scan: str = ""  # what the raw-page scan (spool.pagescan) added, when it ran


def _open_damaged(path: str) -> sqlite3.Connection:
    try:
        # Read-only keeps the evidence as it was; it still replays the WAL in memory.
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError:
        return sqlite3.connect(path, isolation_level=None)


def _ids(conn: sqlite3.Connection) -> tuple[list[int], bool]:
    """Every batch id that can be reached: a scan from each end, then look-ups across the
    stretch in between that a damaged interior page hid from both scans. The flag says the
    first scan walked the whole table: nothing is hidden from SQLite then."""
    head: list[int] = []
    try:
        for (i,) in conn.execute("SELECT id FROM batches ORDER BY id"):
            head.append(i)
        return sorted(set(head)), True
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
        return [], False  # the table's root is gone: there is no way in
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
    return sorted(set(head) | set(found) | set(tail)), False


def salvage(path: str, report: Salvage) -> Iterator[tuple[Batch, str | None]]:
    """Yield ``(batch, parked_reason)`` for every readable batch of a damaged spool, oldest first,
    with acknowledged samples already cut off. Counts go to ``report``. A file whose first page
    SQLite refuses is read through a repaired copy (spool/repair.py), removed afterwards; what
    SQLite cannot reach is read from the raw pages of ``path`` itself (spool/pagescan.py)."""
    from belabox_metrics.spool import repair  # only a damaged file needs it

    if not repair.needs_repair(path):
        yield from _salvage(path, report, path)
        return
    copy = path + ".repair"
    report.repair = repair.repaired_copy(path, copy) or ""
    if not report.repair:
        yield from _salvage(path, report, path)
        return
    try:
        yield from _salvage(copy, report, path)
    finally:
        repair.remove(copy)


class _Lost(Exception):
    """A batch row whose samples cannot be read; ``samples``: how many were still to send."""

    def __init__(self, samples: int, why: str):
        super().__init__(why)
        self.samples = samples


Row = tuple  # (n, done, parked, dict_id, boot, clock_synced, wall_ms, boottime_ns, data)


class _Sources:
    """SQLite's reading of the damaged file first, then the raw pages' (spool/pagescan.py),
    which are scanned once SQLite failed somewhere: an intact b-tree needs no scan."""

    def __init__(self, conn: sqlite3.Connection | None, raw_path: str):
        self.conn, self.raw_path = conn, raw_path
        self.decoder = Decoder()
        self.pages: pagescan.Scan | None = None
        self._dicts: dict[int, Dictionary | None] = {}

    def scan(self) -> pagescan.Scan:
        if self.pages is None:
            from belabox_metrics.spool import pagescan  # only a damaged tree needs it

            try:
                self.pages = pagescan.scan_file(self.raw_path)
            except Exception as e:  # a best-effort second reading must never stop the spool opening
                log.warning("salvage: cannot scan the pages of %s: %r", self.raw_path, e)
                self.pages = pagescan.Scan(freelist_complete=False)
        return self.pages

    def _one(self, sql: str, args: tuple) -> tuple | None:
        """A row from SQLite; None when there is no connection, no row or SQLite fails."""
        if self.conn is None:
            return None
        try:
            return self.conn.execute(sql, args).fetchone()
        except sqlite3.Error as e:
            log.debug("salvage: %s: %s", sql, e)
            return None

    def row(self, i: int) -> Row | None:
        return self._one("SELECT n, done, parked, dict_id, boot, clock_synced, wall_ms, boottime_ns, data "
                         "FROM batches WHERE id = ?", (i,))

    def scanned_rows(self, i: int) -> Iterator[Row]:
        scan = self.scan()
        # Two copies of a row only come from a freed leaf read as live (freelist unreadable): a
        # row's progress only grows, so the copy with the most samples done is the newer one.
        for r in sorted(scan.batches.get(i, ()), key=lambda r: -r.done):  # blobs read one at a time
            yield r.n, r.done, r.parked, r.dict_id, r.boot, r.clock_synced, r.wall_ms, r.boottime_ns, scan.data(r)

    def dropped(self) -> dict[str, int]:
        if self.conn is not None:
            try:
                return {r: int(n) for r, n in self.conn.execute("SELECT reason, samples FROM dropped")}
            except (sqlite3.Error, TypeError, ValueError):
                pass
        return dict(self.scan().dropped)

    def dictionary(self, dict_id: int | None) -> Dictionary | None:
        if dict_id is None:
            return None
        if dict_id not in self._dicts:
            self._dicts[dict_id] = self._find_dictionary(dict_id)
        d = self._dicts[dict_id]
        if d is None:
            raise CodecError(f"dictionary {dict_id} is lost in both copies")
        return d

    def _find_dictionary(self, dict_id: int) -> Dictionary | None:
        if self.conn is not None:
            with contextlib.suppress(CodecError):
                return read_dictionary(self.conn, dict_id)
        copies = [("the raw pages", blob) for blob in self.scan().dicts.get(dict_id, ())]
        try:
            return dictionary_from_copies(dict_id, copies)
        except CodecError:
            return None

    def boot_id(self, boot: int) -> str:
        row = self._one("SELECT boot_id FROM boots WHERE id = ?", (boot,))
        # A batch's boot row is never deleted while the batch lives: a miss is damage.
        return row[0] if row and isinstance(row[0], str) else self.scan().boots.get(boot, "")

    def parked_reason(self, i: int) -> str:
        row = self._one("SELECT reason FROM parked WHERE batch_id = ?", (i,))
        # A parked batch need not have a reason row (an untrusted clock parks without one), so a
        # miss consults the raw pages only when they were scanned anyway.
        if row is None and self.pages is not None:
            row = (self.pages.parked.get(i),) if i in self.pages.parked else None
        return row[0] if row else "untrusted_clock"


def _build(src: _Sources, i: int, row: Row) -> tuple[Batch, str | None] | None:
    """The batch of one row with its acknowledged samples cut off; None when none are left.
    Raises _Lost when its samples cannot be read."""
    try:
        n, done, parked, dict_id, boot, synced, wall_ms, boottime_ns, data = row
    except (TypeError, ValueError):
        raise _Lost(0, "row unreadable") from None
    if not isinstance(n, int) or not isinstance(done, int):
        raise _Lost(0, "sample counts unreadable")
    if done >= n:
        return None  # every sample was acknowledged: nothing to send, nothing lost
    try:
        if data is None:
            raise CodecError("its overflow pages are lost")
        samples = src.decoder.decode(data, wall_ms, src.dictionary(dict_id))
        if len(samples) != n:
            raise CodecError("sample count does not match")
    except (CodecError, TypeError, ValueError) as e:
        # Samples before ``done`` were delivered and acknowledged: only the rest is lost.
        raise _Lost(n - max(done, 0), str(e)) from None
    reason = src.parked_reason(i) if parked else None
    # Stored timestamps are absolute now; the batch's own time stays the collection time.
    return Batch(samples[done:], wall_ms, src.boot_id(boot), boottime_ns, bool(synced)), reason


def _read(src: _Sources, i: int, in_sqlite: bool) -> tuple[tuple[Batch, str | None] | None, bool]:
    """(batch or None, whether it came from the raw pages): SQLite's reading wins where it has
    the row and can decode it. Raises _Lost when no reading of the row decodes."""
    lost = _Lost(0, "not found")
    if in_sqlite:
        try:
            return _build(src, i, src.row(i)), False
        except _Lost as e:
            lost = e
    for row in src.scanned_rows(i):
        try:
            return _build(src, i, row), True
        except _Lost as e:
            lost = e if e.samples >= lost.samples else lost
    raise lost


def _connect(path: str) -> tuple[sqlite3.Connection | None, list[int], bool, str]:
    """(connection, batch ids SQLite reaches, whether it walked the whole table, why it failed)."""
    try:
        conn = _open_damaged(path)
    except sqlite3.Error as e:
        return None, [], False, str(e)
    try:
        ids, clean = _ids(conn)
    except sqlite3.DatabaseError as e:
        return conn, [], False, str(e)
    return conn, ids, clean, ""


def _salvage(path: str, report: Salvage, raw_path: str) -> Iterator[tuple[Batch, str | None]]:
    conn, ids, clean, why = _connect(path)
    src = _Sources(conn, raw_path)
    try:
        # A table SQLite could not walk end to end: the raw pages may hold rows it never reached.
        # After a clean walk they are only a second reading of the rows SQLite fails to decode:
        # any other row on a page is one whose leaf left the tree (freed, or never committed).
        todo = sorted(set(ids) | set(src.scan().batches)) if not clean else ids
        known = set(ids)
        report.dropped = src.dropped()
        from_pages = 0
        for i in todo:
            try:
                item, raw = _read(src, i, i in known)
            except _Lost as e:
                report.lost_batches += 1
                report.lost_samples += e.samples
                log.debug("salvage: batch %d unreadable: %s", i, e)
                continue
            if item is None:
                continue
            yield item
            report.batches += 1
            report.samples += len(item[0].samples)
            from_pages += raw
    finally:
        if conn is not None:
            conn.close()
    _note(report, src.pages, from_pages, why)


def _note(report: Salvage, pages: pagescan.Scan | None, from_pages: int, why: str) -> None:
    if why and not (report.batches or report.lost_batches):
        report.error = why
    if pages is None or not from_pages:
        return
    report.scan = f"{from_pages} batches read from the raw pages"
    if not pages.freelist_complete:
        # Freed leaves keep their rows (secure_delete is OFF); without the freelist they read as live.
        report.scan += " (its freelist was unreadable: some may have been acknowledged already)"
