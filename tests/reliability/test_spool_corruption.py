"""A damaged spool file: moved aside, salvaged row by row, and a fresh spool takes over."""

from __future__ import annotations

import glob
import os
import random
import sqlite3

import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.spool.schema import SCHEMA_VERSION
from belabox_metrics.spool.store import Spool
from tests.support.spoolgen import BatchGen

CFG = StorageConfig()


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "metrics.db")


def fill(path: str, batches: int = 300) -> dict[int, tuple]:
    """A closed (fully checkpointed) spool; returns wall_ms -> the batch's resolved samples."""
    sp = Spool.open(path, CFG)
    gen = BatchGen(seed=11)
    made = {}
    for _ in range(batches):
        b = gen.batch()
        sp.append(b)
        made[b.wall_ms] = tuple(b.resolved())
    sp.close()
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    return made


def garble(path: str, offset: int, length: int, seed: int = 1) -> None:
    r = random.Random(seed)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(r.getrandbits(8) for _ in range(length)))


def test_garbage_in_the_middle_is_quarantined_and_readable_batches_salvaged(db):
    made = fill(db)
    size = os.path.getsize(db)
    garble(db, size // 2, 16 * 1024)
    sm = SelfMetrics()
    sp = Spool.open(db, CFG, selfmetrics=sm)
    rep = sp.open_report
    assert rep.quarantined is not None and os.path.basename(rep.quarantined).startswith("metrics.db.corrupt-")
    assert os.path.getsize(rep.quarantined) == size  # the evidence is kept as it was
    assert 0 < rep.salvaged_batches < len(made)
    assert "integrity check failed" in rep.message and "salvaged" in rep.message
    st = sp.stats()
    assert (st.pending_batches, st.pending_samples) == (rep.salvaged_batches, rep.salvaged_samples)
    # Every salvaged batch is exactly what was stored: same samples, values and times.
    seen = 0
    for sl in sp.iter_pending():
        assert sl.samples == made[sl.wall_ms]
        seen += 1
    assert seen == rep.salvaged_batches
    lost = len(made) * 300 - rep.salvaged_samples
    assert st.dropped.get("corrupt", 0) <= lost  # what could be counted was counted
    assert sm.value("metrics_collector_dropped_samples_total", {"reason": "corrupt"}) == \
        st.dropped.get("corrupt", 0)
    # The fresh spool works and survives a restart.
    gen = BatchGen(seed=99)
    sp.append(gen.batch())
    sp.flush()
    assert sp.take_newest(300)[0].wall_ms == gen.batch().wall_ms - gen.interval_ms
    sp.close()
    again = Spool.open(db, CFG)
    assert again.open_report.quarantined is None
    assert again.stats().pending_batches == rep.salvaged_batches + 1
    again.close()


@pytest.mark.parametrize("length", [100, 512], ids=["header", "first-page"])
def test_garbage_over_the_header_or_first_page_is_repaired_in_a_copy(db, length):
    # SQLite calls such a file "not a database" although every batch is intact: a copy with the
    # header (and page 1, the schema's root) rebuilt from a fresh spool reads them all back.
    made = fill(db, 20)
    garble(db, 0, length)
    sp = Spool.open(db, CFG)
    rep = sp.open_report
    assert rep.quarantined and "not a database" in rep.message
    with open(rep.quarantined, "rb") as fh:
        assert not fh.read(16).startswith(b"SQLite")  # the evidence stays as found
    assert rep.salvaged_batches == 20, rep.message
    assert "repaired" in rep.message and ("header" in rep.message if length == 100 else "first page" in rep.message)
    assert [sl.samples for sl in sp.iter_pending()] == list(made.values())
    assert not glob.glob(db + "*.repair*")  # the repaired copy is gone
    sp.append(BatchGen().batch())
    sp.flush()
    assert sp.stats().pending_samples == 21 * 300
    sp.close()


def test_a_file_that_is_no_database_at_all(db):
    with open(db, "w") as fh:
        fh.write("this is the agent's config, copied to the wrong place\n" * 100)
    sp = Spool.open(db, CFG)
    assert sp.open_report.quarantined
    with open(sp.open_report.quarantined) as fh:
        assert fh.read().startswith("this is the agent's config")
    assert sp.stats().pending_samples == 0
    sp.close()


def test_a_foreign_sqlite_file_is_moved_aside_not_migrated(db):
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, metric_name TEXT)")
    conn.execute("INSERT INTO metrics VALUES (1, 'cpu.usage')")
    conn.commit()
    conn.close()
    sp = Spool.open(db, CFG)
    assert sp.open_report.quarantined
    assert "not a metrics-collector spool" in sp.open_report.message
    sp.close()
    conn = sqlite3.connect(sp.open_report.quarantined)
    assert conn.execute("SELECT metric_name FROM metrics").fetchone() == ("cpu.usage",)  # untouched
    conn.close()


