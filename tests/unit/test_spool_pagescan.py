"""spool/pagescan.py against real spools (the real Spool writes them), then damaged: what the raw
pages give back must be exactly what was appended, never an acknowledged or invented batch."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3

import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool import pagescan, salvage
from belabox_metrics.spool.codec import CodecError, Decoder
from belabox_metrics.spool.reader import dictionary_from_copies
from belabox_metrics.spool.store import Spool
from tests.support.spoolgen import BatchGen

CFG = StorageConfig(commit_interval=3600.0)
COLUMNS = "n, done, parked, dict_id, boot, clock_synced, wall_ms, boottime_ns, data"


def build(path: str, batches: int, ack_oldest: int = 0, seed: int = 6) -> dict[int, tuple]:
    """A closed spool; returns wall_ms -> the batch's resolved samples, as appended."""
    sp = Spool.open(path, CFG)
    gen = BatchGen(seed=seed)
    made = {}
    for _ in range(batches):
        b = gen.batch()
        sp.append(b)
        made[b.wall_ms] = tuple(b.resolved())
    sp.flush()
    if ack_oldest:
        sp.ack(sp.take_oldest(ack_oldest * 300))
    sp.close()
    return made


def sqlite_rows(path: str) -> dict[int, tuple]:
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in conn.execute(f"SELECT id, {COLUMNS} FROM batches")}
    finally:
        conn.close()


def only(scan: pagescan.Scan) -> dict[int, pagescan.BatchRow]:
    """One row per id: a second copy would be a freed leaf come back."""
    assert all(len(rows) == 1 for rows in scan.batches.values())
    return {i: rows[0] for i, rows in scan.batches.items()}


def decode(scan: pagescan.Scan, row: pagescan.BatchRow) -> tuple | None:
    """The row's samples, through the same codec the spool uses; None when they do not decode."""
    try:
        zdict = dictionary_from_copies(row.dict_id, [("pages", b) for b in scan.dicts.get(row.dict_id, ())]) \
            if row.dict_id is not None else None
        samples = Decoder().decode(scan.data(row), row.wall_ms, zdict)
    except (CodecError, TypeError):
        return None
    return samples if len(samples) == row.n else None


def recovered(scan: pagescan.Scan, made: dict[int, tuple]) -> tuple[list[int], list[int]]:
    """(ids whose samples decode, ids whose data is lost); asserts every decoded batch is
    exactly one that was appended."""
    ok, lost = [], []
    for i, row in only(scan).items():
        samples = decode(scan, row)
        if samples is None:
            lost.append(i)
            continue
        assert samples == made[row.wall_ms], f"batch {i} differs from what was appended"
        ok.append(i)
    return sorted(ok), sorted(lost)


@pytest.fixture(scope="module")
def spool220(tmp_path_factory) -> tuple[bytes, dict[int, tuple]]:
    path = str(tmp_path_factory.mktemp("pagescan") / "metrics.db")
    made = build(path, 220)
    with open(path, "rb") as fh:
        return fh.read(), made


def test_an_intact_file_gives_exactly_the_rows_sqlite_sees(tmp_path):
    path = str(tmp_path / "metrics.db")
    build(path, 120, ack_oldest=30)
    scan = pagescan.scan_file(path)
    want = sqlite_rows(path)
    got = {i: (r.n, r.done, r.parked, r.dict_id, r.boot, r.clock_synced, r.wall_ms, r.boottime_ns, scan.data(r))
           for i, r in only(scan).items()}
    assert got == want and len(want) == 90
    assert scan.freelist_complete and scan.skipped_leaves == 0
    assert scan.boots == {1: BatchGen().boot_id}


