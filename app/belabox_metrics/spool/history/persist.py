"""Field history kept by the spool: key-signal points for ``storage.history_retention`` (24 h)
and the agent's start/stop marks, plus the in-memory ring of every series of the last hour.

Why separate from the batches: acknowledged batches are deleted at once (the spool is a queue),
but "What happened?" needs the key signals of the last day after they were uploaded. So the
agent gathers the key-signal points of every batch it collects (:class:`ChunkBuilder`) and
writes them as ONE compressed row now and then (agent/history.py says when) and at a clean stop:
a few large writes, not one per batch (flash wear). A power cut loses the points since the last
write; those that were not uploaded yet are still in the spool's pending batches, which the
reader uses to fill the hole, and the others are on the server.

Space: the history rows live in the same file, inside ``storage.max_size_mb``. When a batch
needs room, history rows go first, oldest first (``free_space``, called by the row writer), so
history never displaces anything pending. A history write that finds the file full only ever
deletes older history.

Chunk format 2 (zlib'd JSON): ``{"v": 2, "boots": [boot_id], "w": [wall_ms deltas], "t": [boottime
ms deltas], "c": [synced], "i": [boot_index], "s": [[name, label, value, ...]], "k": [scale per
series], "p": [[value or null per batch]]}``: every batch's stamps (clock steps and unverified
periods come from them) and the kept series' values aligned with the batches. Times are stored as
differences from the previous batch, and a series whose values all have at most 6 decimals (scale
``k``) as integer differences of value x 10^k from its previous value (exact: checked when written);
others (``k`` -1) as they are. Against format 1 (absolute values) that is about 40% fewer bytes,
which is what a history write costs the card with the uplink up. Format 1 rows still read.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import threading
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from belabox_metrics.samples import Batch, Labels
from belabox_metrics.spool.codec import CodecError, Decoder, Dictionary, encode, make_dictionary, series_json
from belabox_metrics.timeline.signals import is_key_series

log = logging.getLogger(__name__)

CHUNK_INTERVAL = 3 * 3600.0  # storage.history_interval's default: at least this often
RIDE_AFTER = 600.0  # ... and sooner with a spool commit, which pays the card's journal commit already
CHUNK_MAX_BATCHES = 5000  # a very short collection interval still writes bounded rows
RING_SPAN_S = 3600.0  # every series of the last hour stays in memory
RING_MAX_BYTES = 4 << 20  # ... within this many compressed bytes (1 s interval: ~3.6 MB)
_LEVEL = 9
FORMAT = 2
MAX_SCALE = 6  # decimals kept exactly as integers; a series needing more is stored as it is
_MAX_PACKED = 10 ** 18  # value x 10^k beyond this (1e300...) is stored as it is: no 300-digit integers

# Counters whose increases become events on the timeline.
KERNEL_EVENTS = "belabox_kernel_events_total"
UPLOAD_FAILURES = "metrics_collector_upload_failures_total"
EVENT_METRICS = (KERNEL_EVENTS, UPLOAD_FAILURES)

Series = tuple[str, Labels]


class Keeper:
    """Which series are kept as history (key signals and event counters), cached per series."""

    def __init__(self) -> None:
        self._cache: dict[Series, bool] = {}

    def __call__(self, name: str, labels: Labels) -> bool:
        key = (name, labels)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = name in EVENT_METRICS or is_key_series(name, dict(labels))
            if len(self._cache) > 20_000:  # a label explosion must not grow this forever
                self._cache.clear()
        return hit


@dataclass(frozen=True)
class Stamp:
    wall_ms: int
    boottime_ns: int
    synced: bool
    boot_id: str


# --- chunks: the persisted key-signal points -------------------------------------------------


class ChunkBuilder:
    """Key-signal points gathered since the last history write (the agent's loop thread only)."""

    def __init__(self, keep: Keeper | None = None) -> None:
        self.keep = keep or Keeper()
        self.reset()

    def reset(self) -> None:
        self.stamps: list[tuple[int, int, int, int]] = []
        self.boots: dict[str, int] = {}
        self.index: dict[Series, int] = {}
        self.values: list[list] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def add(self, b: Batch) -> None:
        i = len(self.stamps)
        boot = self.boots.setdefault(b.boot_id, len(self.boots))
        self.stamps.append((b.wall_ms, b.boottime_ns, int(b.clock_synced), boot))
        for s in b.samples:
            if not self.keep(s.name, s.labels):
                continue
            k = self.index.get((s.name, s.labels))
            if k is None:
                k = self.index[(s.name, s.labels)] = len(self.values)
                self.values.append([])
            col = self.values[k]
            if len(col) < i:
                col.extend([None] * (i - len(col)))
            if len(col) == i:
                col.append(s.value)

    def copy(self) -> ChunkBuilder:
        """What was gathered so far, for a reader on another thread: list copies, cheap enough to
        take under a lock that collection waits for, unlike encode()."""
        other = ChunkBuilder(self.keep)
        other.stamps, other.boots, other.index = list(self.stamps), dict(self.boots), dict(self.index)
        other.values = [list(col) for col in self.values]
        return other

    def encode(self) -> tuple[int, int, bytes]:
        """(start_ms, end_ms, blob) of what was gathered."""
        n = len(self.stamps)
        for col in self.values:
            col.extend([None] * (n - len(col)))
        walls = [st[0] for st in self.stamps]
        # Boot time to the millisecond is all clock-step detection needs; nanoseconds are noise
        # that does not compress.
        packed = [_pack(col) for col in self.values]
        doc = {"v": FORMAT, "boots": list(self.boots), "w": _deltas(walls),
               "t": _deltas([st[1] // 1_000_000 for st in self.stamps]),
               "c": [st[2] for st in self.stamps], "i": [st[3] for st in self.stamps],
               "s": [[name, *[x for kv in labels for x in kv]] for name, labels in self.index],
               "k": [k for k, _ in packed], "p": [col for _, col in packed]}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return min(walls), max(walls), zlib.compress(raw, _LEVEL)


def _deltas(xs: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *xs], xs, strict=False)]


def _sums(ds: list[int]) -> list[int]:
    return list(itertools.accumulate(ds))


def _scale(col: list) -> int:
    """The fewest decimals that hold every value of ``col`` exactly, or -1 (more than MAX_SCALE,
    not finite, not a number)."""
    k = 0
    for v in col:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return -1
        exp = Decimal(repr(v)).normalize().as_tuple().exponent  # repr: the shortest text that reads back as v
        if not isinstance(exp, int):  # nan, inf
            return -1
        k = max(k, -exp)
        if k > MAX_SCALE:
            return -1
    return k


def _pack(col: list) -> tuple[int, list]:
    """(k, differences of value x 10^k from the previous value, None staying None), or (-1, col)
    as it is. The round trip is checked here, so a surprise costs bytes, never a value."""
    k = _scale(col)
    if k < 0:
        return -1, col
    out, prev = [], 0
    for v in col:
        if v is None:
            out.append(None)
            continue
        n = int(Decimal(repr(v)).scaleb(k))
        if abs(n) > _MAX_PACKED:
            return -1, col
        out.append(n - prev)
        prev = n
    return (k, out) if _unpack(k, out) == col else (-1, col)


def _unpack(k: int, col: list) -> list:
    if k < 0:
        return col
    if not isinstance(k, int) or k > MAX_SCALE:  # a damaged row must not ask for 10^1000000000
        raise CodecError(f"history chunk: scale {k!r}")
    div = 10 ** k
    sums = itertools.accumulate(0 if d is None else d for d in col)
    return [None if d is None else n / div for d, n in zip(col, sums, strict=True)]


@dataclass
class Chunk:
    stamps: list[Stamp]
    series: list[Series]
    values: list[list]


def decode_chunk(blob: bytes) -> Chunk:
    try:
        doc = json.loads(zlib.decompress(blob))
        version = doc.get("v")
        boots = doc["boots"]
        if version == 1:  # absolute values and nanoseconds, as earlier versions wrote them
            stamps = [Stamp(w, t, bool(s), boots[i]) for w, t, s, i in doc["b"]]
            values = doc["p"]
        elif version == 2:
            times = zip(_sums(doc["w"]), _sums(doc["t"]), doc["c"], doc["i"], strict=True)
            stamps = [Stamp(w, t * 1_000_000, bool(s), boots[i]) for w, t, s, i in times]
            values = [_unpack(k, col) for k, col in zip(doc["k"], doc["p"], strict=True)]
        else:
            raise CodecError(f"unknown history format {version!r}")
        series = [(e[0], tuple(zip(e[1::2], e[2::2], strict=True))) for e in doc["s"]]
        if len(values) != len(series) or any(len(v) != len(stamps) for v in values):
            raise CodecError("history chunk: columns do not match")
        return Chunk(stamps, series, values)
    except CodecError:
        raise
    except (zlib.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise CodecError(f"damaged history chunk: {e}") from None


# --- the tables (callers hold the spool's connection lock) -------------------------------------


def _is_full(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return (code & 0xFF) == 13 if code is not None else "full" in str(e)


def _txn(conn: sqlite3.Connection, fn):
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn()
        conn.execute("COMMIT")
        return out
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def write_chunk(conn: sqlite3.Connection, start_ms: int, end_ms: int, blob: bytes, keep_from_ms: int) -> bool:
    """Store one chunk, forgetting history older than keep_from_ms. When the file is full,
    older history makes room; pending batches never do. False when it could not be stored."""
    def store():
        conn.execute("DELETE FROM history WHERE end_ms < ?", (keep_from_ms,))
        conn.execute("DELETE FROM history_marks WHERE time_ms < ?", (keep_from_ms,))
        conn.execute("INSERT INTO history (start_ms, end_ms, data) VALUES (?, ?, ?)", (start_ms, end_ms, blob))
    while True:
        try:
            _txn(conn, store)
            return True
        except sqlite3.OperationalError as e:
            if not _is_full(e):
                raise
        oldest = conn.execute("SELECT min(id) FROM history").fetchone()[0]
        if oldest is None:
            log.warning("history: the spool is full of pending batches; %d bytes of history not stored", len(blob))
            return False
        _txn(conn, lambda oldest=oldest: conn.execute("DELETE FROM history WHERE id = ?", (oldest,)))


def free_space(conn: sqlite3.Connection, pages: int, pages_for) -> int:
    """Inside the caller's transaction: delete the oldest history rows until about ``pages``
    are free; returns the pages freed. History goes before any pending batch."""
    freed, victims = 0, []
    try:
        for hid, length in conn.execute("SELECT id, length(data) FROM history ORDER BY id"):
            victims.append(hid)
            freed += pages_for(length)
            if freed >= pages:
                break
    except sqlite3.OperationalError:  # a spool from before schema 3 has no history
        return 0
    if victims:
        conn.executemany("DELETE FROM history WHERE id = ?", [(i,) for i in victims])
        log.info("history: %d rows deleted to make room for pending batches", len(victims))
    return freed


def add_mark(conn: sqlite3.Connection, time_ms: int, kind: str, text: str) -> None:
    _txn(conn, lambda: conn.execute("INSERT INTO history_marks (time_ms, kind, text) VALUES (?, ?, ?)",
                                    (time_ms, kind, text)))


def last_mark(conn: sqlite3.Connection) -> tuple[int, str, str] | None:
    return conn.execute("SELECT time_ms, kind, text FROM history_marks ORDER BY id DESC LIMIT 1").fetchone()


def read_chunks(conn: sqlite3.Connection, since_ms: int, until_ms: int) -> list[tuple[int, int, bytes]]:
    try:
        return conn.execute("SELECT start_ms, end_ms, data FROM history WHERE end_ms >= ? AND start_ms < ? "
                            "ORDER BY id", (since_ms, until_ms)).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []  # a spool from before schema 3, opened read-only
        raise


def read_marks(conn: sqlite3.Connection, since_ms: int, until_ms: int) -> list[tuple[int, str, str]]:
    try:
        return conn.execute("SELECT time_ms, kind, text FROM history_marks WHERE time_ms >= ? AND time_ms < ? "
                            "ORDER BY time_ms", (since_ms, until_ms)).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise


# --- the ring: every series of the last hour, in memory ---------------------------------------


@dataclass(frozen=True)
class RingEntry:
    stamp: Stamp
    blob: bytes
    zdict: Dictionary


class Ring:
    """The batches of the last RING_SPAN_S, compressed like spool rows, within RING_MAX_BYTES.
    Fed by the loop thread, read by the HTTP thread."""

    def __init__(self, span_s: float = RING_SPAN_S, max_bytes: int = RING_MAX_BYTES) -> None:
        self.span_ms = int(span_s * 1000)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: deque[RingEntry] = deque()
        self._zdict: Dictionary | None = None
        self._dict_age = 0
        self.bytes = 0

    def add(self, b: Batch) -> None:
        ser = series_json(b.samples)
        self._dict_age += 1
        # A new dictionary when the series changed (a modem came), at most every 100 batches.
        if self._zdict is None or (ser != self._zdict.series and self._dict_age >= 100):
            self._zdict, self._dict_age = make_dictionary(b.samples, ser), 0
        blob = encode(b.samples, b.wall_ms, ser, self._zdict)
        with self._lock:
            self._entries.append(RingEntry(Stamp(b.wall_ms, b.boottime_ns, b.clock_synced, b.boot_id),
                                           blob, self._zdict))
            self.bytes += len(blob)
            while self._entries and (self.bytes > self.max_bytes
                                     or self._entries[0].stamp.wall_ms < b.wall_ms - self.span_ms):
                self.bytes -= len(self._entries.popleft().blob)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> list[RingEntry]:
        with self._lock:
            return list(self._entries)


def decode_ring(entries: Iterable[RingEntry]):
    """(stamp, samples) of each entry; an entry that cannot be decoded is skipped."""
    dec = Decoder()
    for e in entries:
        try:
            yield e.stamp, dec.decode(e.blob, e.stamp.wall_ms, e.zdict)
        except CodecError as err:  # cannot happen short of a bug; one bad entry must not hide the rest
            log.warning("history: ring entry at %d unreadable: %s", e.stamp.wall_ms, err)
