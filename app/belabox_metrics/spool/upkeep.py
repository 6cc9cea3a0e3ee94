"""Upkeep of the spool's rows outside the write path: parking, the age of parked batches, and
holding the file to its size cap. Functions of a RowWriter (spool/rows.py), kept apart so the
writer stays about writing."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool import guard as spool_guard
from belabox_metrics.spool.reader import RowReader, Slice
from belabox_metrics.spool.rows import RowWriter
from belabox_metrics.spool.schema import Budget, StoreError, configure
from belabox_metrics.spool.totals import Totals

log = logging.getLogger("belabox_metrics.spool.store")


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def set_parked(writer: RowWriter, ids: Collection[int], parked: bool, reason: str = "", since_ms: int = 0
               ) -> list[tuple[int, int, int, int]]:
    """Park or unpark; returns (id, n, done, length) of the rows that changed state."""
    def fn(c):
        moved = []
        for i in ids:
            r = c.execute("SELECT n, done, length(data) FROM batches WHERE id = ? AND parked = ?",
                          (i, int(not parked))).fetchone()
            if r:
                moved.append((i, *r))
        c.executemany("UPDATE batches SET parked = ? WHERE id = ?", [(int(parked), m[0]) for m in moved])
        if parked:
            c.executemany("INSERT OR REPLACE INTO parked VALUES (?, ?, ?)",
                          [(m[0], reason, since_ms) for m in moved])
        else:
            c.executemany("DELETE FROM parked WHERE batch_id = ?", [(m[0],) for m in moved])
        return moved
    return writer.transaction(fn)


def expired_parked(writer: RowWriter, now_ms: int, max_age_ms: int) -> list[int]:
    def fn(c):
        # Parked under a clock that ran ahead: start their age now rather than never.
        c.execute("UPDATE parked SET since_ms = ? WHERE since_ms > ?", (now_ms, now_ms))
        return [r[0] for r in c.execute("SELECT batch_id FROM parked WHERE since_ms <= ?",
                                        (now_ms - max_age_ms,))]
    return writer.transaction(fn)


def enforce_cap(writer: RowWriter) -> dict[str, int]:
    """Set the hard page limit; a file already past it (the cap was lowered) loses its oldest
    batches and is vacuumed down first. Returns drop counts."""
    c = writer.conn
    drops: dict[str, int] = {}
    if c.execute("PRAGMA page_count").fetchone()[0] > writer.budget.max_pages:
        target = int(writer.budget.max_pages * 0.9)
        while True:  # pages_for() is an estimate: measure again until the live pages fit
            used = writer.budget.max_pages - writer.free_pages()
            if used <= target or not writer._make_room(used - target, "size_cap", [], drops):
                break
        writer.gc()
        c.execute("VACUUM")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rewrite went through the WAL
    # Hard stop at the cap: an insert past it fails with SQLITE_FULL and the oldest batches go
    # (the free-page check before each insert usually gets there first). SQLite silently clamps
    # it to the current size, hence the shrinking above.
    c.execute(f"PRAGMA max_page_count = {writer.budget.max_pages}")
    return drops


class Upkeep:
    """Spool's upkeep (a mixin: the state is Spool's): live settings, checkpoints, vacuum, a
    spool moved or rebuilt, and parking."""

    # Called with the held batches (as Slices) just before a commit writes them: the uploader
    # parks those whose time cannot be trusted, so they are written parked in that one write.
    before_commit: Callable[[list[Slice]], object] | None = None

    def _before_commit(self, now_mono: float) -> None:
        at = self.next_commit_due()
        if self.before_commit is None or at is None or now_mono < at:
            return
        slices = self._held.slices(False, self._held.totals()[1])
        try:
            if slices:
                self.before_commit(slices)
        except Exception:  # the write matters more than parking before it
            log.exception("spool: parking before the commit failed; the batches are written as they are")

    def wal_share_bytes(self) -> int:
        """What the WAL may hold before it is checkpointed and truncated (journal_size_limit)."""
        return self._budget.wal_bytes

    def reconfigure(self, cfg: StorageConfig) -> int:
        """SIGHUP: a new size cap, commit interval and checkpoint settings take effect now
        (the path does not: the agent says a restart is needed). Returns samples dropped to
        fit a smaller cap, counted like every other drop."""
        budget = Budget.of(cfg)
        with self._db:
            self.cfg = cfg
            if budget == self._budget:
                return 0
            self._budget = budget
            self._writer.budget = budget
            configure(self._conn, budget)
            shrunk = enforce_cap(self._writer)  # records its drops in the table itself
            if any(shrunk.values()):
                totals, self._totals = self._totals, Totals()
                try:
                    self._load()
                except sqlite3.Error:
                    self._totals = totals
                    raise
        self._count(shrunk, persist=False, totals=False)
        return sum(shrunk.values())

    def relocate(self, target: str) -> None:
        """Move to ``target`` (persistent storage usable again after a volatile start)."""
        self._rebuild(f"moved from {self.path}", os.path.abspath(target))

    def _rebuild(self, why: str, target: str | None = None) -> None:
        """The path no longer leads to the open file (spool.guard): copy what the connection
        still reads to a new file there and carry on with it. On failure the old file stays
        in use and the guard holds the fault; the next try follows after RETRY_REBUILD_S."""
        target = target or self.path
        with self._commit_lock, self._db:
            try:
                spool_guard.copy_to(self._conn, target)
            except (sqlite3.Error, OSError) as e:
                self.guard.cannot_rebuild(why, e)
                return
            spool_guard.retire(self._conn, self.path)
            if target != self.path:
                spool_guard.discard(self.path)  # copied; a volatile leftover would only confuse
                self.path = self.guard.path = target
            self._conn = conn = self._prepare(target, self._budget)
            old_writer, self._writer = self._writer, RowWriter(conn, self._budget)
            # Held batches keep the ids they were given: the new file's numbering goes on after them.
            self._writer._next_id = max(self._writer._next_id, old_writer._next_id)
            self._reader = RowReader(conn, self._writer.boot_name)
            enforce_cap(self._writer)
            self._totals = Totals()
            self._load()
        self.guard.rebuilt(why, self.stats().pending_batches)

    def _recover_damage(self) -> None:
        """SQLITE_CORRUPT on a write while running: what a start would do (quarantine, salvage
        into a fresh file), without waiting for one. Held batches stay held; the totals are
        re-read. If the fresh file cannot be made, the fault stays and this is retried."""
        from belabox_metrics.spool import salvage as store_salvage
        why = self.guard.fault.message if self.guard.fault else "spool damaged while running"
        with self._commit_lock, self._db:
            try:
                # A retry keeps the copy moved aside the first time: that one holds the batches.
                quarantined = self._fresh_file_due or store_salvage.quarantine(self.path)
                # Closed before the new file exists: its close deletes "<path>-wal" by name.
                spool_guard.retire(self._conn, self.path)
                self._fresh_file_due = quarantined
                self._conn = conn = self._prepare(self.path, self._budget)
            except (OSError, sqlite3.Error, StoreError) as e:
                # Past retire() the old connection is closed: retry even when the next fault
                # (a write on that closed connection) no longer reads as damage.
                log.error("spool %s: %s; cannot start a fresh file yet: %s", self.path, why, e)
                return
            self._fresh_file_due = None
            old_writer, self._writer = self._writer, RowWriter(conn, self._budget)
            self._writer._next_id = max(self._writer._next_id, old_writer._next_id)  # held ids stay
            self._reader = RowReader(conn, self._writer.boot_name)
            enforce_cap(self._writer)
            self._totals = Totals()
            self._load()
        log.error("spool %s: %s; moved to %s", self.path, why, quarantined)
        self.open_report = self._salvage(quarantined, why)
        self.guard.replaced_damaged(self.open_report.message)

    def maintain(self, now_mono: float) -> None:
        """Checkpoint the WAL every wal_checkpoint_interval, or sooner once it passes its share
        of the cap; forget unused dictionaries on the same schedule."""
        due = now_mono - self._last_checkpoint >= self.cfg.wal_checkpoint_interval
        big = file_size(self.path + "-wal") > self._budget.wal_checkpoint_bytes
        if not (due or big):
            return
        self._last_checkpoint = now_mono
        with self._db:
            if due:
                self._writer.gc()
            # RESTART keeps the WAL file, so later commits overwrite its blocks instead of making
            # ext4 allocate new ones (which data=ordered flushes at once); TRUNCATE when it grew.
            mode = "TRUNCATE" if big else "RESTART"
            busy, frames, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        log.debug("spool checkpoint (%s): %d of %d frames%s", "interval" if due else "size",
                  done, frames, ", busy" if busy else "")

    def vacuum(self) -> None:
        """Rewrite the file to its live size (``queue drain``); briefly needs that much again."""
        self.flush()
        with self._db:
            self._writer.gc()
            self._conn.execute("VACUUM")
            # VACUUM went through the WAL: copy it home and give the space back now.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def park(self, batch_ids: Collection[int], reason: str, now_wall_ms: int | None = None) -> None:
        """Set batches aside: never taken, counted in stats, expired after parked_max_age. A held
        batch stays held, marked, and is written parked at its normal commit (spool/held.py)."""
        since = int(time.time() * 1000) if now_wall_ms is None else now_wall_ms
        self._set_parked(batch_ids, (reason, since))

    def unpark(self, batch_ids: Collection[int]) -> None:
        self._set_parked(batch_ids, None)

    def _set_parked(self, batch_ids: Collection[int], park: tuple[str, int] | None) -> None:
        # Under the commit lock: a batch is either still held or already a row, never in between.
        with self._commit_lock:
            held = self._held.mark(batch_ids, park)
            rest = [i for i in batch_ids if i not in held]
            if not rest:
                return
            with self._db:
                moved = (set_parked(self._writer, rest, True, *park) if park
                         else set_parked(self._writer, rest, False))
            self._totals.move(moved, to_parked=park is not None)
            self._refresh_ends()
            self._refresh_parked()

    def parked(self) -> list[tuple[int, str, int, int]]:
        """(batch_id, boot_id, wall_ms, samples) of every parked batch, oldest first."""
        with self._db:
            rows = self._reader.parked()
        return rows + self._held.parked()  # held ones are newer than any row

    def expire_parked(self, now_wall_ms: int, max_age_s: float) -> int:
        """Drop (reason ``untrusted_clock``) batches parked longer than max_age_s; returns samples."""
        with self._db:
            ids = expired_parked(self._writer, now_wall_ms, int(max_age_s * 1000))
            changes = self._writer.delete_rows(ids, "untrusted_clock") if ids else []
        self._after(changes)
        n = sum(c.new_done - c.old_done for c in changes)
        self._count({"untrusted_clock": n}, persist=False)
        return n

    def _load(self) -> None:
        """Running totals from one pass over the small columns (the blobs are not read)."""
        t = self._totals
        q = ("SELECT parked, count(*), coalesce(sum(n - done), 0), "
             "coalesce(sum(length(data) * (n - done) / n), 0) FROM batches GROUP BY parked")
        for parked, count, samples, nbytes in self._conn.execute(q):
            if parked:
                t.parked_batches, t.parked_samples = count, samples
            else:
                t.batches, t.samples, t.bytes = count, samples, nbytes
        t.count({r: int(n) for r, n in self._conn.execute("SELECT reason, samples FROM dropped")})
        self._refresh_ends()
        self._refresh_parked()

    def _refresh_ends(self) -> None:
        with self._db:
            q = "SELECT wall_ms FROM batches WHERE parked = 0 ORDER BY id {} LIMIT 1"
            first = self._conn.execute(q.format("ASC")).fetchone()
            last = self._conn.execute(q.format("DESC")).fetchone()
        self._totals.set_ends(first[0] if first else None, last[0] if last else None)
