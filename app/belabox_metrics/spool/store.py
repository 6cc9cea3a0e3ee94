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
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

from belabox_metrics.config import StorageConfig
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.samples import Batch
from belabox_metrics.spool import guard as spool_guard
from belabox_metrics.spool.held import EST_BYTES_PER_SAMPLE, Entry, Held
from belabox_metrics.spool.opening import Opening, OpenReport
from belabox_metrics.spool.reader import RowReader, Slice
from belabox_metrics.spool.rows import Change, RowWriter, State
from belabox_metrics.spool.schema import (
    Budget,
    StoreError,
)
from belabox_metrics.spool.totals import Totals
from belabox_metrics.spool.upkeep import Upkeep, file_size

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


class Spool(Opening, Upkeep):
    """The spool: batches held in memory and written rows, taken by the uploader and acknowledged.
    Opening (spool/opening.py) and upkeep (spool/upkeep.py) are the mixins' part."""

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
        # A damaged file moved aside whose replacement failed half-way (Upkeep._recover_damage).
        self._fresh_file_due: str | None = None
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

    # --- opening ------------------------------------------------------------------------

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
        # Damage first: once the damaged file is moved aside, the path no longer leads to the open
        # file either, and copying from a damaged (or already closed) connection cannot work.
        if (self.guard.damaged() or self._fresh_file_due) and self.guard.rebuild_due():
            self._recover_damage()
        elif self.guard.moved() and self.guard.rebuild_due():
            self._rebuild(self.guard.moved() or "spool file moved")
        self._before_commit(now_mono)
        return self._commit(lambda: self._held.due(now_mono, self.cfg.commit_interval, COMMIT_EARLY_SAMPLES),
                            now_mono)

    def next_commit_due(self) -> float | None:
        """When (monotonic) the oldest held batch is due to be written, if any is held."""
        at = self._held.oldest_at()
        return None if at is None else at + self.cfg.commit_interval

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
                # Progress made while held, and parking: the rows start where the batches stand.
                self._insert([e.batch for e in entries], [e.id for e in entries], [(e.done, e.park) for e in entries])
            except BaseException as e:
                if isinstance(e, (sqlite3.Error, OSError)):
                    self.guard.failed(e)
                lost = self._held.put_back(entries, MAX_BUFFER_SAMPLES)
                self._count({self.guard.drop_reason(): lost})
                raise
            self.guard.committed()
            self.last_committed_wall_ms = [e.batch.wall_ms for e in entries]
            return len(entries)

    def _insert(self, batches: list[Batch], ids: list[int] | None = None, states: list[State] | None = None
                ) -> list[int]:
        with self._db:
            rows, changes, drops = self._writer.insert(batches, ids, states)
        self._totals.apply(changes)
        self._totals.add_rows(rows)
        self._count(drops, persist=False)  # the writer stored them with the deletions
        self._refresh_ends()
        if any(r.parked for r in rows) or any(c.parked for c in changes):
            self._refresh_parked()
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

    # --- batches whose clock cannot be trusted ----------------------------------------------

    # --- field history (spool/history/persist.py owns the tables) -------------------------------

    @contextlib.contextmanager
    def history_db(self) -> Iterator[sqlite3.Connection]:
        """The connection under the spool's lock, for spool/history/persist.py's reads and writes."""
        with self._db:
            yield self._conn

    # --- upkeep ---------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        """Running totals plus two stat() calls: never waits for the database."""
        batches, samples, nbytes, oldest, newest, dropped, pb, ps = self._totals.snapshot()
        # Held batches are pending too (they are not on the server): one number everywhere.
        hb, hs, h_oldest, h_newest = self._held.totals()
        by_reason, parked_bytes, oldest_parked = self._totals.parked_detail()
        phb, phs, held_reasons, h_oldest_parked = self._held.parked_totals()
        if phb:  # parked while held (spool/held.py): parked like the rows, one number everywhere
            pb, ps, parked_bytes = pb + phb, ps + phs, parked_bytes + phs * EST_BYTES_PER_SAMPLE
            for r, n in held_reasons.items():
                by_reason[r] = by_reason.get(r, 0) + n
            oldest_parked = h_oldest_parked if oldest_parked is None else min(oldest_parked, h_oldest_parked)
        oldest = oldest if h_oldest is None or (oldest is not None and oldest <= h_oldest) else h_oldest
        newest = newest if h_newest is None or (newest is not None and newest >= h_newest) else h_newest
        return SpoolStats(batches + hb, samples + hs, nbytes + hs * EST_BYTES_PER_SAMPLE, oldest, newest,
                          file_size(self.path), file_size(self.path + "-wal"), dropped, pb, ps, self.path, hb, hs,
                          parked_by_reason=by_reason, parked_bytes=parked_bytes,
                          oldest_parked_wall_ms=oldest_parked)

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
