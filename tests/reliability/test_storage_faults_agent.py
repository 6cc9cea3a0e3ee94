"""`metrics-collector run` with its data directory on a real, small filesystem that the test
breaks while the agent runs (root: loop-mounted ext4, tmpfs): full, the spool deleted, the
kernel turning the card read-only and the card replaced; read-only from the start; an empty
spool file at start. Health must name the fault for as long as it lasts, collection goes on,
and after recovery every batch the agent ever committed or buffered is in the spool."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import requests

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool.store import Spool
from tests.reliability.test_storage_faults import fill_disk
from tests.support.agent import AgentProcess
from tests.support.mounts import Ext4, ext4, mounted

INTERVAL_S = 0.5
FAULT_S = 6.0  # long enough that a lost stretch shows as a gap many intervals wide


def storage(agent: AgentProcess) -> dict:
    return agent.health()["components"]["storage"]


def hold(agent: AgentProcess, seconds: float, status: str, words: str) -> int:
    """Every /health reading for ``seconds`` has storage ``status`` with ``words`` in its message."""
    readings, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        st = storage(agent)
        assert st["status"] == status and words in st["message"], (readings, st)
        readings += 1
        time.sleep(0.2)
    return readings


def dropped(agent: AgentProcess) -> dict[str, float]:
    text = requests.get(agent.base + "/metrics", timeout=5).text
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'metrics_collector_dropped_samples_total\{reason="([^"]+)"\} (\S+)', text)}


def spooled_wall_ms(path: str) -> list[int]:
    sp = Spool.open_readonly(path, StorageConfig())
    try:
        return sorted(sl.wall_ms for sl in sp.iter_pending(include_parked=True))
    finally:
        sp.close()


def assert_continuous(walls: list[int], committed: list[int], since_ms: int) -> None:
    walls = [w for w in walls if w >= since_ms]
    assert walls, "nothing spooled"
    missing = sorted(set(w for w in committed if w >= since_ms) - set(walls))
    assert not missing, f"committed batches lost: {missing[:10]}"
    gaps = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    # A fault that cost samples leaves a gap of about FAULT_S; scheduling on a loaded box a few
    # intervals at most.
    assert max(gaps) < FAULT_S * 1000 / 2, f"a gap of {max(gaps)} ms in the spooled batches"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_full_deleted_readonly_and_replaced_card_while_running(tmp_path):
    data = tmp_path / "data"
    with ext4(tmp_path / "card.img", data, size_mb=16) as card:
        agent = AgentProcess(tmp_path / "agent", {
            "collection_interval": f"{int(INTERVAL_S * 1000)}ms",
            "storage": {"path": str(data / "metrics.db"), "commit_interval": "1s"}})
        db = str(agent.db_path)
        t0 = int(time.time() * 1000)
        try:
            agent.start(timeout=60)  # inside: a start that times out still gets stopped
            agent.wait_for(lambda: len(agent.committed_wall_ms()) >= 3, what="first commits")
            assert storage(agent)["status"] == "ok"

            # 1. The disk fills: error naming it, for as long as it is full; no flapping to ok.
            filler = fill_disk(str(data))
            agent.wait_for(lambda: storage(agent)["status"] == "error", timeout=15, what="disk full")
            assert hold(agent, FAULT_S, "error", "disk full") >= 10
            assert agent.health()["components"]["collector.cpu"]["status"] == "ok"
            os.unlink(filler)
            agent.wait_for(lambda: storage(agent)["status"] != "error", timeout=15, what="recovery")
            assert "recovered from disk_full" in storage(agent)["message"]

            # 2. The spool is deleted: rebuilt at once, nothing pending lost, and said so.
            ino = os.stat(db).st_ino
            for suffix in ("", "-wal"):
                os.unlink(db + suffix)
            agent.wait_for(lambda: os.path.exists(db) and os.stat(db).st_ino != ino, timeout=10,
                           what="the spool rebuilt")
            agent.wait_for(lambda: "deleted" in storage(agent)["message"], timeout=10, what="notice")
            assert "spool file deleted while running: rebuilt" in agent.log()

            # 3. The card fails: the kernel remounts it read-only. Error until it is replaced.
            card.fail()
            agent.wait_for(lambda: storage(agent)["status"] == "error", timeout=15, what="read-only")
            assert hold(agent, FAULT_S, "error", "read-only") >= 10
            # 4. A new card at the same place: the agent copies the old file (still readable)
            # and its buffer there.
            card.unmount()
            Ext4(tmp_path / "card2.img", data).mount(16)
            agent.wait_for(lambda: storage(agent)["status"] != "error" and os.path.exists(db),
                           timeout=20, what="recovery on the new card")
            n = len(agent.committed_wall_ms())
            agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 1, what="commits on the new card")
            assert not {r: v for r, v in dropped(agent).items() if v}, "nothing was lost, nothing counted"
        finally:
            assert agent.stop() == 0
        assert_continuous(spooled_wall_ms(db), agent.committed_wall_ms(), t0)
        assert mounted(data)


@pytest.mark.timeout(120)
def test_readonly_data_directory_from_the_start_runs_on_volatile_storage_and_moves_back(tmp_path):
    data = tmp_path / "data"
    with ext4(tmp_path / "card.img", data):
        # Read-only at the mount (a loop device opened read-only could never come back).
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True, timeout=30)
        agent = AgentProcess(tmp_path / "agent", {
            "collection_interval": f"{int(INTERVAL_S * 1000)}ms",
            "storage": {"path": str(data / "metrics.db"), "commit_interval": "1s"}},
            env={"RUNTIME_DIRECTORY": str(tmp_path / "run")})
        t0 = int(time.time() * 1000)
        try:
            agent.start(timeout=60)  # inside: a start that times out still gets stopped
            agent.wait_for(lambda: storage(agent)["status"] == "degraded", what="volatile storage")
            st = storage(agent)
            assert "volatile" in st["message"] and "read-only" in st["message"], st
            n = len(agent.committed_wall_ms())
            agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 1, what="collection goes on")
            assert hold(agent, 2, "degraded", "volatile") >= 5  # says so for as long as it lasts
            subprocess.run(["mount", "-o", "remount,rw", str(data)], check=True, timeout=30)
            agent.wait_for(lambda: storage(agent)["details"]["persistence"] is True, timeout=40,
                           what="the spool moved back to persistent storage")
            assert "moved back to persistent storage" in storage(agent)["message"]
            n = len(agent.committed_wall_ms())
            agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 1, what="commits at home")
        finally:
            assert agent.stop() == 0
        assert not (tmp_path / "run" / "metrics.db").exists()
        assert_continuous(spooled_wall_ms(str(data / "metrics.db")), agent.committed_wall_ms(), t0)


@pytest.mark.timeout(120)
def test_empty_spool_file_at_start_is_reported_before_it_is_initialised(tmp_path):
    agent = AgentProcess(tmp_path / "agent")
    agent.db_path.parent.mkdir(parents=True)
    agent.db_path.write_bytes(b"")
    try:
        agent.start(timeout=60)
        agent.wait_for(lambda: "empty (0 bytes)" in storage(agent)["message"], what="the empty-file notice")
        assert storage(agent)["status"] == "degraded"
        assert "is an empty file (0 bytes): initialising a new spool" in agent.log()
        n = len(agent.committed_wall_ms())
        agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 1, what="commits")
    finally:
        assert agent.stop() == 0
