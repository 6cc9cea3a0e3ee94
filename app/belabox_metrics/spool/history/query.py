"""The history JSON (timeline/history.py's contract) assembled from what the spool and the agent hold.

Sources, merged per series and deduplicated by time:
- the history table: key signals and event counters for ``storage.history_retention``;
- the agent's ring (only when asked through the agent): every series of the last hour;
- pending batches in the spool: every series until uploaded. Only batches that neither of
  the others covers are decoded (a full 64 MB spool is ~60k batches; decoding them all
  would take a minute on the device), unless ``--series`` asks for series only they hold.

Events come from counter increases (kernel events, upload failures), from modem info series
appearing and vanishing, from the batches' clock stamps (steps) and from the agent's start and
stop marks; periods whose batches were collected without a trusted clock are ``clock_unverified``.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import operator
import sqlite3
import zlib
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from belabox_metrics.spool import codec
from belabox_metrics.spool.codec import CodecError
from belabox_metrics.spool.history import events as derive
from belabox_metrics.spool.history import persist as h
from belabox_metrics.spool.reader import read_dictionary

log = logging.getLogger(__name__)

CLOCK_STEP_MS = 2000  # wall and boottime disagree by more than this between two batches: a step
_ROWS = 256  # rows per locked query


class HistoryUnavailable(Exception):
    """The spool could not be read; one line."""


def rfc3339(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Assembler:
    def __init__(self, since_ms: int, until_ms: int, patterns: Sequence[str] = ()) -> None:
        self.since_ms, self.until_ms = since_ms, until_ms
        self.patterns = tuple(patterns)
        self.keep = h.Keeper()
        self._want: dict[h.Series, bool] = {}
        self.points: dict[h.Series, tuple[array, array]] = {}
        self._unsorted: set[h.Series] = set()  # series whose points arrived out of order
        self.stamps: dict[int, h.Stamp] = {}
        self.covered: list[tuple[int, int]] = []  # key series complete in these [a, b] ranges
        self.ring_from: int | None = None  # every series complete from here

    def want(self, s: h.Series) -> bool:
        hit = self._want.get(s)
        if hit is None:
            hit = self._want[s] = self.keep(*s) or any(fnmatch.fnmatchcase(s[0], p) for p in self.patterns)
        return hit

    def _in(self, t: int) -> bool:
        return self.since_ms <= t < self.until_ms

    def _add(self, s: h.Series, t: int, v: float) -> None:
        p = self.points.get(s)
        if p is None:
            p = self.points[s] = (array("q"), array("d"))
        elif p[0] and t <= p[0][-1]:
            self._unsorted.add(s)
        p[0].append(t)
        p[1].append(v)

    def _extend(self, s: h.Series, ts: list[int], vs: list[float]) -> None:
        if not ts:
            return
        p = self.points.get(s)
        if p is None:
            p = self.points[s] = (array("q"), array("d"))
        elif p[0] and ts[0] <= p[0][-1]:
            self._unsorted.add(s)
        p[0].extend(ts)
        p[1].extend(vs)

    # --- sources -----------------------------------------------------------------------

    def add_chunks(self, rows: Iterable[tuple[int, int, bytes]]) -> None:
        for start, end, blob in rows:
            try:
                c = h.decode_chunk(blob)
            except CodecError as e:
                log.warning("history: a chunk of %s is unreadable: %s", rfc3339(start), e)
                continue
            self.covered.append((start, end))
            walls = [st.wall_ms for st in c.stamps]
            idx = [i for i, w in enumerate(walls) if self._in(w)]
            for i in idx:
                self.stamps.setdefault(walls[i], c.stamps[i])
            if self.ring_from is not None:  # the ring has every series from there on
                idx = [i for i in idx if walls[i] < self.ring_from]
            whole = len(idx) == len(walls)
            for s, col in zip(c.series, c.values, strict=True):
                if not self.want(s):
                    continue
                if whole and None not in col:  # the usual case: no per-point Python at all
                    ts, vs = walls, col
                elif whole:
                    ts = [w for w, v in zip(walls, col, strict=True) if v is not None]
                    vs = [v for v in col if v is not None]
                else:
                    ts = [walls[i] for i in idx if col[i] is not None]
                    vs = [col[i] for i in idx if col[i] is not None]
                self._extend(s, ts, vs)

    def ring_covers(self, entries: Sequence[h.RingEntry]) -> None:
        """Call before add_chunks: chunk points the ring holds are then skipped."""
        if entries:
            self.ring_from = entries[0].stamp.wall_ms

    def add_ring(self, entries: Sequence[h.RingEntry]) -> None:
        self.ring_covers(entries)
        todo = [e for e in entries if self._in(e.stamp.wall_ms)]
        for stamp, samples in h.decode_ring(todo):
            self._add_batch(stamp, samples)

    def _add_batch(self, stamp: h.Stamp, samples) -> None:
        self.stamps[stamp.wall_ms] = stamp
        for smp in samples:
            s = (smp.name, smp.labels)
            if self.want(s):
                self._add(s, smp.ts_ms or stamp.wall_ms, smp.value)

    def add_pending(self, conn_ctx) -> None:
        """Decode the pending batches nothing else covers. ``conn_ctx()`` gives the connection
        under the spool's lock, taken per query so the agent's loop is never held up long."""
        with conn_ctx() as conn:
            boots = dict(conn.execute("SELECT id, boot_id FROM boots").fetchall())
            rows = conn.execute("SELECT id, boot, clock_synced, wall_ms, boottime_ns FROM batches "
                                "WHERE wall_ms >= ? AND wall_ms < ? ORDER BY id",
                                (self.since_ms, self.until_ms)).fetchall()
        covered = sorted(self.covered)
        todo = []
        for bid, boot, synced, wall, bt in rows:
            self.stamps.setdefault(wall, h.Stamp(wall, bt, bool(synced), boots.get(boot, "")))
            if not self._covered_sorted(wall, covered):
                todo.append(bid)
        rows = _RowValues(self.want)
        dicts: dict = {}
        for k in range(0, len(todo), _ROWS):
            ids = todo[k:k + _ROWS]
            with conn_ctx() as conn:
                got = conn.execute(f"SELECT id, dict_id, boot, clock_synced, wall_ms, boottime_ns, data FROM batches "
                                   f"WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids).fetchall()
                for _, dict_id, *_rest in got:
                    if dict_id is not None and dict_id not in dicts:
                        try:
                            dicts[dict_id] = read_dictionary(conn, dict_id)
                        except CodecError:
                            dicts[dict_id] = None
            for _bid, dict_id, boot, synced, wall, bt, data in got:
                self.stamps[wall] = h.Stamp(wall, bt, bool(synced), boots.get(boot, ""))
                rows.add(wall, data, dicts.get(dict_id))
            self._blocks(rows)
        self._blocks(rows)

    def _blocks(self, rows: _RowValues) -> None:
        """Batches sharing one series table, transposed: one extend per series per block."""
        for table, walls, values in rows.take():
            for (_, s), col in zip(table, zip(*values, strict=True), strict=True):
                self._extend(s, walls, col)

    def _covered_sorted(self, t: int, covered: list[tuple[int, int]]) -> bool:
        if self.ring_from is not None and t >= self.ring_from:
            return True
        if self.patterns:
            return False  # asked-for series may be ones only the batches hold
        return any(a <= t <= b for a, b in covered)

    # --- the document ------------------------------------------------------------------

    def document(self, marks: Iterable[tuple[int, str, str]] = (), max_points: int | None = None,
                 **extra) -> dict:
        series, events = [], []
        walls = self._walls()
        gaps = sorted(b - a for a, b in zip(walls, walls[1:], strict=False)) or [60_000]
        # A series starting well inside the window began then (an agent start): its first value
        # counts the events before it (kernel events since boot).
        fresh_after = self.since_ms + 3 * gaps[len(gaps) // 2]
        for (name, labels), (ts, vs) in sorted(self.points.items()):
            if (name, labels) in self._unsorted:
                ts, vs = derive.dedup(ts, vs)
            if not ts:
                continue
            fresh = ts[0] > fresh_after
            if name in h.EVENT_METRICS:
                events.extend(derive.counter_events(name, dict(labels), list(zip(ts, vs, strict=True)), fresh))
            if name in h.EVENT_METRICS and not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                continue  # shown as events; plotted only when asked for
            if name == "belabox_modem_info":
                events.extend(derive.presence_events(dict(labels), list(ts), self._walls()))
            if max_points and len(ts) > max_points:
                ts, vs = derive.thin(ts, vs, max_points, name.endswith("_total"))
            # Unthinned (--json) the points stay packed until written: see write_json.
            points = Points(ts, vs) if not max_points else [[t / 1000, v] for t, v in zip(ts, vs, strict=True)]
            series.append({"name": name, "labels": dict(labels), "points": points})
        events.extend(self._clock_events())
        for t, kind, text in marks:
            events.append((t, kind, text))
        events.sort(key=lambda e: e[0])
        doc = {"since": rfc3339(self.since_ms), "until": rfc3339(self.until_ms), "series": series,
               "events": [{"time": rfc3339(t), "kind": k, "text": x} for t, k, x in events],
               "clock_unverified": self._unverified()}
        doc.update({k: v for k, v in extra.items() if v})
        return doc

    _walls_cache: list[int] | None = None

    def _walls(self) -> list[int]:
        if self._walls_cache is None:
            self._walls_cache = sorted(self.stamps)
        return self._walls_cache

    def _clock_events(self) -> list[tuple[int, str, str]]:
        out, prev = [], None
        for w in self._walls():
            st = self.stamps[w]
            if prev is not None and prev.boot_id == st.boot_id and st.boottime_ns:
                drift = (st.wall_ms - prev.wall_ms) - (st.boottime_ns - prev.boottime_ns) // 1_000_000
                if abs(drift) > CLOCK_STEP_MS:
                    out.append((w, "clock", f"wall clock stepped {drift / 1000:+.0f} s"))
            elif (prev is not None and prev.boot_id != st.boot_id
                  and derive.known(st.boot_id) and derive.known(prev.boot_id)):
                out.append((w, "boot", f"new boot {st.boot_id[:8]}"))
            prev = st
        return out

    def _unverified(self) -> list[list[float]]:
        out: list[list[float]] = []
        open_at = last = None
        for w in self._walls():
            if not self.stamps[w].synced:
                if open_at is None:
                    open_at = w
                last = w
            elif open_at is not None:
                out.append([open_at / 1000, w / 1000])
                open_at = None
        if open_at is not None:
            out.append([open_at / 1000, last / 1000])
        return out


class Points:
    """A series' points as two arrays (16 bytes a point, not ~120 as [t, v] lists): a day of
    90 series at 10 s is 780k points. ``write_json`` expands one series at a time."""

    def __init__(self, ts, vs) -> None:
        self.ts, self.vs = ts, vs

    def __len__(self) -> int:
        return len(self.ts)

    def as_lists(self) -> list[list[float]]:
        return [[t / 1000, v] for t, v in zip(self.ts, self.vs, strict=True)]


def write_json(doc: dict, write) -> None:
    """The document as compact JSON through ``write(str)``, series by series (bounded memory)."""
    head = {k: v for k, v in doc.items() if k != "series"}
    text = json.dumps(head, separators=(",", ":"))
    write(text[:-1] + (',"series":[' if head else '{"series":['))
    for i, s in enumerate(doc.get("series") or []):
        pts = s["points"].as_lists() if isinstance(s["points"], Points) else s["points"]
        write(("," if i else "") + json.dumps({**s, "points": pts}, separators=(",", ":")))
    write("]}")


def to_bytes(doc: dict) -> bytes:
    out = io.BytesIO()
    write_json(doc, lambda text: out.write(text.encode()))
    return out.getvalue()


class _RowValues:
    """Only the wanted values of a spool row: no Sample objects, and only the wanted values
    parsed. A day of 300-series batches is 2.6 M samples; this keeps reading them near 1 s
    where decoding every sample took several. (Same row format as codec.Decoder.)"""

    def __init__(self, want) -> None:
        self.want = want
        self._tables: dict[bytes, tuple] = {}
        self._done: list = []
        self._cur: tuple | None = None

    def add(self, wall: int, blob: bytes, zdict) -> None:
        try:
            fmt = blob[0]
            if fmt == codec.SHARED and zdict is not None:
                preset = zdict.values
            elif fmt == codec.INLINE:
                preset = zdict.series[:codec._ZDICT_BYTES] if zdict is not None else b""
            else:
                return
            dec = zlib.decompressobj(zdict=preset) if preset else zlib.decompressobj()
            parts = dec.decompress(memoryview(blob)[1:]).split(b"\n")
            series = zdict.series if fmt == codec.SHARED else parts.pop(0)
            table, pick = self._table(series)
            if not table:
                return
            values = list(map(float, pick(parts[0].split(b","))))
        except (zlib.error, ValueError, IndexError, TypeError):
            return  # the uploader counts and drops unreadable rows; history skips them
        if self._cur is None or self._cur[0] is not table:
            self._cur = (table, [], [])
            self._done.append(self._cur)
        self._cur[1].append(wall)
        self._cur[2].append(values)

    def take(self) -> list:
        out, self._done, self._cur = self._done, [], None
        return out

    def _table(self, series: bytes):
        hit = self._tables.get(series)
        if hit is None:
            if len(self._tables) > 16:
                self._tables.clear()
            table = []
            for i, e in enumerate(json.loads(series)):
                s = (e[0], tuple(zip(e[1::2], e[2::2], strict=True)))
                if self.want(s):
                    table.append((i, s))
            idx = [i for i, _ in table]
            # itemgetter picks the wanted values in C; with one index it returns a bare item.
            pick = operator.itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0] if idx else 0: (v[i],))
            hit = self._tables[series] = (table, pick)
        return hit


def from_spool(spool, since_ms: int, until_ms: int, patterns: Sequence[str] = (), ring=None,
               max_points: int | None = None, unwritten: Sequence[tuple[int, int, bytes]] = (), **extra) -> dict:
    """The whole document from an open spool (read-only or the agent's) and, in the agent, its ring
    and ``unwritten``: the chunk of key points gathered since the last history write."""
    a = Assembler(since_ms, until_ms, patterns)
    try:
        with spool.history_db() as conn:
            chunks = h.read_chunks(conn, since_ms, until_ms)
            marks = h.read_marks(conn, since_ms, until_ms)
        entries = ring.snapshot() if ring is not None else []
        a.ring_covers(entries)
        a.add_chunks([*chunks, *unwritten])
        del chunks
        a.add_ring(entries)
        a.add_pending(spool.history_db)
    except sqlite3.Error as e:
        raise HistoryUnavailable(f"cannot read the spool ({e})") from None
    return a.document(marks, max_points=max_points, **extra)