def test_a_newer_schema_is_moved_aside_and_its_batches_salvaged(db):
    made = fill(db, 10)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    sp = Spool.open(db, CFG)
    assert sp.open_report.quarantined and "newer" in sp.open_report.message
    assert sp.open_report.salvaged_batches == 10
    assert [sl.samples for sl in sp.iter_pending()] == list(made.values())
    sp.close()


def test_salvage_keeps_progress_parking_and_drop_counts(db):
    sp = Spool.open(db, CFG)
    gen = BatchGen(seed=5)
    for _ in range(40):
        sp.append(gen.batch())
    sp.flush()
    sp.ack(sp.take_oldest(450))  # batch 1 done, batch 2 half
    sp.drop(sp.take_oldest(10), "rejected_400")
    sp.park([39, 40], "untrusted_clock")
    sp.close()
    size = os.path.getsize(db)
    garble(db, size // 2, 4096)
    sp = Spool.open(db, CFG)
    st = sp.stats()
    assert st.dropped["rejected_400"] == 10  # history carried over
    first = sp.take_oldest(1)[0]  # batch 1 was acknowledged, 160 samples of batch 2 were done
    assert (first.wall_ms, first.samples[0].name) == (1_750_000_000_000 + 2 * 10_000, gen.series[160][0])
    assert st.parked_batches == 2
    assert {p[2] for p in sp.parked()} == {1_750_000_000_000 + 39 * 10_000, 1_750_000_000_000 + 40 * 10_000}
    sp.close()


def test_only_the_newest_quarantined_copies_are_kept(db):
    for _ in range(4):
        with open(db, "wb") as fh:
            fh.write(os.urandom(4096))
        Spool.open(db, CFG).close()
    copies = [p for p in glob.glob(db + ".corrupt-*") if not p.endswith(("-wal", "-shm"))]
    assert len(copies) == 2


def test_damage_found_by_a_write_while_running_is_moved_aside_and_salvaged_at_once(db):
    # Before, SQLITE_CORRUPT on a commit was named and shown, but repaired only at the next
    # start: until then every commit failed and the held batches waited in memory.
    sm = SelfMetrics()
    sp = Spool.open(db, CFG, selfmetrics=sm)
    gen = BatchGen(seed=3)
    for _ in range(200):
        sp.append(gen.batch())
    sp.flush()
    sp._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    garble(db, os.path.getsize(db) // 2, os.path.getsize(db) // 2)  # the b-tree's later pages
    sp._conn.execute("PRAGMA shrink_memory")  # forget cached pages: the next write reads the damage
    sp.append(gen.batch())
    with pytest.raises(sqlite3.DatabaseError):
        sp.flush()
    assert sp.guard.damaged() and "damaged while running" in sp.guard.fault.message
    assert sp.stats().buffered_batches == 1  # the batch waits in memory, not lost
    sp.maybe_commit(0.0)  # the loop's next tick: moved aside, salvaged, a fresh file in use
    rep = sp.open_report
    assert rep.quarantined and os.path.exists(rep.quarantined) and "damaged while running" in rep.message
    assert sp.guard.fault is None and "damaged while running" in sp.guard.current_notice()
    assert sp.flush() == 1  # the held batch reaches the fresh file
    st = sp.stats()
    assert st.pending_samples == rep.salvaged_samples + 300
    assert sm.value("metrics_collector_dropped_samples_total", {"reason": "corrupt"}) == st.dropped.get("corrupt", 0)
    sp.close()
    again = Spool.open(db, CFG)
    assert again.open_report.quarantined is None and again.stats().pending_samples == st.pending_samples
    again.close()


def test_a_fresh_file_that_cannot_be_made_at_once_is_retried(db, monkeypatch):
    now = [100.0]
    sp = Spool.open(db, CFG, clock=lambda: now[0])
    gen = BatchGen(seed=4)
    for _ in range(100):
        sp.append(gen.batch())
    sp.flush()
    sp._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    garble(db, os.path.getsize(db) // 2, os.path.getsize(db) // 2)
    sp._conn.execute("PRAGMA shrink_memory")
    sp.append(gen.batch())
    with pytest.raises(sqlite3.DatabaseError):
        sp.flush()
    real = Spool._prepare
    calls = []

    def refuse_once(path, budget):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(path, budget)
    monkeypatch.setattr(Spool, "_prepare", staticmethod(refuse_once))
    sp.maybe_commit(now[0])  # moved aside, old connection closed, no fresh file yet
    with pytest.raises(sqlite3.Error):
        sp.flush()  # the closed connection: this fault no longer reads as damage
    now[0] += 10
    sp.maybe_commit(now[0])  # retried all the same
    assert len(calls) == 2 and sp.guard.fault is None
    rep = sp.open_report  # the copy moved aside the first time is the one salvaged
    assert rep.quarantined and rep.salvaged_batches > 0, rep.message
    assert len([p for p in glob.glob(db + ".corrupt-*") if not p.endswith(("-wal", "-shm"))]) == 1
    assert sp.flush() == 1 and sp.stats().pending_samples == rep.salvaged_samples + 300
    sp.close()
