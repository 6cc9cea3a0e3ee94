"""The durable spool: collection batches in SQLite (WAL), one compressed row per batch.

Threads: the agent appends, commits and maintains; the uploader takes, acks and drops; the
HTTP thread reads stats. One connection serves them all under ``_db``; stats never wait on it.
Loss window: batches are buffered in memory for up to ``storage.commit_interval`` and then
committed without fsync (synchronous=NORMAL), so a power cut loses at most that interval plus
the kernel's writeback delay (about 30 s); a crash of the process alone loses only the buffer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from belabox_metrics.config import StorageConfig
from belabox_metrics.samples import Batch, Sample
from belabox_metrics.selfmetrics import SelfMetrics
from belabox_metrics.store_codec import CodecError, Decoder
from belabox_metrics.store_rows import Change, RowWriter
from belabox_metrics.store_schema import (
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

log = logging.getLogger(__name__)

DROPPED_METRIC = "metrics_collector_dropped_samples_total"
COMMIT_EARLY_SAMPLES = 50_000  # a long commit_interval must not turn the buffer into the spool
MAX_BUFFER_SAMPLES = 200_000  # while the disk refuses writes; beyond this the oldest go, counted
_SCAN_CHUNK = 64  # rows per query when streaming, so the lock is never held for a whole scan

__all__ = ["OpenReport", "Slice", "Spool", "SpoolStats", "StoreError"]


@dataclass(frozen=True)
class Slice:
    """A contiguous run [start, end) of the samples of one stored batch."""

    batch_id: int
    start: int
    end: int
    samples: tuple[Sample, ...]  # resolved: ts_ms absolute
    wall_ms: int
    boot_id: str
    boottime_ns: int
    clock_synced: bool
    nbytes: int  # this slice's share of the compressed row (for rate limiting)


@dataclass(frozen=True)
class SpoolStats:
    pending_batches: int  # committed, not parked, not fully acknowledged
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
    buffered_batches: int = 0  # appended, not yet committed
    buffered_samples: int = 0


@dataclass(frozen=True)
class OpenReport:
    quarantined: str | None
    salvaged_batches: int
    salvaged_samples: int
    message: str


@dataclass
class _Totals:
    """Running totals, so stats() never scans."""

    batches: int = 0
    samples: int = 0
    bytes: int = 0
    parked_batches: int = 0
    parked_samples: int = 0
    oldest: int | None = None
    newest: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)


def _share(length: int, n: int, done: int) -> int:
    return length * (n - done) // n if n else 0


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
        self._buf_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._buf: list[Batch] = []
        self._buf_samples = 0
        self._t = _Totals()
        self._decoder = Decoder()
        self._writer = RowWriter(conn, budget)
        self._last_commit = self._last_checkpoint = clock()
        self._closed = False
        self.open_report = OpenReport(None, 0, 0, "")

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, cfg: StorageConfig, selfmetrics: SelfMetrics | None = None,
             clock=time.monotonic) -> Spool:
        """Create directories, check integrity (quarantine + salvage on damage), migrate."""
        from belabox_metrics import store_salvage

        path = os.path.abspath(path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise StoreError(f"{os.path.dirname(path)}: cannot create the spool directory "
                             f"({e.strerror or e})") from None
        budget = Budget.of(cfg)
        damage = None
        try:
            conn = cls._prepare(path, budget)
        except DamagedError as e:
            damage = str(e)
        quarantined = None
        if damage is not None:
            quarantined = store_salvage.quarantine(path)
            log.error("spool %s: %s; moved to %s", path, damage, quarantined)
            conn = cls._prepare(path, budget)
        spool = cls(conn, path, cfg, budget, selfmetrics, clock)
        with spool._db:
            shrunk = spool._writer.enforce_cap()
        spool._load()
        spool._count_drops(shrunk, persist=False, totals=False)  # _load read them from the table
        if quarantined is None:
            st = spool.stats()
            spool.open_report = OpenReport(None, 0, 0, f"spool ok: {st.pending_samples} samples pending")
            return spool
        spool.open_report = spool._salvage(quarantined, damage)
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
        t = self._t
        q = ("SELECT parked, count(*), coalesce(sum(n - done), 0), "
             "coalesce(sum(length(data) * (n - done) / n), 0) FROM batches GROUP BY parked")
        for parked, count, samples, nbytes in self._conn.execute(q):
            if parked:
                t.parked_batches, t.parked_samples = count, samples
            else:
                t.batches, t.samples, t.bytes = count, samples, nbytes
        t.dropped = {r: int(n) for r, n in self._conn.execute("SELECT reason, samples FROM dropped")}
        self._refresh_ends()

    def _salvage(self, quarantined: str, damage: str) -> OpenReport:
        from belabox_metrics import store_salvage

        rep = store_salvage.Salvage()
        chunk: list[tuple[Batch, str | None]] = []
        for item in store_salvage.salvage(quarantined, rep):
            chunk.append(item)
            if len(chunk) >= 256:
                self._store_salvaged(chunk)
                chunk = []
        self._store_salvaged(chunk)
        if rep.lost_samples:
            self._count_drops({"corrupt": rep.lost_samples})
        self._count_drops(rep.dropped, metrics=False)  # the old file's history, not new drops
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
        """Buffer one batch in memory; nothing touches the disk until the next commit."""
        if not batch.samples:
            return
        with self._buf_lock:
            self._buf.append(batch)
            self._buf_samples += len(batch.samples)

    def maybe_commit(self, now_mono: float) -> int:
        """Commit the buffer when commit_interval has passed (or it grew large); returns batches."""
        due = now_mono - self._last_commit >= self.cfg.commit_interval
        if not due and self._buf_samples < COMMIT_EARLY_SAMPLES:
            return 0
        return self._commit(now_mono)

    def flush(self) -> int:
        """Commit the buffer now (shutdown)."""
        return self._commit(self._clock())

    def _commit(self, now_mono: float) -> int:
        with self._commit_lock:
            with self._buf_lock:
                batches, self._buf, self._buf_samples = self._buf, [], 0
            self._last_commit = now_mono
            if not batches:
                return 0
            try:
                self._insert(batches)
            except BaseException:
                self._requeue(batches)
                raise
            return len(batches)

    def _requeue(self, batches: list[Batch]) -> None:
        """A failed commit keeps its batches for the next try, within MAX_BUFFER_SAMPLES."""
        lost = 0
        with self._buf_lock:
            self._buf[:0] = batches
            self._buf_samples += sum(len(b.samples) for b in batches)
            while self._buf_samples > MAX_BUFFER_SAMPLES and len(self._buf) > 1:
                gone = self._buf.pop(0)
                self._buf_samples -= len(gone.samples)
                lost += len(gone.samples)
        if lost:
            self._count_drops({"buffer_full": lost})

    def _insert(self, batches: list[Batch]) -> list[int]:
        with self._db:
            rows, changes, drops = self._writer.insert(batches)
        self._apply_changes(changes, refresh=False)
        self._count_drops(drops, persist=False)  # the writer stored them with the deletions
        with self._stats_lock:
            t = self._t
            for r in rows:
                t.batches += 1
                t.samples += r.n
                t.bytes += r.length
        self._refresh_ends()
        return [r.id for r in rows]

    # --- reading ------------------------------------------------------------------------

    def take_newest(self, max_samples: int, newer_than_ms: int | None = None) -> list[Slice]:
        """The newest pending samples, newest batch first. A batch cut by max_samples gives its
        first part (progress is one offset per batch). With ``newer_than_ms`` the scan stops at
        the first batch collected at or before it (ids follow collection order)."""
        return self._take("DESC", max_samples, (), newer_than_ms)

    def take_oldest(self, max_samples: int, exclude_ids: Collection[int] = ()) -> list[Slice]:
        """The oldest pending samples, oldest first, skipping batches in ``exclude_ids``."""
        return self._take("ASC", max_samples, exclude_ids, None)

    def _take(self, order: str, max_samples: int, exclude: Collection[int],
              newer_than_ms: int | None) -> list[Slice]:
        out: list[Slice] = []
        bad: list[tuple[int, int, int]] = []
        left = max_samples
        last = None
        with self._db:
            while left > 0:
                rows = self._rows(order, last, newer_than_ms if order == "DESC" else None)
                if not rows:
                    break
                last = rows[-1][0]
                for row in rows:
                    if row[0] in exclude:
                        continue
                    s = self._slice(row, left, bad)
                    if s is not None:
                        out.append(s)
                        left -= s.end - s.start
                        if left <= 0:
                            break
                if len(rows) < _SCAN_CHUNK:
                    break
        if bad:
            self._drop_rows(bad, "corrupt")
        return out

    def _rows(self, order: str, after: int | None, newer_than_ms: int | None) -> list[tuple]:
        cond = "parked = 0"
        args: list = []
        if after is not None:
            cond += " AND id > ?" if order == "ASC" else " AND id < ?"
            args.append(after)
        rows = self._conn.execute(
            "SELECT id, n, done, dict_id, boot, clock_synced, wall_ms, boottime_ns, data FROM batches "
            f"WHERE {cond} ORDER BY id {order} LIMIT {_SCAN_CHUNK}", args).fetchall()
        if newer_than_ms is not None:
            for k, r in enumerate(rows):
                if r[6] <= newer_than_ms:
                    return rows[:k]
        return rows

    def _slice(self, row: tuple, limit: int, bad: list) -> Slice | None:
        bid, n, done, dict_id, boot, synced, wall_ms, boottime_ns, data = row
        try:
            samples = self._decoder.decode(data, wall_ms, self._writer.dict_data(dict_id))
            if len(samples) != n:
                raise CodecError(f"{len(samples)} samples, expected {n}")
        except (CodecError, sqlite3.DatabaseError) as e:
            log.error("spool: batch %d is unreadable (%s): dropped", bid, e)
            bad.append((bid, n, done))
            return None
        end = min(n, done + limit)
        return Slice(bid, done, end, samples[done:end], wall_ms, self._writer.boot_name(boot),
                     boottime_ns, bool(synced), -(-len(data) * (end - done) // n))

    def iter_pending(self, since_ms: int | None = None, until_ms: int | None = None,
                     include_parked: bool = False) -> Iterator[Slice]:
        """Every pending batch, oldest first, streamed in chunks (``queue export``). The window
        [since_ms, until_ms) applies to the batch's collection time."""
        last = 0
        while True:
            bad: list = []
            with self._db:
                cond = "id > ?" + ("" if include_parked else " AND parked = 0")
                args: list = [last]
                if since_ms is not None:
                    cond += " AND wall_ms >= ?"
                    args.append(since_ms)
                if until_ms is not None:
                    cond += " AND wall_ms < ?"
                    args.append(until_ms)
                rows = self._conn.execute(
                    "SELECT id, n, done, dict_id, boot, clock_synced, wall_ms, boottime_ns, data "
                    f"FROM batches WHERE {cond} ORDER BY id LIMIT {_SCAN_CHUNK}", args).fetchall()
                slices = [s for s in (self._slice(r, r[1], bad) for r in rows) if s is not None]
            if bad:
                self._drop_rows(bad, "corrupt")
            if not rows:
                return
            yield from slices
            last = rows[-1][0]

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
        with self._db:
            changes = self._writer.advance(slices, reason)
        self._apply_changes(changes)
        if reason is not None:
            self._count_drops({reason: sum(c.new_done - c.old_done for c in changes)}, persist=False)

    def _drop_rows(self, rows: list[tuple[int, int, int]], reason: str) -> None:
        """Drop whole rows (id, n, done) from any state, e.g. damaged ones."""
        with self._db:
            changes = self._writer.delete_rows([r[0] for r in rows], reason)
        self._apply_changes(changes)
        self._count_drops({reason: sum(c.new_done - c.old_done for c in changes)}, persist=False)

    def _apply_changes(self, changes: list[Change], refresh: bool = True) -> None:
        ends = False
        with self._stats_lock:
            t = self._t
            for c in changes:
                gone = c.new_done >= c.n
                ends = ends or gone
                if c.parked:
                    t.parked_samples -= c.new_done - c.old_done
                    t.parked_batches -= gone
                else:
                    t.samples -= c.new_done - c.old_done
                    t.bytes -= _share(c.length, c.n, c.old_done) - _share(c.length, c.n, c.new_done)
                    t.batches -= gone
        if ends and refresh:
            self._refresh_ends()

    def _count_drops(self, drops: dict[str, int], persist: bool = True, totals: bool = True,
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
            with self._stats_lock:
                for r, n in drops.items():
                    self._t.dropped[r] = self._t.dropped.get(r, 0) + n
        if metrics and self._sm is not None:
            for r, n in drops.items():
                self._sm.inc(DROPPED_METRIC, n, {"reason": r})

    def _refresh_ends(self) -> None:
        with self._db:
            q = "SELECT wall_ms FROM batches WHERE parked = 0 ORDER BY id {} LIMIT 1"
            first = self._conn.execute(q.format("ASC")).fetchone()
            last = self._conn.execute(q.format("DESC")).fetchone()
        with self._stats_lock:
            self._t.oldest = first[0] if first else None
            self._t.newest = last[0] if last else None

    # --- parking (batches whose clock cannot be trusted) -------------------------------------

    def park(self, batch_ids: Collection[int], reason: str, now_wall_ms: int | None = None) -> None:
        """Set batches aside: never taken, counted in stats, expired after parked_max_age."""
        since = int(time.time() * 1000) if now_wall_ms is None else now_wall_ms
        with self._db:
            moved = self._writer.set_parked(list(batch_ids), True, reason, since)
        self._move(moved, to_parked=True)

    def unpark(self, batch_ids: Collection[int]) -> None:
        with self._db:
            moved = self._writer.set_parked(list(batch_ids), False)
        self._move(moved, to_parked=False)

    def _move(self, moved: list[tuple[int, int, int, int]], to_parked: bool) -> None:
        sign = 1 if to_parked else -1
        with self._stats_lock:
            t = self._t
            for _, n, done, length in moved:
                t.parked_batches += sign
                t.parked_samples += sign * (n - done)
                t.batches -= sign
                t.samples -= sign * (n - done)
                t.bytes -= sign * _share(length, n, done)
        if moved:
            self._refresh_ends()

    def parked(self) -> list[tuple[int, str, int, int]]:
        """(batch_id, boot_id, wall_ms, samples) of every parked batch, oldest first."""
        with self._db:
            rows = self._conn.execute("SELECT id, boot, wall_ms, n - done FROM batches "
                                      "WHERE parked = 1 ORDER BY id").fetchall()
            return [(i, self._writer.boot_name(b), w, n) for i, b, w, n in rows]

    def expire_parked(self, now_wall_ms: int, max_age_s: float) -> int:
        """Drop (reason ``untrusted_clock``) batches parked longer than max_age_s; returns samples."""
        with self._db:
            ids = self._writer.expired_parked(now_wall_ms, int(max_age_s * 1000))
            changes = self._writer.delete_rows(ids, "untrusted_clock") if ids else []
        self._apply_changes(changes)
        n = sum(c.new_done - c.old_done for c in changes)
        self._count_drops({"untrusted_clock": n}, persist=False)
        return n

    def unsynced(self) -> list[tuple[int, str, int, int]]:
        """(batch_id, boot_id, wall_ms, boottime_ns) of stored batches collected without a
        trusted clock, parked or not, oldest first (for timekeeping)."""
        with self._db:
            rows = self._conn.execute("SELECT id, boot, wall_ms, boottime_ns FROM batches "
                                      "WHERE clock_synced = 0 ORDER BY id").fetchall()
            return [(i, self._writer.boot_name(b), w, t) for i, b, w, t in rows]

    def restamp(self, batch_ids: Collection[int], delta_ms: int) -> int:
        """Shift batches' times by delta_ms (sample timestamps move along) and mark them synced."""
        with self._db:
            n = self._writer.restamp(list(batch_ids), delta_ms)
        self._refresh_ends()
        return n

    # --- upkeep ---------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        """Running totals plus two stat() calls: never waits for the database."""
        with self._stats_lock:
            t = self._t
            base = (t.batches, t.samples, t.bytes, t.oldest, t.newest)
            parked = (t.parked_batches, t.parked_samples)
            dropped = dict(t.dropped)
        with self._buf_lock:
            buffered = (len(self._buf), self._buf_samples)
        return SpoolStats(*base, _size(self.path), _size(self.path + "-wal"), dropped, *parked,
                          self.path, *buffered)

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
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Commit the buffer, checkpoint, close. Safe to call twice."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._db:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._conn.close()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
