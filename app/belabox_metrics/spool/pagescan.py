"""Reading the spool's rows straight from its pages, without SQLite (issue 13, "Reliability").

SQLite reaches a row only through the b-tree's interior pages, which sit wherever the tree last
split: a file cut in half or zeroed in the middle loses them and SQLite then reads no batch at
all, although most leaves, each holding its rows' small columns and the start of their blobs,
are intact. This module parses the file format (https://www.sqlite.org/fileformat2.html) by
hand: every table leaf that is not on the freelist, its cells and their overflow chains, with
the committed frames of a ``-wal`` beside it laid over the file. Rows are recognised by their
record's shape, since page 1 (the schema's root) may be gone as well.

Conservative on purpose: a leaf whose cells do not all parse as one of our tables is skipped,
and a row whose overflow chain breaks is reported without a blob (lost, but its sample count
known). Freed pages keep their old rows (secure_delete is OFF), so the freelist is read first:
without it, acknowledged batches would come back. The parsing functions take bytes-like buffers;
only ``scan_file`` touches the disk. Blobs are read again when asked for (``Scan.data``) rather
than held: a full 64 MB spool's would all sit in memory at once.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from belabox_metrics.spool.schema import PAGE_SIZE

MAGIC = b"SQLite format 3\0"
HEADER = 100
TABLE_LEAF = 0x0D
WAL_MAGICS = (0x377F0682, 0x377F0683)  # the low bit: checksums over big-endian words
WAL_HEADER, FRAME_HEADER = 32, 24
MISSING = object()  # a column whose bytes were on a lost overflow page

Buffer = bytes | bytearray | memoryview | mmap.mmap
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_INT_TYPES = frozenset((1, 2, 3, 4, 5, 6, 8, 9))
_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


class Malformed(ValueError):
    """A page or record that does not parse: the page is skipped, never guessed at."""


@dataclass(frozen=True)
class Header:
    page_size: int
    reserved: int
    pages: int  # database size in pages; 0 when the header's own count is not valid
    freelist_trunk: int
    freelist_count: int


@dataclass(frozen=True)
class BatchRow:
    """A ``batches`` row as found in a leaf: its small columns, and where to read its blob."""

    id: int
    n: int
    done: int
    parked: int
    dict_id: int | None
    boot: int
    clock_synced: int
    wall_ms: int
    boottime_ns: int
    cell: tuple[int, int] | None  # (leaf page, cell offset); None when its overflow chain broke


@dataclass
class Scan:
    """What the pages hold, by table. ``batches`` keeps every row found per id: two only when
    the freelist could not be read and a freed leaf came back with an old copy."""

    batches: dict[int, list[BatchRow]] = field(default_factory=dict)
    dicts: dict[int, list[bytes]] = field(default_factory=dict)  # dicts and dict_copies alike
    boots: dict[int, str] = field(default_factory=dict)
    parked: dict[int, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    freelist_complete: bool = True  # False: freed leaves may be read as live
    skipped_leaves: int = 0
    pages: Pages | None = None
    free: set[int] = field(default_factory=set)

    def data(self, row: BatchRow) -> bytes | None:
        """The row's blob, read from its pages again; None when its overflow chain broke."""
        if row.cell is None or self.pages is None:
            return None
        pgno, ptr = row.cell
        try:
            _, size, payload = cell(self.pages, self.pages.get(pgno) or b"", ptr, self.free)
            blob = record(payload, size)[1][-1]
        except (Malformed, ValueError, IndexError, struct.error):
            return None
        return None if blob is MISSING else bytes(blob)


# --- the header and the WAL ---------------------------------------------------------------------

def parse_header(head: Buffer) -> Header | None:
    """The 100-byte database header; None when it is not one (garbled): nothing in it is trusted."""
    if len(head) < HEADER or bytes(head[:16]) != MAGIC:
        return None
    size = _u16(head, 16)[0]
    size = 65536 if size == 1 else size
    if size < 512 or size & (size - 1) or size - head[20] < 480:
        return None
    # The page count is valid only while "version valid for" matches the change counter.
    pages = _u32(head, 28)[0] if _u32(head, 92) == _u32(head, 24) else 0
    return Header(size, head[20], pages, _u32(head, 32)[0], _u32(head, 36)[0])


@dataclass(frozen=True)
class Wal:
    page_size: int
    db_pages: int  # the database size after the last valid commit
    pages: dict[int, bytes]  # page number -> its newest committed image


