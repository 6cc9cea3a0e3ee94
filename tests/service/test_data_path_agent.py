"""With its data folder read-only the agent runs from a volatile folder and says so (design §9)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.agent import AgentProcess


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only mount (root ignores mode bits, so chmod would prove nothing)."""
    d = tmp_path / "ro"
    d.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"cannot mount a read-only tmpfs (tests run as root): {res.stderr.strip()}", pytrace=False)
    yield d
    subprocess.run(["umount", str(d)], check=False)


def test_read_only_data_folder_falls_back_to_volatile_storage(tmp_path, read_only_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    agent = AgentProcess(tmp_path / "agent", {"storage": {"path": str(read_only_dir / "metrics.db")}},
                         env={"RUNTIME_DIRECTORY": str(run_dir)})
    with agent:
        def volatile():
            st = agent.health()["components"]["storage"]
            return st["status"] == "degraded" and st["details"].get("persistence") is False
        agent.wait_for(volatile, what="storage degraded with persistence=false")
        st = agent.health()["components"]["storage"]
        assert st["details"]["path"].startswith(str(run_dir)), st
        assert "read-only" in st["message"] or "read-only" in str(st["details"]), st
        agent.wait_for(lambda: (run_dir / "metrics.db").exists() and len(agent.committed_wall_ms()) >= 2,
                       what="batches committed to the volatile spool")
        assert agent.stop() == 0
    assert os.listdir(read_only_dir) == []
