"""The durable spool: collection batches in SQLite (WAL), one compressed row per batch.

Threads: the agent appends, commits and maintains; the uploader takes, acks and drops; the
HTTP thread reads stats. One connection serves them all under ``_db``; stats never wait on it.
Loss window: batches are held in memory (spool/held.py) and written only if the server has not
acknowledged them ``storage.commit_interval`` after collection; then without fsync
(synchronous=NORMAL). A power cut loses at most that interval plus the kernel's writeback delay
(about 30 s) of unacknowledged data, and nothing the server acknowledged; with the uplink up the
card sees almost no writes.
The agent holds the file exclusively while it runs (see store_schema.configure).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from belabox_metrics.config import StorageConfig
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.samples import Batch
from belabox_metrics.spool import guard as spool_guard
from belabox_metrics.spool import upkeep
from belabox_metrics.spool.held import EST_BYTES_PER_SAMPLE, Entry, Held
from belabox_metrics.spool.reader import RowReader, Slice
from belabox_metrics.spool.rows import Change, RowWriter
from belabox_metrics.spool.schema import (
    BUSY_TIMEOUT_S,
    Budget,
    DamagedError,
    StoreError,
    check,
    configure,
    connect,
    is_damage,
    is_locked,
    migrate,
)
from belabox_metrics.spool.totals import Totals

log = logging.getLogger(__name__)

DROPPED_METRIC = "metrics_collector_dropped_samples_total"
COMMIT_EARLY_SAMPLES = 50_000  # a long commit_interval must not turn the buffer into the spool
MAX_BUFFER_SAMPLES = 200_000  # while the disk refuses writes; beyond this the oldest go, counted

__all__ = ["OpenReport", "Slice", "Spool", "SpoolStats", "StoreError"]


@dataclass(frozen=True)
class SpoolStats:
    pending_batches: int  # not parked, not fully acknowledged: written or held in memory
    pending_samples: int
    pending_bytes: int
    oldest_wall_ms: int | None
    newest_wall_ms: int | None
    db_size_bytes: int
    wal_size_bytes: int
    dropped: dict[str, int]  # reason -> samples, since the spool was created
    parked_batches: int
    parked_samples: int
    path: str
    buffered_batches: int = 0  # held in memory, not written (included in the pending_* above)
    buffered_samples: int = 0
    # Parked data by the reason it was set aside (clock_unverified: this boot, waiting for a
    # time source; earlier_boot_unfixable: another boot's untrusted clock, waits to expire).
    parked_by_reason: dict[str, int] = field(default_factory=dict)  # reason -> samples
    parked_bytes: int = 0
    oldest_parked_wall_ms: int | None = None


@dataclass(frozen=True)
class OpenReport:
    quarantined: str | None
    salvaged_batches: int
    salvaged_samples: int
    message: str


class Spool:
    def __init__(self, conn: sqlite3.Connection, path: str, cfg: StorageConfig, budget: Budget,
                 selfmetrics: SelfMetrics | None, clock) -> None:
        self._conn = conn
        self.path = path
        self.cfg = cfg
        self._budget = budget
        self._sm = selfmetrics
        self._clock = clock
        self._db = threading.RLock()
        self._commit_lock = threading.Lock()
        self._held = Held()  # batches not yet written (spool/held.py: most never are)
        self.last_committed_wall_ms: list[int] = []  # of the batches the last commit wrote
        self._totals = Totals()
        self._writer = RowWriter(conn, budget)
        self._reader = RowReader(conn, self._writer.boot_name)
        self._last_commit = self._last_checkpoint = clock()
        self._closed = False
        self._readonly = False
        self.open_report = OpenReport(None, 0, 0, "")
        self.guard = spool_guard.Guard(path, clock)

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
            shrunk = upkeep.enforce_cap(self._writer)  # records its drops in the table itself
            if any(shrunk.values()):
                totals, self._totals = self._totals, Totals()
                try:
                    self._load()
                except sqlite3.Error:
                    self._totals = totals
                    raise
        self._count(shrunk, persist=False, totals=False)
        return sum(shrunk.values())

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, cfg: StorageConfig, selfmetrics: SelfMetrics | None = None,
             clock=time.monotonic) -> Spool:
        """Create directories, check integrity (quarantine + salvage on damage), migrate."""
        from belabox_metrics.spool import salvage as store_salvage

        path = os.path.abspath(path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise StoreError(f"{os.path.dirname(path)}: cannot create the spool directory "
                             f"({e.strerror or e})") from None
        budget = Budget.of(cfg)
        quarantined = damage = None
        empty = spool_guard.empty_file(path)
        if empty:  # SQLite would take it for a new database without a word
            log.warning("spool %s is an empty file (0 bytes): initialising a new spool; what it "
                        "held before, if anything, is gone and cannot be counted", path)
        try:
            conn = cls._prepare(path, budget)
        except DamagedError as e:
            damage = str(e)
            try:
                quarantined = store_salvage.quarantine(path)
            except OSError as err:
                raise StoreError(f"{path}: {damage}, and it cannot be moved aside "
                                 f"({err.strerror or err})") from None
            log.error("spool %s: %s; moved to %s", path, damage, quarantined)
            conn = cls._prepare(path, budget)
        spool = cls(conn, path, cfg, budget, selfmetrics, clock)
        with spool._db:
            shrunk = upkeep.enforce_cap(spool._writer)
        spool._load()
        spool._count(shrunk, persist=False, totals=False)  # _load read them from the table
        if empty:
            spool.guard.notice("spool file was empty (0 bytes) at start: initialised a new one")
            spool.open_report = OpenReport(None, 0, 0, "spool file was empty (0 bytes): initialised")
        elif quarantined is None:
            st = spool.stats()
            spool.open_report = OpenReport(None, 0, 0, f"spool ok: {st.pending_samples} samples pending")
        else:
            spool.open_report = spool._salvage(quarantined, damage or "damaged")
        return spool

    @classmethod
    def open_readonly(cls, path: str, cfg: StorageConfig) -> Spool:
        """A look without touching (``diagnose``, ``queue stats|export``): SQLite's mode=ro, so no
        migration, checkpoint or salvage, and a damaged file stays as found. While the agent runs
        it fails with "database is locked": the agent holds the file exclusively."""
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise StoreError(f"{path}: no spool file")
        try:
            conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            spool = cls(conn, path, cfg, Budget.of(cfg), None, time.monotonic)
            spool._readonly = True
            spool._load()
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read the spool ({e})") from None
        return spool

    @staticmethod
    def _prepare(path: str, budget: Budget) -> sqlite3.Connection:
        try:
            conn = connect(path)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the spool ({e})") from None
        try:
            configure(conn, budget)
            check(conn)
            migrate(conn)
        except DamagedError:
            conn.close()
            raise
        except sqlite3.DatabaseError as e:
            conn.close()
            if is_damage(e):
                raise DamagedError(f"not a usable database ({e})") from None
            if is_locked(e):
                raise StoreError(f"{path}: in use by another process (the agent holds it while it "
                                 "runs)") from None
            raise StoreError(f"{path}: cannot use the spool ({e})") from None
        return conn

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

    def _salvage(self, quarantined: str, damage: str) -> OpenReport:
        from belabox_metrics.spool import salvage as store_salvage

        rep = store_salvage.Salvage()
        chunk: list[tuple[Batch, str | None]] = []
        for item in store_salvage.salvage(quarantined, rep):
            chunk.append(item)
            if len(chunk) >= 256:
                self._store_salvaged(chunk)
                chunk = []
        self._store_salvaged(chunk)
        self._count({"corrupt": rep.lost_samples})
        self._count(rep.dropped, metrics=False)  # the old file's history, not new drops
        msg = (f"spool was damaged ({damage}); moved to {os.path.basename(quarantined)}; salvaged "
               f"{rep.batches} batches ({rep.samples} samples)")
        if rep.lost_batches:
            msg += f", {rep.lost_batches} unreadable batches ({rep.lost_samples} samples) counted as dropped"
        if rep.error:
            msg += f"; nothing readable: {rep.error}"
        log.warning("%s", msg)
        return OpenReport(quarantined, rep.batches, rep.samples, msg)

    def _store_salvaged(self, items: list[tuple[Batch, str | None]]) -> None:
        if not items:
            return
        ids = self._insert([b for b, _ in items])
        by_reason: dict[str, list[int]] = {}
        for i, (_, reason) in zip(ids, items, strict=True):
            if reason is not None:
                by_reason.setdefault(reason, []).append(i)
        for reason, group in by_reason.items():
            self.park(group, reason)

    # --- writing ------------------------------------------------------------------------

    def append(self, batch: Batch) -> None:
        """Hold one batch in memory; it reaches the disk only if it is still unacknowledged
        ``storage.commit_interval`` later (or at shutdown)."""
        if not batch.samples:
            return
        with self._db:
            batch_id = self._writer.reserve_id()
        self._held.add(Entry(batch_id, batch, self._clock()))

    def maybe_commit(self, now_mono: float) -> int:
        """Write the batches held for commit_interval (or too many held); returns batches."""
        if self.guard.moved() and self.guard.rebuild_due():
            self._rebuild(self.guard.moved() or "spool file moved")
        return self._commit(lambda: self._held.due(now_mono, self.cfg.commit_interval, COMMIT_EARLY_SAMPLES),
                            now_mono)

    def flush(self) -> int:
        """Write everything still held (shutdown)."""
        return self._commit(self._held.take_all, self._clock())

    def _commit(self, select: Callable[[], list[Entry]], now_mono: float) -> int:
        # Batches leave `_held` under the commit lock: an acknowledgement (which takes it too) then
        # finds each batch either still held or already in a row, never in between.
        with self._commit_lock:
            entries = select()
            self.last_committed_wall_ms = []
            if not entries:
                return 0
            self._last_commit = now_mono
            try:
                self._insert([e.batch for e in entries], [e.id for e in entries])
                partial = [e for e in entries if e.done]
                if partial:  # progress made while held: the rows start where it stands
                    self._advance_rows([Slice(e.id, 0, e.done, (), 0, "", 0, True, 0) for e in partial], None)
            except BaseException as e:
                if isinstance(e, (sqlite3.Error, OSError)):
                    self.guard.failed(e)
                lost = self._held.put_back(entries, MAX_BUFFER_SAMPLES)
                self._count({self.guard.drop_reason(): lost})
                raise
            self.guard.committed()
            self.last_committed_wall_ms = [e.batch.wall_ms for e in entries]
            return len(entries)

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
            upkeep.enforce_cap(self._writer)
            self._totals = Totals()
            self._load()
        self.guard.rebuilt(why, self.stats().pending_batches)

    def _insert(self, batches: list[Batch], ids: list[int] | None = None) -> list[int]:
        with self._db:
            rows, changes, drops = self._writer.insert(batches, ids)
        self._totals.apply(changes)
        self._totals.add_rows(rows)
        self._count(drops, persist=False)  # the writer stored them with the deletions
        self._refresh_ends()
        return [r.id for r in rows]

    # --- reading ------------------------------------------------------------------------

    def take_newest(self, max_samples: int, newer_than_ms: int | None = None) -> list[Slice]:
        """The newest pending samples, newest batch first. A batch cut by max_samples gives its
        first part (progress is one offset per batch). With ``newer_than_ms`` the scan stops at
        the first batch collected at or before it (ids follow collection order)."""
        out = self._held.slices(True, max_samples, newer_than_ms)  # held batches are the newest
        room = max_samples - sum(s.end - s.start for s in out)
        if room <= 0:
            return out
        with self._db:
            rows, bad = self._reader.take("DESC", room, (), newer_than_ms)
        self._drop_rows(bad, "corrupt")
        # A batch written between the two reads is in both: hand it out once.
        held_ids = {h.batch_id for h in out}
        return out + [r for r in rows if r.batch_id not in held_ids]

    def take_oldest(self, max_samples: int, exclude_ids: Collection[int] = ()) -> list[Slice]:
        """The oldest pending samples, oldest first, skipping batches in ``exclude_ids``."""
        with self._db:
            out, bad = self._reader.take("ASC", max_samples, exclude_ids, None)
        self._drop_rows(bad, "corrupt")
        room = max_samples - sum(s.end - s.start for s in out)
        if room > 0:
            out += self._held.slices(False, room, None, exclude_ids)
        return out

    def iter_pending(self, since_ms: int | None = None, until_ms: int | None = None,
                     include_parked: bool = False) -> Iterator[Slice]:
        """Every pending batch, oldest first, streamed in chunks (``queue export``). The window
        [since_ms, until_ms) applies to the batch's collection time."""
        last: int | None = 0
        while last is not None:
            with self._db:
                last, slices, bad = self._reader.page(last, since_ms, until_ms, include_parked)
            self._drop_rows(bad, "corrupt")
            yield from slices

    # --- progress -----------------------------------------------------------------------

    def ack(self, slices: Sequence[Slice]) -> None:
        """The server took these samples (2xx): advance progress, delete finished rows, commit."""
        self._advance(slices, None)

    def drop(self, slices: Sequence[Slice], reason: str) -> None:
        """Give up on these samples (e.g. ``rejected_400``, ``invalid``): counted, never re-sent."""
        self._advance(slices, reason)

    def _advance(self, slices: Sequence[Slice], reason: str | None) -> None:
        if not slices:
            return
        # The commit lock: a batch being written right now is acknowledged after its row exists.
        with self._commit_lock:
            moved, slices = self._held.advance(slices)
            if moved and reason is not None:
                self._count({reason: moved})
            if slices:
                self._advance_rows(slices, reason)

    def _advance_rows(self, slices: Sequence[Slice], reason: str | None) -> None:
        with self._db:
            changes = self._writer.advance(slices, reason)
        self._after(changes)
        if reason is not None:
            self._count({reason: sum(c.new_done - c.old_done for c in changes)}, persist=False)

    def _drop_rows(self, rows: list[tuple[int, int, int]], reason: str) -> None:
        """Drop whole rows (id, n, done) whatever their state, e.g. undecodable ones."""
        if not rows:
            return
        with self._db:
            changes = self._writer.delete_rows([r[0] for r in rows], reason)
        self._after(changes)
        self._count({reason: sum(c.new_done - c.old_done for c in changes)}, persist=False)

    def _after(self, changes: list[Change]) -> None:
        if self._totals.apply(changes):
            self._refresh_ends()
        if any(c.parked for c in changes):
            self._refresh_parked()

    def _refresh_parked(self) -> None:
        """Parked samples and bytes by reason: a query over the few parked rows, run only when
        parking changes, so stats() stays a copy."""
        q = ("SELECT coalesce(p.reason, 'unknown'), coalesce(sum(b.n - b.done), 0), "
             "coalesce(sum(length(b.data) * (b.n - b.done) / b.n), 0), min(b.wall_ms) "
             "FROM batches b LEFT JOIN parked p ON p.batch_id = b.id WHERE b.parked = 1 GROUP BY 1")
        with self._db:
            rows = self._conn.execute(q).fetchall()
        self._totals.set_parked_detail({r: int(n) for r, n, _, _ in rows if n},
                                       sum(int(b) for _, _, b, _ in rows),
                                       min((w for *_, w in rows if w is not None), default=None))

    def _count(self, drops: dict[str, int], persist: bool = True, totals: bool = True,
               metrics: bool = True) -> None:
        """Count dropped samples: in the table (unless the caller's transaction did), in the
        stats, and in the agent's counter."""
        drops = {r: n for r, n in drops.items() if n > 0}
        if not drops:
            return
        if persist:
            try:
                with self._db:
                    self._writer.transaction(lambda c: self._writer.count_drops(drops))
            except sqlite3.Error as e:  # the disk that made us drop may refuse this too
                log.error("spool: cannot record %s dropped samples: %s", drops, e)
        if totals:
            self._totals.count(drops)
        if metrics and self._sm is not None:
            for r, n in drops.items():
                self._sm.inc(DROPPED_METRIC, n, {"reason": r})

    def _refresh_ends(self) -> None:
        with self._db:
            q = "SELECT wall_ms FROM batches WHERE parked = 0 ORDER BY id {} LIMIT 1"
            first = self._conn.execute(q.format("ASC")).fetchone()
            last = self._conn.execute(q.format("DESC")).fetchone()
        self._totals.set_ends(first[0] if first else None, last[0] if last else None)

    # --- batches whose clock cannot be trusted ----------------------------------------------

    def park(self, batch_ids: Collection[int], reason: str, now_wall_ms: int | None = None) -> None:
        """Set batches aside: never taken, counted in stats, expired after parked_max_age. Held
        batches are written first: parked data may wait for days."""
        since = int(time.time() * 1000) if now_wall_ms is None else now_wall_ms
        ids = list(batch_ids)
        self._commit(lambda: self._held.take_ids(ids), self._clock())
        with self._db:
            moved = upkeep.set_parked(self._writer, ids, True, reason, since)
        self._totals.move(moved, to_parked=True)
        self._refresh_ends()
        self._refresh_parked()

    def unpark(self, batch_ids: Collection[int]) -> None:
        with self._db:
            moved = upkeep.set_parked(self._writer, list(batch_ids), False)
        self._totals.move(moved, to_parked=False)
        self._refresh_ends()
        self._refresh_parked()

    def parked(self) -> list[tuple[int, str, int, int]]:
        """(batch_id, boot_id, wall_ms, samples) of every parked batch, oldest first."""
        with self._db:
            return self._reader.parked()

    def expire_parked(self, now_wall_ms: int, max_age_s: float) -> int:
        """Drop (reason ``untrusted_clock``) batches parked longer than max_age_s; returns samples."""
        with self._db:
            ids = upkeep.expired_parked(self._writer, now_wall_ms, int(max_age_s * 1000))
            changes = self._writer.delete_rows(ids, "untrusted_clock") if ids else []
        self._after(changes)
        n = sum(c.new_done - c.old_done for c in changes)
        self._count({"untrusted_clock": n}, persist=False)
        return n

    # --- field history (spool/history.py owns the tables) -------------------------------

    @contextlib.contextmanager
    def history_db(self) -> Iterator[sqlite3.Connection]:
        """The connection under the spool's lock, for spool/history.py's reads and writes."""
        with self._db:
            yield self._conn

    # --- upkeep ---------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        """Running totals plus two stat() calls: never waits for the database."""
        batches, samples, nbytes, oldest, newest, dropped, pb, ps = self._totals.snapshot()
        # Held batches are pending too (they are not on the server): one number everywhere.
        hb, hs, h_oldest, h_newest = self._held.totals()
        by_reason, parked_bytes, oldest_parked = self._totals.parked_detail()
        oldest = oldest if h_oldest is None or (oldest is not None and oldest <= h_oldest) else h_oldest
        newest = newest if h_newest is None or (newest is not None and newest >= h_newest) else h_newest
        return SpoolStats(batches + hb, samples + hs, nbytes + hs * EST_BYTES_PER_SAMPLE, oldest, newest,
                          _size(self.path), _size(self.path + "-wal"), dropped, pb, ps, self.path, hb, hs,
                          parked_by_reason=by_reason, parked_bytes=parked_bytes,
                          oldest_parked_wall_ms=oldest_parked)

    def maintain(self, now_mono: float) -> None:
        """Checkpoint the WAL every wal_checkpoint_interval, or sooner once it passes its share
        of the cap; forget unused dictionaries on the same schedule."""
        due = now_mono - self._last_checkpoint >= self.cfg.wal_checkpoint_interval
        big = _size(self.path + "-wal") > self._budget.wal_checkpoint_bytes
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

    def close(self) -> None:
        """Commit the buffer, checkpoint, close. Safe to call twice."""
        if self._closed:
            return
        if self._readonly:
            self._closed = True
            self._conn.close()
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self.guard.moved():  # a rebuild never succeeded: the open inode goes with us
                st = self.stats()
                self._count({"spool_deleted": self.guard.lost_at_stop(st.pending_samples + st.parked_samples)},
                            persist=False)
            with self._db:
                try:
                    # Leave a self-contained file (a copy or a `sqlite3` session needs no WAL).
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._conn.close()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