def test_acknowledged_batches_on_the_freelist_stay_dead(tmp_path):
    path = str(tmp_path / "metrics.db")
    made = build(path, 220, ack_oldest=100)
    with open(path, "rb") as fh:
        db = fh.read()
    pages = pagescan.Pages(db, None)
    free, complete = pagescan.freelist(pages)
    assert complete and len(free) == pages.header.freelist_count > 0
    # The freed leaves still hold the acknowledged rows (secure_delete is OFF), and old copies of
    # live ones that a rebalance moved: only the freelist keeps them out.
    stale = set()
    for pgno in free:
        page = pages.get(pgno)
        if page[0] == pagescan.TABLE_LEAF:
            found = pagescan.leaf_rows(pages, pgno, page, set())
            if found and found[0] == "batches":
                stale.update(r.id for r in found[1])
    assert len({i for i in stale if i <= 100}) >= 50
    scan = pagescan.scan(db)
    ok, lost = recovered(scan, made)
    assert ok == list(range(101, 221)) and lost == []


def test_a_file_truncated_to_half_gives_its_first_half(spool220):
    db, made = spool220
    scan = pagescan.scan(db[: len(db) // 2])
    ok, lost = recovered(scan, made)
    # Measured: 108 of 220 batches (their leaves and overflow pages lie in the first half).
    assert len(ok) >= 100 and ok == list(range(1, len(ok) + 1))
    assert len(lost) <= 2


def test_a_zeroed_middle_gives_the_batches_before_and_after_the_hole(spool220):
    db, made = spool220
    q = len(db) // 4
    scan = pagescan.scan(db[:q] + bytes(2 * q) + db[3 * q:])
    ok, lost = recovered(scan, made)
    # Measured: 105 of 220 (50 before the hole, 55 after), 1 whose overflow fell into it.
    assert len(ok) >= 100
    assert sum(i <= 60 for i in ok) >= 45 and sum(i >= 160 for i in ok) >= 50
    assert 1 <= len(lost) <= 3  # cells left on a leaf before the hole, blobs inside it: counted


def test_a_garbled_header_falls_back_to_the_spool_page_size(spool220):
    db, made = spool220
    scan = pagescan.scan(b"GARBAGE HEADER!!" + os.urandom(84) + db[100:])
    ok, lost = recovered(scan, made)
    assert len(ok) == 220 and not lost
    assert not scan.freelist_complete  # its trunk was in the header: unknown now


def test_committed_wal_frames_are_laid_over_and_a_torn_tail_costs_only_itself(tmp_path):
    path = str(tmp_path / "live.db")
    sp = Spool.open(path, CFG)
    gen = BatchGen(seed=9)
    made = {}
    for k in range(40):
        b = gen.batch()
        sp.append(b)
        made[b.wall_ms] = tuple(b.resolved())
        if k % 10 == 9:
            sp.flush()  # one transaction (commit frame) per 10 batches, left in the WAL
    copy = str(tmp_path / "copy.db")
    shutil.copyfile(path, copy)
    shutil.copyfile(path + "-wal", copy + "-wal")
    sp.close()
    with open(copy + "-wal", "rb") as fh:
        wal = fh.read()
    with open(copy, "rb") as fh:
        db = fh.read()
    assert len(wal) > 10 * 512
    ok, _ = recovered(pagescan.scan_file(copy), made)
    assert ok == list(range(1, 41)) and ok == sorted(sqlite_rows(copy))
    assert len(recovered(pagescan.scan(db), made)[0]) < 40  # the file alone is older
    # Cut the WAL inside its last transaction: that transaction is gone, the earlier ones stay,
    # as SQLite itself reads it.
    torn = wal[:len(wal) - 700]
    ok, _ = recovered(pagescan.scan(db, torn), made)
    assert ok == list(range(1, 31))
    with open(copy + "-wal", "wb") as fh:
        fh.write(torn)
    assert sorted(sqlite_rows(copy)) == ok
    # Frames of another WAL generation (other salts) are not this file's.
    stale = bytearray(wal)
    stale[16:20] = bytes(4)
    assert len(recovered(pagescan.scan(db, bytes(stale)), made)[0]) < 40


def test_salvage_merges_the_scan_oldest_first_with_progress_parking_and_counts(tmp_path):
    path = str(tmp_path / "metrics.db")
    sp = Spool.open(path, CFG)
    gen = BatchGen(seed=5)
    made = []
    for _ in range(220):
        b = gen.batch()
        sp.append(b)
        made.append(tuple(b.resolved()))
    sp.flush()
    sp.ack(sp.take_oldest(450))  # batch 1 delivered, 150 samples of batch 2
    sp.drop(sp.take_oldest(10), "rejected_400")  # 10 more of batch 2, counted
    sp.park([3, 4], "rejected_400")
    sp.close()
    intact = pagescan.scan_file(path)
    assert intact.parked == {3: "rejected_400", 4: "rejected_400"} and intact.dropped == {"rejected_400": 10}
    assert intact.batches[2][0].done == 160 and 1 not in intact.batches
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # the b-tree's interior pages: SQLite reads no batch
        fh.seek(size // 4)
        fh.write(bytes(size // 2))
    rep = salvage.Salvage()
    got = list(salvage.salvage(path, rep))
    walls = [b.wall_ms for b, _ in got]
    assert walls == sorted(set(walls)) and len(walls) == rep.batches >= 80
    ids = [(w - made[0][0].ts_ms) // 10_000 + 1 for w in walls]
    for i, (b, reason) in zip(ids, got, strict=True):
        assert b.samples == made[i - 1][160 if i == 2 else 0:]  # progress kept: only the rest is sent
        assert reason == ("rejected_400" if i in (3, 4) else None)
        assert b.boot_id == gen.boot_id
    assert ids[:3] == [2, 3, 4] and rep.samples == sum(len(b.samples) for b, _ in got)
    # Rows whose leaf survived but whose blob ran into the hole: counted, whole (none was begun).
    assert rep.lost_batches >= 1 and rep.lost_samples == 300 * rep.lost_batches
    assert rep.dropped == {"rejected_400": 10} and f"{rep.batches} batches read from the raw pages" in rep.scan


def test_a_lost_freelist_is_reported_since_freed_leaves_then_read_as_live(tmp_path):
    # The known limit: freed leaves keep their rows, and only the freelist tells them apart.
    path = str(tmp_path / "metrics.db")
    made = build(path, 220, ack_oldest=100)
    with open(path, "rb") as fh:
        pages = pagescan.Pages(fh.read(), None)
    trunks, trunk = [], pages.header.freelist_trunk
    while trunk:
        trunks.append(trunk)
        trunk = int.from_bytes(pages.get(trunk)[:4], "big")
    with open(path, "r+b") as fh:
        for pgno in [*trunks, 3]:  # page 3: the batches table's root, so SQLite has no way in
            fh.seek((pgno - 1) * 512)
            fh.write(bytes(512))
    rep = salvage.Salvage()
    got = list(salvage.salvage(path, rep))
    assert "freelist was unreadable: some may have been acknowledged already" in rep.scan
    walls = [b.wall_ms for b, _ in got]
    assert len(walls) == len(set(walls)) and all(b.samples == made[b.wall_ms] for b, _ in got)
    last_acked = sorted(made)[99]
    assert any(w <= last_acked for w in walls)  # acknowledged batches came back


def _damage(db: bytes, r: random.Random) -> bytes:
    out = bytearray(db)
    for _ in range(r.randint(1, 6)):
        at, n = r.randrange(len(out)), r.choice((1, 4, 37, 512, 1500, 5000))
        fill = bytes(n) if r.random() < 0.3 else r.randbytes(n)
        out[at:at + n] = fill[: len(out) - at]
    if r.random() < 0.3:
        del out[r.randrange(len(out)):]
    return bytes(out)


def test_random_damage_never_raises_and_never_invents_samples(tmp_path):
    path = str(tmp_path / "metrics.db")
    made = build(path, 24, ack_oldest=4, seed=12)
    with open(path, "rb") as fh:
        db = fh.read()
    # Small columns have no checksum (in SQLite either): a garbled timestamp could still decode.
    # The samples themselves are zlib'd with a checksum, so names, labels and values never are.
    appended = {tuple((s.name, s.labels, s.value) for s in v) for v in made.values()}
    decoded = 0
    for seed in range(300):
        scan = pagescan.scan(_damage(db, random.Random(seed)))
        for rows in scan.batches.values():
            for row in rows:
                samples = decode(scan, row)
                if samples is not None:
                    decoded += 1
                    assert tuple((s.name, s.labels, s.value) for s in samples) in appended, seed
    assert decoded > 300 * 10  # the damage leaves most batches readable: the check had work
