"""Reading batches back out of the spool as Slices, a bounded chunk of rows at a time."""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from belabox_metrics.samples import Sample
from belabox_metrics.spool.codec import CodecError, Decoder, Dictionary
from belabox_metrics.spool.schema import DICT_TABLES

log = logging.getLogger(__name__)

CHUNK = 64  # rows per query: memory stays bounded and no read holds the lock for a whole scan
_COLUMNS = "id, n, done, dict_id, boot, clock_synced, wall_ms, boottime_ns, data"
_DICT_CACHE = 16


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


Bad = tuple[int, int, int]  # (batch_id, n, done) of a row that could not be decoded


class RowReader:
    """Callers hold the connection lock around each call."""

    def __init__(self, conn: sqlite3.Connection, boot_name: Callable[[int], str]):
        self.conn = conn
        self._boot_name = boot_name
        self._decoder = Decoder()
        self._dicts: OrderedDict[int, Dictionary] = OrderedDict()

    def take(self, order: str, max_samples: int, exclude: Collection[int],
             newer_than_ms: int | None) -> tuple[list[Slice], list[Bad]]:
        """Up to max_samples pending samples in id ``order`` ("ASC"/"DESC"); a batch cut short
        gives its first part, since progress is one offset per batch."""
        out: list[Slice] = []
        bad: list[Bad] = []
        left, last = max_samples, None
        while left > 0:
            cond, args = "parked = 0", []
            if last is not None:
                cond += " AND id > ?" if order == "ASC" else " AND id < ?"
                args.append(last)
            rows = self._rows(cond, args, order)
            full = len(rows) == CHUNK
            if newer_than_ms is not None:
                cut = next((k for k, r in enumerate(rows) if r[6] <= newer_than_ms), None)
                if cut is not None:
                    rows, full = rows[:cut], False
            for row in rows:
                if row[0] in exclude:
                    continue
                s = self._slice(row, left, bad)
                if s is not None:
                    out.append(s)
                    left -= s.end - s.start
                    if left <= 0:
                        break
            if not full:
                break
            last = rows[-1][0]
        return out, bad

    def page(self, after: int, since_ms: int | None, until_ms: int | None,
             include_parked: bool) -> tuple[int | None, list[Slice], list[Bad]]:
        """One chunk of whole pending batches with ids above ``after``; returns the last id seen
        (None at the end), the slices and the unreadable rows."""
        cond, args = "id > ?", [after]
        if not include_parked:
            cond += " AND parked = 0"
        if since_ms is not None:
            cond += " AND wall_ms >= ?"
            args.append(since_ms)
        if until_ms is not None:
            cond += " AND wall_ms < ?"
            args.append(until_ms)
        rows = self._rows(cond, args, "ASC")
        bad: list[Bad] = []
        slices = [s for s in (self._slice(r, r[1], bad) for r in rows) if s is not None]
        return (rows[-1][0] if rows else None), slices, bad

    def parked(self) -> list[tuple[int, str, int, int]]:
        rows = self.conn.execute("SELECT id, boot, wall_ms, n - done FROM batches "
                                 "WHERE parked = 1 ORDER BY id").fetchall()
        return [(i, self._boot_name(b), w, n) for i, b, w, n in rows]

    def _rows(self, cond: str, args: list, order: str) -> list[tuple]:
        return self.conn.execute(f"SELECT {_COLUMNS} FROM batches WHERE {cond} ORDER BY id {order} "
                                 f"LIMIT {CHUNK}", args).fetchall()

    def _slice(self, row: tuple, limit: int, bad: list[Bad]) -> Slice | None:
        bid, n, done, dict_id, boot, synced, wall_ms, boottime_ns, data = row
        try:
            samples = self._decoder.decode(data, wall_ms, self._dictionary(dict_id))
            if len(samples) != n:
                raise CodecError(f"{len(samples)} samples, expected {n}")
        except (CodecError, sqlite3.DatabaseError) as e:
            log.error("spool: batch %d is unreadable (%s): dropped", bid, e)
            bad.append((bid, n, done))
            return None
        end = min(n, done + limit)
        return Slice(bid, done, end, samples[done:end], wall_ms, self._boot_name(boot),
                     boottime_ns, bool(synced), -(-len(data) * (end - done) // n))

    def _dictionary(self, dict_id: int | None) -> Dictionary | None:
        if dict_id is None:
            return None
        d = self._dicts.get(dict_id)
        if d is None:
            d = self._dicts[dict_id] = read_dictionary(self.conn, dict_id)
            if len(self._dicts) > _DICT_CACHE:
                self._dicts.popitem(last=False)
        return d


def read_dictionary(conn: sqlite3.Connection, dict_id: int) -> Dictionary:
    """The dictionary from whichever copy is intact; CodecError when none is."""
    errors: list[str] = []

    def copies() -> Iterator[tuple[str, bytes]]:
        for table in DICT_TABLES:
            try:
                row = conn.execute(f"SELECT data FROM {table} WHERE id = ?", (dict_id,)).fetchone()
            except sqlite3.DatabaseError as e:
                errors.append(str(e))
                log.warning("spool: dictionary %d in %s unreadable (%s)", dict_id, table, e)
                continue
            if row is not None:
                yield table, row[0]
    return dictionary_from_copies(dict_id, copies(), errors)


def dictionary_from_copies(dict_id: int, copies: Iterable[tuple[str, bytes]],
                           errors: list[str] | None = None) -> Dictionary:
    """The dictionary from the first intact of ``(where, raw blob)`` copies: SQLite's rows, or
    those spool/pagescan.py found in the raw pages. CodecError when none is."""
    errors = [] if errors is None else errors
    for where, blob in copies:
        try:
            return Dictionary.from_bytes(blob)
        except CodecError as e:
            errors.append(str(e))
            log.warning("spool: dictionary %d in %s unreadable (%s)", dict_id, where, e)
    raise CodecError(f"dictionary {dict_id}: {errors[-1] if errors else 'missing'}")
