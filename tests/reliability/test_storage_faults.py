"""Storage faults under a running spool, on real filesystems mounted by the test (we are root):
a full disk, the file deleted, damage at start five ways. The agent-level versions (health over
HTTP, the counters in /metrics) are in test_storage_faults_agent.py."""

from __future__ import annotations

import os
import random

import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.health import registry as health
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.spool import store
from belabox_metrics.spool.store import Spool
from tests.support.mounts import tmpfs
from tests.support.spoolgen import BatchGen

DROPPED = "metrics_collector_dropped_samples_total"
CFG = StorageConfig(commit_interval=3600.0)


def fill_disk(directory: str) -> str:
    filler = os.path.join(directory, "filler")
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:  # the last partial block
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def storage_verdict(sp: Spool) -> tuple[str, str]:
    st = sp.stats()
    fault = sp.guard.fault
    status, message, _ = health.storage_health(health.StorageFacts(
        path=st.path, wal_threshold_bytes=4 << 20, commit_error=fault.message if fault else None,
        notice=sp.guard.current_notice(), dropped=st.dropped))
    return status, message


def test_full_disk_is_named_stays_an_error_counts_what_it_costs_and_recovers(tmp_path, monkeypatch):
    # A small buffer bound, so the test reaches "the buffer gives up its oldest" in seconds.
    monkeypatch.setattr(store, "MAX_BUFFER_SAMPLES", 3000)
    mnt = tmp_path / "data"
    with tmpfs(mnt, size="2m"):
        sm = SelfMetrics()
        sp = Spool.open(str(mnt / "metrics.db"), CFG, selfmetrics=sm)
        gen = BatchGen(seed=3)
        appended = 0

        def one() -> None:
            nonlocal appended
            b = gen.batch()
            sp.append(b)
            appended += len(b.samples)

        for _ in range(5):
            one()
        sp.flush()
        filler = fill_disk(str(mnt))
        failures = 0
        for _ in range(40):  # 40 commit attempts while full: never an ok in between
            one()
            try:
                sp.flush()
            except Exception:
                failures += 1
            else:
                continue  # the WAL's already allocated blocks took it: a real success
            status, message = storage_verdict(sp)
            assert status == "error" and "disk full" in message, message
            # A quiet cycle (nothing due) must not read as recovery either.
            assert sp.maybe_commit(0.0) == 0 and storage_verdict(sp)[0] == "error"
        assert failures >= 30  # a few commits may still fit the WAL's blocks
        assert sp.guard.fault.reason == "disk_full"
        lost = sp.stats().dropped.get("disk_full", 0)
        assert lost > 0 and sm.value(DROPPED, {"reason": "disk_full"}) == lost
        os.unlink(filler)
        one()
        assert sp.flush() > 0
        status, message = storage_verdict(sp)
        assert status == "degraded" and "recovered from disk_full" in message
        st = sp.stats()
        # Every sample is either in the spool or counted as dropped, by its reason.
        assert st.pending_samples + lost == appended
        assert st.buffered_samples == 0
        sp.close()


def test_spool_deleted_while_open_is_rebuilt_at_once_with_everything_pending(tmp_path):
    path = str(tmp_path / "metrics.db")
    sm = SelfMetrics()
    sp = Spool.open(path, CFG, selfmetrics=sm)
    gen = BatchGen(seed=4)
    for _ in range(30):
        sp.append(gen.batch())
    sp.flush()
    sp.ack(sp.take_oldest(900))  # 3 batches gone
    in_flight = sp.take_oldest(300)  # taken by the uploader before the deletion
    before = sp.stats()
    old_ino = os.stat(path).st_ino
    for suffix in ("", "-wal"):
        os.unlink(path + suffix)
    sp.append(gen.batch())
    assert sp.maybe_commit(0.0) == 0  # not due, but the check runs every tick
    assert os.path.exists(path) and os.stat(path).st_ino != old_ino
    status, message = storage_verdict(sp)
    assert status == "degraded" and "deleted" in message and "rebuilt" in message
    st = sp.stats()  # pending counts the batch held in memory too
    assert (st.pending_batches - st.buffered_batches, st.pending_samples - st.buffered_samples) == (
        before.pending_batches, before.pending_samples)
    sp.ack(in_flight)  # ids survive the copy
    sp.flush()
    sp.close()
    again = Spool.open(path, CFG)
    assert again.open_report.quarantined is None
    assert again.stats().pending_samples == before.pending_samples - 300 + 300
    assert not again.stats().dropped
    again.close()
    assert sm.value(DROPPED, {"reason": "spool_deleted"}) == 0


def _random(path: str, size: int) -> None:
    with open(path, "r+b") as fh:
        r = random.Random(7)
        for _ in range(40):
            fh.seek(r.randrange(size))
            fh.write(r.randbytes(256))  # seeded: the same damage every run


