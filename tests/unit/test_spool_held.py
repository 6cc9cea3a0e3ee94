"""Batches wait in memory: what the server acknowledges in time never reaches the disk, what it
does not is written after commit_interval with its progress, and ids stay the same throughout."""

from __future__ import annotations

import sqlite3

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool.store import Spool
from tests.unit.test_store import Clock, small_batch

CFG = StorageConfig(commit_interval=120.0)


def _rows(db) -> list[tuple[int, int, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, n, done FROM batches ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the agent's exclusive lock: read after close
        return []
    finally:
        conn.close()


def test_acknowledged_in_memory_never_written(tmp_path):
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    for i in range(5):
        sp.append(small_batch(i))
    taken = sp.take_newest(1000)
    assert sorted(s.batch_id for s in taken) == [1, 2, 3, 4, 5]
    assert all(x.ts_ms == s.wall_ms for s in taken for x in s.samples)  # resolved, as rows are
    assert sp.stats().pending_samples == 50
    sp.ack(taken)
    assert sp.stats().pending_samples == 0 and sp.stats().buffered_batches == 0
    assert sp.maybe_commit(clock.t + 1000) == 0 and sp.flush() == 0
    sp.close()
    assert _rows(db) == []


def test_unacknowledged_batches_are_written_after_the_interval_with_their_progress(tmp_path):
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    sp.append(small_batch(0))
    sp.append(small_batch(1))
    first = sp.take_oldest(4)  # 4 samples of batch 1: an upload cut by batch_size
    assert [(s.batch_id, s.start, s.end) for s in first] == [(1, 0, 4)]
    sp.ack(first)
    assert sp.maybe_commit(clock.t + 119.0) == 0
    assert sp.maybe_commit(clock.t + 120.0) == 2
    assert sp.last_committed_wall_ms == [small_batch(0).wall_ms, small_batch(1).wall_ms]
    rest = sp.take_oldest(100)
    assert [(s.batch_id, s.start, s.end) for s in rest] == [(1, 4, 10), (2, 0, 10)]
    assert [s.samples[0].value for s in rest] == [4, 1000]
    assert sp.stats().pending_samples == 16
    sp.close()
    assert _rows(db) == [(1, 10, 4), (2, 10, 0)]


def test_an_upload_in_flight_across_a_commit_acknowledges_the_written_row(tmp_path):
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    sp.append(small_batch(0))
    in_flight = sp.take_newest(100)
    assert sp.flush() == 1  # written while the request was out
    sp.ack(in_flight)  # the same id: the row goes
    assert sp.stats().pending_samples == 0
    sp.close()
    assert _rows(db) == []


def test_held_and_written_batches_read_in_collection_order(tmp_path):
    clock = Clock()
    sp = Spool.open(str(tmp_path / "metrics.db"), CFG, clock=clock)
    sp.append(small_batch(0))
    sp.flush()
    sp.append(small_batch(1))
    assert [s.batch_id for s in sp.take_oldest(100)] == [1, 2]
    assert [s.batch_id for s in sp.take_newest(100)] == [2, 1]
    assert [s.batch_id for s in sp.take_newest(100, newer_than_ms=small_batch(0).wall_ms)] == [2]
    assert [s.batch_id for s in sp.take_oldest(100, exclude_ids={2})] == [1]
    st = sp.stats()
    assert (st.pending_batches, st.buffered_batches, st.oldest_wall_ms, st.newest_wall_ms) == (
        2, 1, small_batch(0).wall_ms, small_batch(1).wall_ms)
    sp.close()


def test_parking_a_held_batch_writes_it_first_and_drops_are_counted(tmp_path):
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    sp.append(small_batch(0, synced=False))
    sp.append(small_batch(1))
    sp.park([1], "untrusted_clock")
    assert sp.stats().parked_samples == 10
    sp.drop(sp.take_oldest(100), "rejected_400")  # batch 2, still held
    assert sp.stats().dropped == {"rejected_400": 10}
    assert sp.stats().pending_samples == 0
    sp.close()
    assert _rows(db) == [(1, 10, 0)]
    sp = Spool.open(str(db), CFG)
    assert sp.stats().dropped == {"rejected_400": 10}  # kept across restarts
    sp.close()


def _parked_rows(db) -> list[tuple[int, str, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT batch_id, reason, since_ms FROM parked ORDER BY batch_id").fetchall()
    finally:
        conn.close()


def test_a_held_batch_parked_is_written_parked_at_its_commit_not_at_once(tmp_path):
    # Parking wrote held batches at once: with the uplink down and no clock, that was a write
    # every upload cycle, most of what such a box wrote to its card.
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    for i in range(3):
        sp.append(small_batch(i))
    size = db.stat().st_size + (tmp_path / "metrics.db-wal").stat().st_size
    sp.park([1, 2], "clock_unverified", now_wall_ms=5_000)
    assert db.stat().st_size + (tmp_path / "metrics.db-wal").stat().st_size == size
    st = sp.stats()  # counted as parked at once, the same number health and /metrics show
    assert (st.pending_samples, st.parked_samples, st.parked_batches) == (10, 20, 2)
    assert st.parked_by_reason == {"clock_unverified": 20} and st.oldest_parked_wall_ms == small_batch(0).wall_ms
    assert [s.batch_id for s in sp.take_oldest(100)] == [3]  # parked batches are not sent
    assert [p[0] for p in sp.parked()] == [1, 2]
    sp.unpark([2])
    assert sorted(s.batch_id for s in sp.take_oldest(100)) == [2, 3]
    assert sp.maybe_commit(clock.t + 120.0) == 3
    st2 = sp.stats()
    assert (st2.pending_samples, st2.parked_samples, st2.parked_by_reason) == (20, 10, {"clock_unverified": 10})
    assert [p[0] for p in sp.parked()] == [1]
    sp.close()
    assert _parked_rows(db) == [(1, "clock_unverified", 5_000)]  # parked since it was parked


def test_once_the_oldest_is_due_every_held_batch_goes_in_one_write(tmp_path):
    # Writing only the due batches made the window roll: one batch came due every collection
    # and each cost the card a write, whatever commit_interval said.
    clock = Clock()
    sp = Spool.open(str(tmp_path / "metrics.db"), CFG, clock=clock)
    t0 = clock.t
    for i in range(12):  # one batch every 10 s
        clock.t = t0 + 10 * i
        sp.append(small_batch(i))
    assert sp.maybe_commit(t0 + 119.0) == 0
    assert sp.maybe_commit(t0 + 120.0) == 12  # the oldest is due: all twelve at once
    for i in range(12, 24):
        clock.t = t0 + 10 * i
        sp.append(small_batch(i))
        assert sp.maybe_commit(clock.t) == 0  # no write per collection
    assert sp.next_commit_due() == t0 + 120.0 + 120.0
    assert sp.maybe_commit(t0 + 240.0) == 12
    sp.close()


def test_held_batches_without_a_trusted_time_are_parked_by_the_commit_that_writes_them(tmp_path):
    # With the uplink down, the uploader's failure backoff often reaches a batch only after its
    # commit: parking it then cost a second write per cycle (issue 16's uplink-down figure).
    from belabox_metrics.upload.delivery import CLOCK_UNVERIFIED, Delivery
    from belabox_metrics.upload.wire import Encoder
    from tests.unit.test_timekeeping import BOOT_ID, SimClock, make

    procfs = tmp_path / "proc"
    (procfs / "sys/kernel/random").mkdir(parents=True)
    (procfs / "sys/kernel/random/boot_id").write_text(BOOT_ID + "\n")
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    sim = SimClock(wall_at_boot=0.0)  # booted in 1970, no time source yet
    delivery = Delivery(sp, None, None, Encoder("box"), timekeeper=make(str(procfs), sim), wall=sim.wall)
    sp.before_commit = delivery.park_untrusted
    sp.append(small_batch(0, boot=BOOT_ID, synced=True))  # stamped while the kernel was synced
    for i in range(1, 4):
        sp.append(small_batch(i, boot=BOOT_ID, synced=False))
    assert sp.maybe_commit(clock.t + 60.0) == 0 and sp.stats().parked_samples == 0  # not due: untouched
    assert sp.maybe_commit(clock.t + 120.0) == 4
    st = sp.stats()
    assert (st.pending_samples, st.parked_samples, st.parked_by_reason) == (10, 30, {CLOCK_UNVERIFIED: 30})
    assert [s.batch_id for s in sp.take_oldest(100)] == [1]
    sp.close()
    assert [r[:2] for r in _parked_rows(db)] == [(2, CLOCK_UNVERIFIED), (3, CLOCK_UNVERIFIED), (4, CLOCK_UNVERIFIED)]


def test_a_failing_park_check_does_not_stop_the_commit(tmp_path):
    clock = Clock()
    sp = Spool.open(str(tmp_path / "metrics.db"), CFG, clock=clock)
    seen = []

    def broken(slices):
        seen.append([s.batch_id for s in slices])
        raise RuntimeError("timekeeper bug")
    sp.before_commit = broken
    sp.append(small_batch(0))
    sp.append(small_batch(1))
    sp.park([2], "clock_unverified")  # already parked: not offered again
    assert sp.maybe_commit(clock.t + 120.0) == 2
    assert seen == [[1]] and sp.stats().pending_samples == 10
    sp.close()
    assert _rows(tmp_path / "metrics.db") == [(1, 10, 0), (2, 10, 0)]


def test_a_commit_is_one_transaction_with_progress_and_parking(tmp_path):
    # Progress made while held and parking used to follow the insert in transactions of their own:
    # each rewrote the same pages into the WAL, and the card paid for them every commit.
    db = tmp_path / "metrics.db"
    clock = Clock()
    sp = Spool.open(str(db), CFG, clock=clock)
    for i in range(3):
        sp.append(small_batch(i))
    sp.ack([s for s in sp.take_oldest(4) if s.batch_id == 1])  # 4 of batch 1's 10 acknowledged
    sp.park([2], "clock_unverified", now_wall_ms=7_000)
    statements: list[str] = []
    sp._conn.set_trace_callback(statements.append)
    assert sp.maybe_commit(clock.t + 120.0) == 3
    sp._conn.set_trace_callback(None)
    assert [q for q in statements if q.split()[0] in ("BEGIN", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    st = sp.stats()
    assert (st.pending_batches, st.pending_samples, st.parked_batches, st.parked_samples) == (2, 16, 1, 10)
    assert [s.start for s in sp.take_oldest(100)] == [4, 0]  # batch 1 resumes where it stood
    sp.close()
    assert _rows(db) == [(1, 10, 4), (2, 10, 0), (3, 10, 0)]
    assert _parked_rows(db) == [(2, "clock_unverified", 7_000)]
    reopened = Spool.open(str(db), CFG, clock=clock)  # the totals a restart reads agree
    st2 = reopened.stats()
    assert (st2.pending_samples, st2.parked_samples, st2.parked_by_reason) == (16, 10, {"clock_unverified": 10})
    reopened.close()
