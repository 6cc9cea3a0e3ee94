"""Every write to the spool's tables: batch rows, dictionaries, progress, parking and the size cap.

The caller (store.Spool) holds the connection lock around each call and keeps the running
totals; this module returns what changed so it can.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from belabox_metrics.samples import Batch
from belabox_metrics.spool.codec import CodecError, Dictionary, encode, make_dictionary, series_json
from belabox_metrics.spool.history import persist as store_history
from belabox_metrics.spool.reader import read_dictionary
from belabox_metrics.spool.schema import DICT_TABLES, PAGE_SIZE, Budget

log = logging.getLogger(__name__)

# A new dictionary costs a 16 KB row; only adopt one when rows have compressed poorly against
# the current one for a while (new devices, say), and not more often than every 100 batches.
_POOR_RATIO = 1.25
_POOR_RUN = 3
_DICT_MIN_BATCHES = 100
# A fresh dictionary every 2160 batches (6 h at 10 s) bounds what a dictionary lost in both
# copies takes with it, for 40 KB per 6 h.
_DICT_MAX_BATCHES = 2160


def _check(b: Batch) -> None:
    """What SQLite would refuse at INSERT time, caught before the transaction."""
    for v in (b.wall_ms, b.boottime_ns):
        if not isinstance(v, int) or not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"times must be 64-bit integers, got {v!r}")
    if not isinstance(b.boot_id, str):
        raise ValueError(f"boot_id must be a string, got {b.boot_id!r}")


def pages_for(length: int) -> int:
    """Pages a row of ``length`` blob bytes occupies: its overflow chain plus a leaf share."""
    return -(-length // (PAGE_SIZE - 4)) + 1


def is_full(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return (code & 0xFF) == 13 if code is not None else "full" in str(e)


@dataclass(frozen=True)
class Row:
    id: int
    n: int
    length: int
    wall_ms: int
    done: int = 0
    parked: bool = False


# How a held batch is written (spool.store): its progress so far and, if the uploader parked it,
# (reason, since wall ms). In the insert's own transaction: one write per commit, not three.
State = tuple[int, "tuple[str, int] | None"]


@dataclass(frozen=True)
class Change:
    """Progress of one stored batch moved from old_done to new_done (new_done == n: deleted)."""

    id: int
    n: int
    length: int
    parked: bool
    old_done: int
    new_done: int


class RowWriter:
    def __init__(self, conn: sqlite3.Connection, budget: Budget):
        self.conn = conn
        self.budget = budget
        self._boots = {b: i for i, b in conn.execute("SELECT id, boot_id FROM boots")}
        self._boot_names = {i: b for b, i in self._boots.items()}
        self._dict = self._latest_dictionary()
        self._dict_baseline: int | None = None
        self._dict_age = 0
        self._poor_run = 0
        self._next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM batches").fetchone()[0]

    def _latest_dictionary(self) -> tuple[int, Dictionary] | None:
        last = self.conn.execute("SELECT max(id) FROM dicts").fetchone()[0]
        if last is None:
            return None
        try:
            return last, read_dictionary(self.conn, last)
        except CodecError:
            return None  # both copies damaged: the next batch starts a new one

    def transaction(self, fn: Callable[[sqlite3.Connection], object]):
        # IMMEDIATE: take the write lock up front, so a concurrent `queue` process makes us
        # wait (busy timeout) instead of failing half-way through.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(self.conn)
            self.conn.execute("COMMIT")
            return out
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    # --- lookups ------------------------------------------------------------------------

    def boot_name(self, ref: int) -> str:
        return self._boot_names.get(ref, "")

    def free_pages(self) -> int:
        count = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return self.budget.max_pages - count + free

    # --- inserting ------------------------------------------------------------------------

    def reserve_id(self) -> int:
        """The id of a batch held in memory (spool.store): it keeps it if it is ever written, so
        an upload in flight can acknowledge it in memory or on disk alike."""
        i = self._next_id
        self._next_id += 1
        return i

    def insert(self, batches: Sequence[Batch], ids: Sequence[int] | None = None,
               states: Sequence[State] | None = None) -> tuple[list[Row], list[Change], dict[str, int]]:
        """Store batches as rows, dropping the oldest stored batches first when the cap is reached.
        Returns the new rows, the stored batches that were dropped, and drop counts by reason."""
        state = (self._dict, self._dict_baseline, self._dict_age, self._poor_run)
        new_dicts: list[tuple[int, bytes]] = []
        pending = []
        changes: list[Change] = []
        drops: dict[str, int] = {}
        for k, b in enumerate(batches):
            try:
                _check(b)
                blob, dict_id = self._encode(b, series_json(b.samples), new_dicts)
            except (TypeError, ValueError, UnicodeError, OverflowError) as e:
                # One malformed batch from a buggy collector must not block every commit after it.
                log.error("spool: batch at %r cannot be stored (%s): dropped", b.wall_ms, e)
                drops["invalid"] = drops.get("invalid", 0) + len(b.samples)
                continue
            pending.append((b, blob, dict_id, ids[k] if ids is not None else None,
                            states[k] if states is not None else (0, None)))
        if drops:
            self.transaction(lambda c: self.count_drops(drops))
        if not pending:
            return [], changes, drops
        try:
            rows = self._insert_within_cap(pending, new_dicts, changes, drops)
        except BaseException:
            self._dict, self._dict_baseline, self._dict_age, self._poor_run = state
            raise
        if not rows:  # everything was dropped: the new dictionaries were never written either
            self._dict, self._dict_baseline, self._dict_age, self._poor_run = state
        return rows, changes, drops

    def _encode(self, b: Batch, ser: bytes, new_dicts: list) -> tuple[bytes, int | None]:
        cur = self._dict
        blob = encode(b.samples, b.wall_ms, ser, cur[1] if cur else None)
        if cur is not None and ser == cur[1].series:
            self._poor_run = 0
            if self._dict_baseline is None:
                self._dict_baseline = len(blob)
        elif cur is not None and (self._dict_baseline is None
                                  or len(blob) <= self._dict_baseline * _POOR_RATIO + 64):
            self._poor_run = 0
        else:
            self._poor_run += 1
        self._dict_age += 1
        if len(ser) > self.budget.max_pages * PAGE_SIZE // 16:
            return blob, cur[0] if cur else None  # a freak batch: not worth a dictionary
        poor = self._poor_run >= _POOR_RUN and self._dict_age >= _DICT_MIN_BATCHES
        if cur is None or poor or self._dict_age >= _DICT_MAX_BATCHES:
            next_id = max([cur[0] if cur else 0, *[i for i, _ in new_dicts],
                           self.conn.execute("SELECT coalesce(max(id), 0) FROM dicts").fetchone()[0]]) + 1
            d = make_dictionary(b.samples, ser)
            self._dict = cur = (next_id, d)
            new_dicts.append((next_id, d.to_bytes()))
            blob = encode(b.samples, b.wall_ms, ser, d)
            self._dict_baseline, self._dict_age, self._poor_run = len(blob), 0, 0
        return blob, cur[0]

    def _insert_within_cap(self, pending: list, new_dicts: list, changes: list[Change],
                           drops: dict[str, int]) -> list[Row]:
        while True:
            need = sum(pages_for(len(p[1])) for p in pending) + 2
            need += sum(pages_for(len(d)) for _, d in new_dicts) * len(DICT_TABLES)
            short = need - self.free_pages()
            if short > 0:
                self._make_room(short, "size_cap", changes, drops)
            try:
                rows, next_id, new_boots = self.transaction(lambda c: self._write(c, pending, new_dicts))
                self._next_id = max(self._next_id, next_id)
                # Only after COMMIT: a failed commit must not leave refs to rows that do not exist.
                self._boots.update(new_boots)
                self._boot_names.update({i: b for b, i in new_boots.items()})
                return rows
            except sqlite3.OperationalError as e:
                if not is_full(e):
                    raise
                # At the page limit it is our cap; below it the filesystem itself is full.
                size = self.conn.execute("PRAGMA page_count").fetchone()[0]
                reason = "size_cap" if size + need > self.budget.max_pages else "disk_full"
            if self._make_room(max(need, 16), reason, changes, drops):
                continue
            if not pending:
                return []
            b = pending.pop(0)[0]  # nothing stored is left to give way: the new batch goes
            lost = {reason: len(b.samples)}
            drops[reason] = drops.get(reason, 0) + len(b.samples)
            self.transaction(lambda c, lost=lost: self.count_drops(lost))

    def _write(self, c: sqlite3.Connection, pending: list, new_dicts: list) -> tuple:
        # The two copies go on either side of the batch rows, so the pages between them keep
        # one garbled stretch of flash from reaching both.
        c.executemany(f"INSERT INTO {DICT_TABLES[0]} (id, data) VALUES (?, ?)", new_dicts)
        rows = []
        next_id = self._next_id
        new_boots: dict[str, int] = {}
        for b, blob, dict_id, given, (done, park) in pending:
            bid = next_id if given is None else given
            next_id = max(next_id, bid + 1)
            ref = self._boots.get(b.boot_id) or new_boots.get(b.boot_id)
            if ref is None:
                ref = new_boots[b.boot_id] = c.execute(
                    "INSERT INTO boots (boot_id) VALUES (?)", (b.boot_id,)).lastrowid
            c.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (bid, len(b.samples), done, int(park is not None), dict_id, ref, int(b.clock_synced),
                       b.wall_ms, b.boottime_ns, blob))
            if park is not None:
                c.execute("INSERT OR REPLACE INTO parked VALUES (?, ?, ?)", (bid, *park))
            rows.append(Row(bid, len(b.samples), len(blob), b.wall_ms, done, park is not None))
        for table in DICT_TABLES[1:]:
            c.executemany(f"INSERT INTO {table} (id, data) VALUES (?, ?)", new_dicts)
        return rows, next_id, new_boots

    def _make_room(self, pages: int, reason: str, changes: list[Change], drops: dict[str, int]) -> bool:
        """Delete the oldest batches (parked ones included) until ``pages`` are free; False when
        there was nothing to delete."""
        def fn(c):
            # History goes first: it never displaces a pending batch (spool/history/persist.py).
            freed, victims = store_history.free_space(c, pages, pages_for), []
            if freed >= pages:
                return victims, freed
            for bid, n, done, parked, length in c.execute(
                    "SELECT id, n, done, parked, length(data) FROM batches ORDER BY id"):
                victims.append(Change(bid, n, length, bool(parked), done, n))
                freed += pages_for(length)
                if freed >= pages:
                    break
            if victims:
                self._delete(c, [v.id for v in victims])
                self.count_drops({reason: sum(v.n - v.old_done for v in victims)})
            return victims, freed
        victims, freed = self.transaction(fn)
        changes.extend(victims)
        if victims:
            drops[reason] = drops.get(reason, 0) + sum(v.n - v.old_done for v in victims)
        return bool(victims) or freed > 0

    # --- progress, parking --------------------------------------------------------------

    def advance(self, slices: Iterable, reason: str | None) -> list[Change]:
        """Move each batch's progress past the slices that start at or before it (in order)."""
        def fn(c):
            state: dict[int, list | None] = {}
            for s in slices:
                if s.batch_id not in state:
                    r = c.execute("SELECT n, done, parked, length(data) FROM batches WHERE id = ?",
                                  (s.batch_id,)).fetchone()
                    state[s.batch_id] = [r[0], r[1], r[1], bool(r[2]), r[3]] if r else None
                st = state[s.batch_id]
                if st is not None and s.start <= st[2] < s.end:
                    st[2] = min(s.end, st[0])
            out = [Change(i, st[0], st[4], st[3], st[1], st[2])
                   for i, st in state.items() if st is not None and st[2] != st[1]]
            gone = [ch.id for ch in out if ch.new_done >= ch.n]
            self._delete(c, gone)
            c.executemany("UPDATE batches SET done = ? WHERE id = ?",
                          [(ch.new_done, ch.id) for ch in out if ch.new_done < ch.n])
            if reason is not None:
                self.count_drops({reason: sum(ch.new_done - ch.old_done for ch in out)})
            return out
        return self.transaction(fn)

    def delete_rows(self, ids: Collection[int], reason: str) -> list[Change]:
        def fn(c):
            out = []
            for i in ids:
                r = c.execute("SELECT n, done, parked, length(data) FROM batches WHERE id = ?",
                              (i,)).fetchone()
                if r:
                    out.append(Change(i, r[0], r[3], bool(r[2]), r[1], r[0]))
            self._delete(c, [ch.id for ch in out])
            self.count_drops({reason: sum(ch.n - ch.old_done for ch in out)})
            return out
        return self.transaction(fn)

    def count_drops(self, drops: dict[str, int]) -> None:
        """Inside a transaction: add to the persistent per-reason counters."""
        self.conn.executemany(
            "INSERT INTO dropped VALUES (?, ?) ON CONFLICT(reason) DO UPDATE SET samples = samples + ?",
            [(r, n, n) for r, n in drops.items() if n > 0])

    def _delete(self, c: sqlite3.Connection, ids: list[int]) -> None:
        c.executemany("DELETE FROM batches WHERE id = ?", [(i,) for i in ids])
        c.executemany("DELETE FROM parked WHERE batch_id = ?", [(i,) for i in ids])

    # --- housekeeping ---------------------------------------------------------------------

    def gc(self) -> None:
        """Forget dictionaries and boot ids no row refers to any more (a scan of the small columns)."""
        keep = self._dict[0] if self._dict else -1

        def fn(c):
            for table in DICT_TABLES:
                c.execute(f"DELETE FROM {table} WHERE id != ? AND id NOT IN "
                          "(SELECT DISTINCT dict_id FROM batches WHERE dict_id IS NOT NULL)", (keep,))
            c.execute("DELETE FROM boots WHERE id NOT IN (SELECT DISTINCT boot FROM batches)")
        self.transaction(fn)
        self._boots = {b: i for i, b in self.conn.execute("SELECT id, boot_id FROM boots")}
        self._boot_names = {i: b for b, i in self._boots.items()}