def _truncated(path: str, size: int) -> None:
    os.truncate(path, size // 2)


def _zeroed(path: str, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(size // 4)
        fh.write(b"\0" * (size // 2))


def _header(path: str, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.write(b"GARBAGE HEADER!!" + os.urandom(84))


def _empty(path: str, size: int) -> None:
    os.truncate(path, 0)


# Batches the raw-page scan (spool/pagescan.py) must give back where SQLite reads none (before it,
# salvage gave 0 for both): the b-tree's interior pages lie in the file's second half. Measured:
# 88 of the 200 pending when truncated to half, 85 (and 1 counted lost) with the middle half zeroed.
AT_LEAST = {"truncated": 80, "zeroed": 80}


@pytest.mark.parametrize("damage", [_random, _truncated, _zeroed, _header, _empty],
                         ids=["random-bytes", "truncated", "zeroed", "garbage-header", "empty"])
def test_damaged_at_start_five_ways_is_reported_counted_and_replaced(tmp_path, damage, caplog):
    path = str(tmp_path / "metrics.db")
    sp = Spool.open(path, CFG)
    gen = BatchGen(seed=6)
    made = {}
    for _ in range(220):
        b = gen.batch()
        sp.append(b)
        made[b.wall_ms] = tuple(b.resolved())
    sp.flush()
    # 20 delivered: their rows are deleted, their leaves freed but not wiped (secure_delete OFF).
    delivered = sp.take_oldest(20 * 300)
    sp.ack(delivered)
    acked = {sl.wall_ms for sl in delivered}
    sp.close()
    size = os.path.getsize(path)
    damage(path, size)
    sm = SelfMetrics()
    caplog.set_level("WARNING")
    sp = Spool.open(path, CFG, selfmetrics=sm)
    status, message = storage_verdict(sp) if damage is _empty else (None, None)
    rep = sp.open_report
    st = sp.stats()
    if damage is _empty:
        assert rep.quarantined is None and "empty" in rep.message
        assert status == "degraded" and "empty (0 bytes)" in message
        assert any("empty file (0 bytes)" in r.getMessage() for r in caplog.records)
    else:
        assert rep.quarantined and os.path.getsize(rep.quarantined) in (size, size // 2)
        # What was salvaged is pending; what was not and could be counted is counted as corrupt.
        assert st.pending_samples == rep.salvaged_samples
        assert sm.value(DROPPED, {"reason": "corrupt"}) == st.dropped.get("corrupt", 0)
        assert rep.salvaged_samples + st.dropped.get("corrupt", 0) <= 200 * 300
        # Exactly what was appended and not yet delivered: no duplicate, nothing acknowledged
        # (unless random bytes hit the freelist, which the report then says).
        salvaged = list(sp.iter_pending())
        walls = [sl.wall_ms for sl in salvaged]
        assert len(walls) == len(set(walls)) == rep.salvaged_batches
        assert not set(walls) & acked or "freelist was unreadable" in rep.message
        assert all(sl.samples == made[sl.wall_ms] for sl in salvaged)
        if damage.__name__.strip("_") in AT_LEAST:
            assert rep.salvaged_batches >= AT_LEAST[damage.__name__.strip("_")], rep.message
            assert "read from the raw pages" in rep.message
        if damage is _header:  # rebuilt in a copy (spool/repair.py): nothing in the file was lost
            assert rep.salvaged_batches == 200 and "repaired (rebuilt its header)" in rep.message
    # The fresh spool takes new batches at once.
    sp.append(gen.batch())
    assert sp.flush() == 1
    sp.close()


def test_deleted_spool_that_cannot_be_rebuilt_stays_an_error_retries_and_counts_at_stop(tmp_path):
    mnt = tmp_path / "data"
    now = [1000.0]
    with tmpfs(mnt, size="2m"):
        sm = SelfMetrics()
        path = str(mnt / "metrics.db")
        sp = Spool.open(path, CFG, selfmetrics=sm, clock=lambda: now[0])
        gen = BatchGen(seed=8)
        for _ in range(10):
            sp.append(gen.batch())
        sp.flush()
        pending = sp.stats().pending_samples
        os.unlink(path)
        filler = fill_disk(str(mnt))  # the deleted inode keeps its blocks: no room for a copy
        sp.append(gen.batch())
        sp.maybe_commit(now[0])
        assert sp.guard.fault is not None and sp.guard.fault.reason == "spool_deleted"
        status, message = storage_verdict(sp)
        assert status == "error" and "cannot rebuild it yet" in message
        now[0] += 1.0  # within the retry interval: not tried again, still an error
        sp.maybe_commit(now[0])
        assert storage_verdict(sp)[0] == "error" and not os.path.exists(path)
        os.unlink(filler)
        now[0] += 10.0  # the next try succeeds and nothing was lost
        sp.maybe_commit(now[0])
        assert os.path.exists(path) and sp.guard.fault is None
        assert sp.stats().pending_samples == pending + sp.stats().buffered_samples  # + the batch held in memory
        # Deleted again and never rebuilt before the stop: what goes with the inode is counted.
        os.unlink(path)
        sp.guard.rebuild_due = lambda: False  # the stop comes before the next try
        sp.close()
        lost = sm.value(DROPPED, {"reason": "spool_deleted"})
        assert lost >= pending
