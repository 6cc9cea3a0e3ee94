"""The spool against real SQLite files (tmp_path, never :memory:: WAL behaves differently)."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.samples import Batch, Sample, sample
from belabox_metrics.spool.schema import APPLICATION_ID, SCHEMA_VERSION
from belabox_metrics.spool.store import Spool, StoreError
from tests.support.spoolgen import BatchGen

CFG = StorageConfig(commit_interval=10.0)


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "spool" / "metrics.db")


def open_spool(path, cfg=CFG, **kw) -> Spool:
    return Spool.open(path, cfg, **kw)


def small_batch(i: int, n: int = 10, boot: str = "boot-a", synced: bool = True) -> Batch:
    """n samples whose values encode (batch, index) so tests can follow every sample."""
    samples = tuple(sample("test_value", i * 1000 + k, {"k": k}) for k in range(n))
    return Batch(samples, 1_750_000_000_000 + i * 10_000, boot, i * 10**10, synced)


def pending_values(spool: Spool) -> list[float]:
    return [s.value for sl in spool.iter_pending(include_parked=True) for s in sl.samples]


def rows_on_disk(path: str, tmp_path) -> int:
    """Rows a restart would find: a copy of the files as they are now, opened afresh (the spool
    holds its file exclusively, so a second connection cannot look directly)."""
    copy = tmp_path / "copy.db"
    for suffix in ("", "-wal"):
        if os.path.exists(path + suffix):
            shutil.copyfile(path + suffix, str(copy) + suffix)
    conn = sqlite3.connect(copy)
    try:
        return conn.execute("SELECT count(*) FROM batches").fetchone()[0]
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(copy) + suffix):
                os.unlink(str(copy) + suffix)


# --- format and round trip ----------------------------------------------------------------

def test_round_trip_keeps_names_labels_values_and_times(db):
    odd = (
        sample("node_cpu_seconds_total", 1234.56, {"cpu": 0, "mode": "idle"}),
        sample("node_filesystem_avail_bytes", 2.0**53, {"mountpoint": "/data", "device": "/dev/sda1"}),
        sample("weird_values", -0.0, {"label": "ünïcödé \"quoted\"\n,comma"}),
        sample("weird_values", float("inf"), {"label": "inf"}),
        sample("weird_values", float("nan"), {"label": "nan"}),
        sample("tiny", 5e-324),
        sample("own_time", 7.0, ts_ms=1_750_000_000_000 - 1234),
        sample("own_time", 8.0, ts_ms=1_750_000_000_000 + 99),
    )
    batch = Batch(odd, 1_750_000_000_000, "boot-x", 123_456_789, False)
    sp = open_spool(db)
    sp.append(batch)
    sp.flush()
    sp.close()
    sp = open_spool(db)
    (sl,) = sp.take_oldest(100)
    assert (sl.start, sl.end, sl.wall_ms, sl.boot_id, sl.boottime_ns, sl.clock_synced) == \
        (0, len(odd), 1_750_000_000_000, "boot-x", 123_456_789, False)
    assert sl.nbytes > 0
    for want, got in zip(batch.resolved(), sl.samples, strict=True):
        assert (got.name, got.labels, got.ts_ms) == (want.name, want.labels, want.ts_ms)
        assert got.value == want.value or (math.isnan(got.value) and math.isnan(want.value))
        assert math.copysign(1, got.value) == math.copysign(1, want.value)
    sp.close()


def test_rows_are_compact_and_share_a_dictionary(db):
    gen = BatchGen()
    sp = open_spool(db)
    for _ in range(20):
        sp.append(gen.batch())
    sp.flush()
    st = sp.stats()
    per_batch = st.pending_bytes / st.pending_batches
    # 300 series: 16 KB of series JSON, 3.3 KB zlib'd alone; against the dictionary about 1.5 KB.
    assert per_batch < 2000, per_batch
    sp.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM dicts").fetchone()[0] == 1
    conn.close()


def test_pragmas_and_schema_version(db):
    open_spool(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 512
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    every = list(range(1, SCHEMA_VERSION + 1))
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == every
    conn.close()
    open_spool(db).close()  # migrating again is a no-op
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == every
    conn.close()


def test_a_version_1_spool_is_migrated_with_its_data(db):
    gen = BatchGen()
    sp = open_spool(db)
    made = [gen.batch() for _ in range(5)]
    for b in made:
        sp.append(b)
    sp.close()
    # Turn it back into what version 1 wrote: one dictionary copy, no CRC on it.
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE dict_copies")
    conn.execute("DELETE FROM schema_version WHERE version > 1")
    (stored,) = conn.execute("SELECT data FROM dicts").fetchone()
    conn.execute("UPDATE dicts SET data = ?", (zlib.decompress(stored[5:]),))
    conn.commit()
    conn.close()
    sp = open_spool(db)
    assert [sl.samples for sl in sp.iter_pending()] == [tuple(b.resolved()) for b in made]
    sp.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM dict_copies").fetchone()[0] == 1
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_damaged_dictionary_is_read_from_its_copy(db):
    gen = BatchGen()
    sp = open_spool(db)
    made = [gen.batch() for _ in range(5)]
    for b in made:
        sp.append(b)
    sp.close()
    conn = sqlite3.connect(db)
    (data,) = conn.execute("SELECT data FROM dicts").fetchone()
    conn.execute("UPDATE dicts SET data = ?", (data[:100] + bytes([data[100] ^ 1]) + data[101:],))  # one bit
    conn.commit()
    conn.close()
    sp = open_spool(db)
    assert [sl.samples for sl in sp.iter_pending()] == [tuple(b.resolved()) for b in made]
    sp.append(gen.batch())  # and new rows still use it
    sp.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE dict_copies SET data = x'00'")
    conn.commit()
    conn.close()
    sp = open_spool(db)  # both copies gone: its rows are dropped, counted, and a new one starts
    assert sp.take_oldest(10_000) == []
    assert sp.stats().dropped == {"corrupt": 6 * 300}
    sp.append(gen.batch())
    sp.flush()
    assert len(sp.take_oldest(10_000)[0].samples) == 300
    sp.close()


# --- group commit -----------------------------------------------------------------------------

def test_group_commit_writes_nothing_before_the_interval(db, tmp_path):
    clock = Clock()
    sp = open_spool(db, clock=clock)
    sizes = (sp.stats().db_size_bytes, sp.stats().wal_size_bytes)
    for i in range(3):
        sp.append(small_batch(i))
    assert sp.maybe_commit(clock.t + 9.9) == 0
    assert rows_on_disk(db, tmp_path) == 0
    assert (sp.stats().db_size_bytes, sp.stats().wal_size_bytes) == sizes
    # Held in memory, and pending all the same: they are not on the server.
    assert (sp.stats().buffered_batches, sp.stats().pending_batches) == (3, 3)
    assert sp.maybe_commit(clock.t + 10.0) == 3
    assert rows_on_disk(db, tmp_path) == 3
    clock.t += 10.0
    sp.append(small_batch(3))
    assert sp.maybe_commit(clock.t + 5.0) == 0  # each batch waits its own interval
    assert sp.flush() == 1
    assert rows_on_disk(db, tmp_path) == 4
    assert sp.stats().pending_samples == 40
    sp.close()


def test_close_flushes_the_buffer(db, tmp_path):
    sp = open_spool(db)
    sp.append(small_batch(1))
    sp.close()
    sp.close()  # twice is fine
    assert rows_on_disk(db, tmp_path) == 1


# --- the two lanes --------------------------------------------------------------------------

def test_live_lane_newest_first_backlog_oldest_first(db):
    sp = open_spool(db)
    for i in range(1, 6):
        sp.append(small_batch(i))
    sp.flush()
    newest = sp.take_newest(25)
    assert [(s.wall_ms % 100_000 // 10_000, s.start, s.end) for s in newest] == [(5, 0, 10), (4, 0, 10), (3, 0, 5)]
    oldest = sp.take_oldest(15)
    assert [(s.batch_id, s.start, s.end) for s in oldest] == [(1, 0, 10), (2, 0, 5)]
    assert [s.samples[0].value for s in oldest] == [1000.0, 2000.0]
    excl = sp.take_oldest(15, exclude_ids={1, 3})
    assert [(s.batch_id, s.start, s.end) for s in excl] == [(2, 0, 10), (4, 0, 5)]
    # newer_than_ms: only batches collected after it
    recent = sp.take_newest(100, newer_than_ms=small_batch(3).wall_ms)
    assert [s.batch_id for s in recent] == [5, 4]
    assert sp.take_newest(100, newer_than_ms=small_batch(5).wall_ms) == []
    sp.close()


def test_takes_skip_parked_batches_and_stream_past_many_rows(db):
    sp = open_spool(db)
    for i in range(1, 201):
        sp.append(small_batch(i, n=3))
    sp.flush()
    sp.park(range(1, 150), "untrusted_clock")
    got = sp.take_oldest(6)
    assert [s.batch_id for s in got] == [150, 151]
    assert sum(len(s.samples) for s in sp.take_oldest(10_000)) == 51 * 3
    sp.close()


# --- progress ---------------------------------------------------------------------------------

def test_partial_ack_survives_a_restart(db, tmp_path):
    sp = open_spool(db)
    sp.append(small_batch(1, n=10))
    sp.append(small_batch(2, n=10))
    sp.flush()
    first = sp.take_oldest(5)
    assert [(s.batch_id, s.start, s.end) for s in first] == [(1, 0, 5)]
    sp.ack(first)
    sp.ack(first)  # a repeated ack changes nothing
    assert sp.stats().pending_samples == 15
    sp.close()

    sp = open_spool(db)
    assert sp.stats().pending_samples == 15
    rest = sp.take_oldest(100)
    assert [(s.batch_id, s.start, s.end) for s in rest] == [(1, 5, 10), (2, 0, 10)]
    assert [s.value for s in rest[0].samples] == [1005.0, 1006.0, 1007.0, 1008.0, 1009.0]
    sp.ack(rest[:1])
    assert rows_on_disk(db, tmp_path) == 1  # finished rows are deleted
    sp.ack(first)  # a stale slice of a deleted batch is ignored
    assert sp.stats().pending_samples == 10
    sp.close()


def test_ack_out_of_order_does_not_skip_unacknowledged_samples(db):
    sp = open_spool(db)
    sp.append(small_batch(1, n=10))
    sp.flush()
    (whole,) = sp.take_oldest(10)
    tail = replace(whole, start=5, samples=whole.samples[5:])
    sp.ack([tail])
    assert sp.stats().pending_samples == 10
    sp.ack([replace(whole, end=5, samples=whole.samples[:5]), tail])  # in order: both count
    assert sp.stats().pending_samples == 0
    assert sp.stats().pending_batches == 0
    sp.close()


def test_drop_is_counted_and_persists(db):
    sm = SelfMetrics()
    sp = open_spool(db, selfmetrics=sm)
    for i in range(3):
        sp.append(small_batch(i))
    sp.flush()
    sp.drop(sp.take_oldest(15), "rejected_400")
    sp.drop(sp.take_oldest(1), "invalid")
    st = sp.stats()
    assert st.dropped == {"rejected_400": 15, "invalid": 1}
    assert st.pending_samples == 14
    assert sm.value("metrics_collector_dropped_samples_total", {"reason": "rejected_400"}) == 15
    sp.close()
    sp = open_spool(db)
    assert sp.stats().dropped == {"rejected_400": 15, "invalid": 1}
    assert [s.batch_id for s in sp.take_oldest(100)] == [2, 3]
    sp.close()


def test_damaged_row_is_dropped_as_corrupt_not_fatal(db):
    sp = open_spool(db)
    for i in range(3):
        sp.append(small_batch(i))
    sp.close()
    side = sqlite3.connect(db)
    side.execute("UPDATE batches SET data = x'01789c0000' WHERE id = 2")  # valid SQLite, bad row
    side.commit()
    side.close()
    sp = open_spool(db)
    got = sp.take_oldest(100)
    assert [s.batch_id for s in got] == [1, 3]
    assert sp.stats().dropped == {"corrupt": 10}
    assert sp.stats().pending_samples == 20
    sp.close()


# --- parking ------------------------------------------------------------------------------------

def test_park_unpark_and_expire(db):
    sm = SelfMetrics()
    sp = open_spool(db, selfmetrics=sm)
    sp.append(small_batch(1, boot="old-boot", synced=False))
    sp.append(small_batch(2, boot="old-boot", synced=False))
    sp.append(small_batch(3))
    sp.flush()
    sp.park([1, 2], "untrusted_clock", now_wall_ms=1_000_000)
    st = sp.stats()
    assert (st.parked_batches, st.parked_samples, st.pending_batches, st.pending_samples) == (2, 20, 1, 10)
    assert st.oldest_wall_ms == small_batch(3).wall_ms
    assert sp.parked() == [(1, "old-boot", small_batch(1).wall_ms, 10), (2, "old-boot", small_batch(2).wall_ms, 10)]
    assert [s.batch_id for s in sp.take_oldest(100)] == [3]
    assert [s.batch_id for s in sp.take_newest(100)] == [3]

    sp.close()
    sp = open_spool(db, selfmetrics=sm)  # parking is stored
    assert sp.stats().parked_samples == 20
    sp.unpark([2])
    (b2, b3) = sp.take_oldest(100)
    assert (b2.batch_id, b2.wall_ms) == (2, small_batch(2).wall_ms)

    day = 86_400_000
    assert sp.expire_parked(1_000_000 + day, 2 * 86400) == 0
    assert sp.expire_parked(1_000_000 + 2 * day, 2 * 86400) == 10
    st = sp.stats()
    assert (st.parked_batches, st.dropped) == (0, {"untrusted_clock": 10})
    assert sm.value("metrics_collector_dropped_samples_total", {"reason": "untrusted_clock"}) == 10
    sp.close()


def test_batch_parked_under_a_clock_running_ahead_still_expires(db):
    sp = open_spool(db)
    sp.append(small_batch(1, synced=False))
    sp.flush()
    sp.park([1], "untrusted_clock", now_wall_ms=4_000_000_000_000)  # year 2096
    now = 1_750_000_000_000
    assert sp.expire_parked(now, 3600) == 0  # its age starts now ...
    assert sp.expire_parked(now + 3_600_001, 3600) == 10  # ... and runs out
    sp.close()


# --- size cap ---------------------------------------------------------------------------------

def test_size_cap_keeps_file_and_wal_under_the_cap_and_counts_exactly(db):
    sm = SelfMetrics()
    cfg = StorageConfig(max_size_mb=1, commit_interval=10.0)
    clock = Clock()
    sp = open_spool(db, cfg, selfmetrics=sm, clock=clock)
    gen = BatchGen()
    appended = acked = 0
    cap = 1 << 20
    for i in range(1500):  # about 1.7 MB of rows
        b = gen.batch()
        sp.append(b)
        appended += len(b.samples)
        assert sp.maybe_commit(clock.t + (i + 1) * 10) == 1
        if i % 25 == 0:
            live = sp.take_newest(300)  # an occasional upload, as in life
            sp.ack(live)
            acked += sum(len(s.samples) for s in live)
        st = sp.stats()
        assert st.db_size_bytes + st.wal_size_bytes <= cap, (i, st)
    sp.flush()
    st = sp.stats()
    assert acked == 60 * 300
    assert st.dropped["size_cap"] > 0
    assert st.dropped["size_cap"] + st.pending_samples + acked == appended
    assert sm.value("metrics_collector_dropped_samples_total", {"reason": "size_cap"}) == st.dropped["size_cap"]
    # What is left is the newest data, and every sample in it is intact.
    values = [s for sl in sp.iter_pending() for s in sl.samples]
    assert len(values) == st.pending_samples
    assert st.newest_wall_ms == b.wall_ms
    sp.close()
    assert sqlite3.connect(db).execute("PRAGMA max_page_count").fetchone()[0] > 0


def test_hard_stop_at_max_page_count_drops_oldest_and_retries(db, monkeypatch):
    """Blind the free-page estimate so inserts run into SQLITE_FULL from max_page_count."""
    from belabox_metrics.spool import rows as store_rows
    monkeypatch.setattr(store_rows.RowWriter, "free_pages", lambda self: 10**9)
    cfg = StorageConfig(max_size_mb=1)
    sp = open_spool(db, cfg)
    gen = BatchGen()
    total = 0
    for _ in range(60):
        for _ in range(15):
            b = gen.batch()
            sp.append(b)
            total += len(b.samples)
        sp.flush()
        st = sp.stats()
        assert st.db_size_bytes <= (1 << 20)
    st = sp.stats()
    assert st.dropped["size_cap"] + st.pending_samples == total
    sp.close()


def test_a_batch_larger_than_the_whole_cap_is_dropped_and_counted(db):
    cfg = StorageConfig(max_size_mb=1)
    sp = open_spool(db, cfg)
    import random
    r = random.Random(5)
    big = tuple(sample("noise", r.random(), {"i": f"{r.getrandbits(64):x}"}) for _ in range(60_000))
    sp.append(Batch(big, 1_750_000_000_000, "b", 0, True))
    sp.append(small_batch(1))
    sp.flush()
    st = sp.stats()
    assert st.dropped == {"size_cap": 60_000}
    assert st.pending_samples == 10
    sp.close()


def test_lowering_the_cap_shrinks_the_file_at_open(db):
    sp = open_spool(db, StorageConfig(max_size_mb=4))
    gen = BatchGen()
    for _ in range(1500):
        sp.append(gen.batch())
    sp.flush()
    total = sp.stats().pending_samples
    sp.close()
    sp = open_spool(db, StorageConfig(max_size_mb=1))
    st = sp.stats()
    assert st.db_size_bytes + st.wal_size_bytes <= 1 << 20
    assert st.pending_samples + st.dropped["size_cap"] == total
    sp.close()


# --- WAL upkeep -----------------------------------------------------------------------------------

def test_maintain_checkpoints_on_interval_and_size(db):
    clock = Clock()
    cfg = StorageConfig(wal_checkpoint_interval=3600.0)
    sp = open_spool(db, cfg, clock=clock)
    gen = BatchGen()
    for _ in range(30):
        sp.append(gen.batch())
    sp.flush()
    before = sp.stats()
    assert before.wal_size_bytes > 30 * 1000 and before.db_size_bytes < 10_000  # all still in the WAL
    sp.maintain(clock.t + 10)
    assert sp.stats().db_size_bytes == before.db_size_bytes  # neither due nor big
    sp.maintain(clock.t + 3600)
    # Copied into the database; the WAL file is kept for reuse, so the next commits do not grow it.
    assert sp.stats().db_size_bytes > 30 * 1000
    sp.append(gen.batch())
    sp.flush()
    assert sp.stats().wal_size_bytes == before.wal_size_bytes
    sp.close()
    # Size trigger: SQLite's own checkpoint runs after each commit past ~32 KiB here, but the
    # WAL file keeps the size of the largest transaction (a long outage's buffer) until then.
    sp = open_spool(db, StorageConfig(max_size_mb=1, wal_checkpoint_size_mb=64), clock=clock)
    for _ in range(100):
        sp.append(gen.batch())
    sp.flush()
    assert sp.stats().wal_size_bytes > 64 << 10
    sp.maintain(clock.t + 1)
    assert sp.stats().wal_size_bytes == 0
    sp.close()


def test_a_second_opener_is_refused_with_one_line(db, monkeypatch):
    from belabox_metrics.spool import schema as store_schema
    monkeypatch.setattr(store_schema, "BUSY_TIMEOUT_S", 0.05)
    sp = open_spool(db)
    with pytest.raises(StoreError, match="in use by another process"):
        open_spool(db)
    sp.close()
    open_spool(db).close()


def test_vacuum_shrinks_after_a_drain(db):
    sp = open_spool(db)
    gen = BatchGen()
    for _ in range(200):
        sp.append(gen.batch())
    sp.flush()
    sp.maintain(1e9)
    full = sp.stats().db_size_bytes
    while sl := sp.take_oldest(5000):
        sp.ack(sl)
    sp.vacuum()
    # What stays: the schema and the current dictionary's two copies (about 40 KB).
    assert sp.stats().db_size_bytes < 64 << 10 < full
    sp.close()


# --- threads --------------------------------------------------------------------------------------

def test_three_threads_lose_and_duplicate_nothing(db):
    sp = open_spool(db, StorageConfig(commit_interval=2.0, wal_checkpoint_interval=50.0), clock=Clock(0.0))
    n_batches, acked, errors = 400, [], []
    commits = []
    stop = threading.Event()

    def agent():
        for i in range(n_batches):
            sp.append(small_batch(i, n=7))
            commits.append(sp.maybe_commit(float(i)))
            sp.maintain(float(i))
        sp.flush()

    def uploader():
        while not stop.is_set() or sp.stats().pending_samples:
            live = sp.take_newest(20)
            backlog = sp.take_oldest(30, exclude_ids={s.batch_id for s in live})
            for lane in (live, backlog):
                acked.extend(s.value for sl in lane for s in sl.samples)
                sp.ack(lane)

    def reader():
        while not stop.is_set():
            st = sp.stats()
            if st.pending_samples < 0 or st.pending_bytes < 0:
                errors.append(st)

    threads = [threading.Thread(target=f) for f in (uploader, reader)]
    for t in threads:
        t.start()
    agent()
    stop.set()
    for t in threads:
        t.join(30)
    expected = sorted(float(i * 1000 + k) for i in range(n_batches) for k in range(7))
    assert not errors
    assert sum(1 for c in commits if c) >= n_batches // 2 - 2  # a commit every other batch
    assert sorted(acked) == expected  # each exactly once: a take after an ack never repeats it
    assert sp.stats().pending_samples == 0
    sp.close()


# --- bad input --------------------------------------------------------------------------------------

def test_a_malformed_batch_is_dropped_as_invalid_without_blocking_the_rest(db):
    sp = open_spool(db)
    sp.append(small_batch(1))
    sp.append(Batch((Sample("bad_value", (), "not a number"),), 1_750_000_000_000, "b", 0, True))
    sp.append(Batch((sample("bad_time", 1.0),), 1 << 64, "b", 0, True))
    sp.append(Batch((Sample("bad_label", (("k", 5),), 1.0),), 1_750_000_000_000, "b", 0, True))
    sp.append(small_batch(2))
    assert sp.flush() == 5
    st = sp.stats()
    assert (st.pending_samples, st.dropped) == (20, {"invalid": 3})
    sp.close()


def test_undecodable_names_survive_the_round_trip(db):
    odd = "eth\udcff0"  # what surrogateescape makes of a non-UTF-8 interface name
    sp = open_spool(db)
    sp.append(Batch((sample("node_network_up", 1.0, {"device": odd}),), 1_750_000_000_000, "b", 0, True))
    sp.close()
    sp = open_spool(db)
    assert sp.take_oldest(1)[0].samples[0].labels == (("device", odd),)
    sp.close()


def test_a_first_open_that_died_before_migrating_is_not_taken_for_foreign(db, tmp_path):
    os.makedirs(os.path.dirname(db))
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
    conn.commit()
    conn.close()
    sp = open_spool(db)
    assert sp.open_report.quarantined is None
    sp.close()


def test_unusable_paths_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the spool directory"):
        open_spool(str(tmp_path / "file" / "sub" / "metrics.db"))
    (tmp_path / "adir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the spool|cannot use the spool") as e:
        open_spool(str(tmp_path / "adir.db"))
    assert "\n" not in str(e.value)


def test_read_only_view_sees_the_spool_and_changes_nothing(db, monkeypatch):
    from belabox_metrics.spool import schema as store_schema
    sp = open_spool(db)
    for i in range(3):
        sp.append(small_batch(i))
    sp.flush()
    sp.drop(sp.take_oldest(1), "invalid")
    sp.close()
    before = Path(db).read_bytes()
    view = Spool.open_readonly(db, CFG)
    st = view.stats()
    assert (st.pending_samples, st.dropped) == (29, {"invalid": 1})
    assert sum(len(s.samples) for s in view.iter_pending()) == 29
    view.close()
    view.close()
    # SQLite leaves an empty -wal (and a -shm) behind a read-only WAL reader; the data is untouched.
    assert Path(db).read_bytes() == before and os.path.getsize(db + "-wal") == 0
    monkeypatch.setattr(store_schema, "BUSY_TIMEOUT_S", 0.05)
    from belabox_metrics.spool import opening
    monkeypatch.setattr(opening, "BUSY_TIMEOUT_S", 0.05)
    sp = open_spool(db)
    with pytest.raises(StoreError, match="locked"):
        Spool.open_readonly(db, CFG)
    sp.close()
    with pytest.raises(StoreError, match="no spool file"):
        Spool.open_readonly(db + ".nope", CFG)