def _checksum(data: Buffer, big: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def parse_wal(wal: Buffer) -> Wal | None:
    """The committed frames of a WAL: up to the last commit frame whose salts and running
    checksum hold. Frames after it are a transaction that never committed (or an older WAL's
    leftovers, whose salts differ). None when there is no valid WAL header."""
    if len(wal) < WAL_HEADER:
        return None
    magic, _, size, _, salt1, salt2, c0, c1 = struct.unpack_from(">8I", wal, 0)
    big = magic == WAL_MAGICS[1]
    if magic not in WAL_MAGICS or size < 512 or size > 65536 or size & (size - 1):
        return None
    s = _checksum(memoryview(wal)[:24], big, 0, 0)
    if s != (c0, c1):
        return None
    committed: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    db_pages, off = 0, WAL_HEADER
    while off + FRAME_HEADER + size <= len(wal):
        pgno, commit, f1, f2, k0, k1 = struct.unpack_from(">6I", wal, off)
        page = memoryview(wal)[off + FRAME_HEADER: off + FRAME_HEADER + size]
        s = _checksum(page, big, *_checksum(memoryview(wal)[off:off + 8], big, *s))
        if (f1, f2) != (salt1, salt2) or s != (k0, k1) or pgno == 0:
            break
        pending[pgno] = bytes(page)
        if commit:
            committed.update(pending)
            pending.clear()
            db_pages = commit
        off += FRAME_HEADER + size
    return Wal(size, db_pages, committed) if committed else None


# --- pages -----------------------------------------------------------------------------------------

class Pages:
    """The database as pages: the file with the WAL's committed images laid over it."""

    def __init__(self, db: Buffer, wal: Wal | None):
        self.db = db
        self.overlay = wal.pages if wal else {}
        self.header = parse_header(self.overlay.get(1) or db[:HEADER])
        # A garbled header: the WAL knows the page size, else the one every spool is made with.
        self.size = wal.page_size if wal else self.header.page_size if self.header else PAGE_SIZE
        self.usable = self.size - (self.header.reserved if self.header else 0)
        # The last commit's size, else the header's, else whatever the file still holds.
        self.count = ((wal.db_pages if wal else 0) or (self.header.pages if self.header else 0)
                      or len(db) // self.size)

    def get(self, pgno: int) -> bytes | None:
        """Page ``pgno``; None when it is out of range or past the end of a cut-short file."""
        if pgno < 1 or pgno > self.count:
            return None
        hit = self.overlay.get(pgno)
        if hit is not None:
            return hit
        start = (pgno - 1) * self.size
        if start + self.size > len(self.db):
            return None
        return bytes(self.db[start:start + self.size])

    def type_byte(self, pgno: int) -> int:
        """The b-tree page type, read without copying the page (most pages are overflow pages)."""
        at = HEADER if pgno == 1 else 0
        hit = self.overlay.get(pgno)
        if hit is not None:
            return hit[at]
        start = (pgno - 1) * self.size + at
        return self.db[start] if start < len(self.db) else -1


def freelist(pages: Pages) -> tuple[set[int], bool]:
    """Every page on the freelist (trunks and leaves), and whether the whole list was read: a
    trunk lost to the damage, a loop or a number out of range leaves it incomplete."""
    if pages.header is None:
        return set(), False
    free: set[int] = set()
    trunk, limit = pages.header.freelist_trunk, pages.usable // 4 - 2
    while trunk:
        page = pages.get(trunk)
        if page is None or trunk in free:
            return free, False
        free.add(trunk)
        nxt, k = _u32(page, 0)[0], _u32(page, 4)[0]
        if k > limit:
            return free, False
        leaves = struct.unpack_from(f">{k}I", page, 8)
        if any(p < 1 or p > pages.count for p in leaves):
            return free, False
        free.update(leaves)
        trunk = nxt
    return free, len(free) == pages.header.freelist_count


# --- cells and records -----------------------------------------------------------------------------

def varint(buf: Buffer, off: int) -> tuple[int, int]:
    """SQLite's varint at ``off``: (value, offset after it). Raises Malformed past the end."""
    v = 0
    for i in range(9):
        if off + i >= len(buf):
            raise Malformed("varint past the end")
        b = buf[off + i]
        if i == 8:
            return (v << 8) | b, off + 9
        v = (v << 7) | (b & 0x7F)
        if b < 0x80:
            return v, off + i + 1
    raise AssertionError("unreachable")


def local_size(payload: int, usable: int) -> int:
    """How much of a table-leaf cell's payload stays on the leaf (the file format's X, M, K)."""
    x = usable - 35
    if payload <= x:
        return payload
    m = (usable - 12) * 32 // 255 - 23
    k = m + (payload - m) % (usable - 4)
    return k if k <= x else m


def overflow(pages: Pages, first: int, need: int, free: set[int]) -> bytes | None:
    """``need`` bytes from the overflow chain starting at ``first``; None when it runs into a
    missing, zeroed or already visited page, or does not end where the payload does."""
    out, seen, pgno = [], set(), first
    while need > 0:
        if pgno in free:
            # A live row's pages are never on the freelist: this leaf is a freed one that the
            # (partly lost) freelist no longer names. Its rows were deleted: neither read nor lost.
            raise Malformed("overflow chain runs into a freed page")
        page = None if pgno in seen else pages.get(pgno)
        if page is None or page.count(0) == len(page):
            return None
        seen.add(pgno)
        take = min(need, pages.usable - 4)
        out.append(page[4:4 + take])
        need -= take
        pgno = _u32(page, 0)[0]
    return b"".join(out) if pgno == 0 else None


def cell(pages: Pages, page: bytes, ptr: int, free: set[int]) -> tuple[int, int, bytes]:
    """(rowid, payload size, payload) of the table-leaf cell at ``ptr``; the payload is cut
    short where its overflow chain broke. Raises Malformed when the cell runs off the page."""
    size, off = varint(page, ptr)
    rowid, off = varint(page, off)
    local = local_size(size, pages.usable)
    if off + local + (4 if local < size else 0) > pages.usable:
        raise Malformed("cell past the page")
    payload = page[off:off + local]
    if local < size:
        payload += overflow(pages, _u32(page, off + local)[0], size - local, free) or b""
    return rowid - (1 << 64) if rowid >= 1 << 63 else rowid, size, payload


def leaf_cells(pages: Pages, pgno: int, page: bytes, free: set[int]) -> Iterator[tuple[int, int, int, bytes]]:
    """(cell offset, rowid, payload size, payload) for each cell of a table leaf. Raises
    Malformed when the page is no sound leaf."""
    h = HEADER if pgno == 1 else 0
    if page[h] != TABLE_LEAF:
        raise Malformed("not a table leaf")
    n = _u16(page, h + 3)[0]
    first_ptr = h + 8
    if first_ptr + 2 * n > pages.usable:
        raise Malformed("cell count past the page")
    for ptr in struct.unpack_from(f">{n}H", page, first_ptr):
        if ptr < first_ptr + 2 * n or ptr >= pages.usable:
            raise Malformed("cell pointer out of the page")
        yield ptr, *cell(pages, page, ptr, free)


def _column_size(t: int) -> int:
    if t >= 12:
        return (t - 12) // 2
    if t in (10, 11):
        raise Malformed("reserved serial type")
    return _INT_SIZES.get(t, 8 if t == 7 else 0)


def _value(t: int, raw: bytes) -> object:
    if t == 0:
        return None
    if t in (8, 9):
        return t - 8
    if t == 7:
        return struct.unpack(">d", raw)[0]
    if t < 7:
        return int.from_bytes(raw, "big", signed=True)
    return raw.decode() if t % 2 else raw  # text: the spool is UTF-8 (UnicodeDecodeError is a ValueError)


def record(payload: bytes, size: int) -> tuple[tuple[int, ...], list[object]]:
    """(serial types, values) of a record whose full length is ``size``; a column whose bytes
    are past the end of ``payload`` (a broken overflow chain) is MISSING. Raises Malformed
    when the header does not add up to exactly ``size`` bytes."""
    hsize, off = varint(payload, 0)
    if hsize < 1 or hsize > len(payload):
        raise Malformed("record header past the payload")
    types = []
    while off < hsize:
        t, off = varint(payload, off)
        types.append(t)
    sizes = [_column_size(t) for t in types]
    if off != hsize or hsize + sum(sizes) != size:
        raise Malformed("record header does not match the payload size")
    values, at = [], hsize
    for t, n in zip(types, sizes, strict=True):
        values.append(_value(t, payload[at:at + n]) if at + n <= len(payload) else MISSING)
        at += n
    return tuple(types), values


# --- our tables, by shape --------------------------------------------------------------------------

def _is_int(t: int) -> bool:
    return t in _INT_TYPES


def _is_blob(t: int) -> bool:
    return t >= 12 and t % 2 == 0


def _is_text(t: int) -> bool:
    return t >= 13 and t % 2 == 1


def shape(types: tuple[int, ...]) -> str | None:
    """Which of our tables a record's serial types fit (spool/schema.py); None for any other."""
    if len(types) == 10 and types[0] == 0 and _is_blob(types[9]) and (types[4] == 0 or _is_int(types[4])) \
            and all(_is_int(t) for i, t in enumerate(types[1:9], 1) if i != 4):
        return "batches"
    if len(types) == 2 and types[0] == 0:
        return "dicts" if _is_blob(types[1]) else "boots" if _is_text(types[1]) else None
    if len(types) == 2 and _is_text(types[0]) and _is_int(types[1]):
        return "dropped"
    if len(types) == 3 and types[0] == 0 and _is_text(types[1]) and _is_int(types[2]):
        return "parked"
    return None


def _batch(rowid: int, v: list[object], where: tuple[int, int]) -> BatchRow:
    n, done, parked, dict_id, boot, synced, wall_ms, boottime_ns, data = v[1:]
    if n < 1 or done < 0 or parked not in (0, 1) or synced not in (0, 1) or boot < 1 or rowid < 1 \
            or (dict_id is not None and dict_id < 1):
        raise Malformed("batch columns out of range")
    return BatchRow(rowid, n, done, parked, dict_id, boot, synced, wall_ms, boottime_ns,
                    None if data is MISSING else where)


def leaf_rows(pages: Pages, pgno: int, page: bytes, free: set[int]) -> tuple[str, list] | None:
    """(table, rows) of one table leaf whose records all have one of our shapes; None for a
    leaf of another table (the schema's, history's) or an empty one. Raises Malformed."""
    kind, rows = None, []
    for ptr, rowid, size, payload in leaf_cells(pages, pgno, page, free):
        types, values = record(payload, size)
        this = shape(types)
        if this is None or (kind is not None and this != kind):
            return None
        kind = this
        if any(v is MISSING for v in values[:-1]):
            raise Malformed("small columns past the leaf")
        rows.append(_batch(rowid, values, (pgno, ptr)) if kind == "batches" else (rowid, values))
    return (kind, rows) if kind else None


def _collect(out: Scan, kind: str, rows: list) -> None:
    for row in rows:
        if kind == "batches":
            out.batches.setdefault(row.id, []).append(row)
            continue
        rowid, v = row
        if kind == "dicts" and v[1] is not MISSING:
            out.dicts.setdefault(rowid, []).append(bytes(v[1]))
        elif kind == "boots":
            out.boots[rowid] = v[1]
        elif kind == "parked":
            out.parked[rowid] = v[1]
        elif kind == "dropped":
            out.dropped[v[0]] = v[1]


def scan(db: Buffer, wal: Buffer | None = None) -> Scan:
    """Every row of our tables that the pages of ``db`` (with ``wal``'s commits over it) hold."""
    log = parse_wal(wal) if wal else None
    head = parse_header(db[:HEADER])
    if log and head and head.page_size != log.page_size:
        log = None  # not this database's WAL
    pages = Pages(db, log)
    free, complete = freelist(pages)
    out = Scan(freelist_complete=complete, pages=pages, free=free)
    for pgno in range(1, pages.count + 1):
        if pgno in free or pages.type_byte(pgno) != TABLE_LEAF:
            continue
        try:
            found = leaf_rows(pages, pgno, pages.get(pgno) or b"", free)
        except (Malformed, ValueError, TypeError, IndexError, struct.error):
            out.skipped_leaves += 1  # garbled or foreign: not guessed at
            continue
        if found:
            _collect(out, *found)
    return out


def scan_file(path: str) -> Scan:
    """``scan`` of the file at ``path`` and the ``-wal`` beside it. The file is mapped, not read:
    a 64 MB spool stays in the page cache, and the Scan keeps the mapping for ``Scan.data``."""
    db = _mapped(path)
    wal = _mapped(path + "-wal")
    try:
        return scan(db, wal or None)
    finally:
        if isinstance(wal, mmap.mmap):
            wal.close()  # parse_wal copied the committed pages


def _mapped(path: str) -> Buffer:
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return b""
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # outlives the descriptor
    except OSError:
        return b""
