"""End to end: the agent on a board with a wrong clock uploads true timestamps to VictoriaMetrics.

The agent runs as ``metrics-collector run`` in a child process whose wall clock the test
sets (tests/support/fakewall.py): booted in 1970, three days behind, or stepped by an hour
mid-run, with the kernel reporting no sync. Its only time source is the Date header of the
real VictoriaMetrics it uploads to. Every sample that arrives must carry the true time;
a batch of an earlier boot taken with an untrusted clock must never arrive.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from belabox_metrics import config
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.store import Spool
from tests.support.cli import APP, REPO, cli_env
from tests.support.vm import vm  # noqa: F401 - the fixture

DEVICE = "e2e-time"
DAY = 86400.0
RUN_SECONDS = 7.0


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def true_base() -> float:
    """The base that makes ``boottime + base`` the true wall clock."""
    return time.time() - boottime()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeWallAgent:
    def __init__(self, tmp_path: Path, vm_url: str, base: float):
        self.tmp = tmp_path
        self.wall_file = tmp_path / "wall-base"
        self.set_base(base)
        self.port = free_port()
        self.db = tmp_path / "data" / "metrics.db"
        off = {"enabled": False}
        self.config = tmp_path / "config.yaml"
        self.config.write_text(json.dumps({
            "device_id": DEVICE,
            "collection_interval": "1s",
            "upload_interval": "1s",
            "remote": {"url": vm_url, "max_bytes_per_second": 0},
            "storage": {"path": str(self.db), "commit_interval": "1s"},
            "health": {"listen_addr": f"127.0.0.1:{self.port}"},
            "monitoring": {"clock_skew_check_interval": "2s", "clock_skew_warn_threshold_ms": 2000},
            "collectors": {n: off for n in config.COLLECTOR_NAMES if n not in ("loadavg", "meminfo")},
        }))
        self.proc: subprocess.Popen | None = None

    def set_base(self, base: float) -> None:
        tmp = self.wall_file.with_suffix(".tmp")
        tmp.write_text(repr(base))
        os.replace(tmp, self.wall_file)

    def start(self) -> None:
        env = cli_env({"BBM_TEST_WALL_FILE": str(self.wall_file),
                       "PYTHONPATH": f"{APP}{os.pathsep}{REPO}"})
        env.pop("STATE_DIRECTORY", None)
        self.log = open(self.tmp / "agent.log", "wb")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.fakewall", "run", "--config",
                                      str(self.config)], env=env, cwd=str(REPO), stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"agent exited at start:\n{self.log_text()}"
            try:
                self.health()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"agent health endpoint not up within 20 s:\n{self.log_text()}")

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 503 still carries the report
            return json.load(e)

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"agent ignored SIGTERM for 20 s:\n{self.log_text()}") from None
        finally:
            self.log.close()
        return rc

    def log_text(self) -> str:
        try:
            return (self.tmp / "agent.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


@pytest.fixture
def agent_factory(tmp_path):
    agents: list[FakeWallAgent] = []

    def make(vm_url: str, base: float) -> FakeWallAgent:
        a = FakeWallAgent(tmp_path, vm_url, base)
        agents.append(a)
        return a
    yield make
    for a in agents:
        if a.proc is not None:
            a.stop()


def uploaded_timestamps(vm, name: str) -> list[int]:  # noqa: F811
    vm.force_flush()
    match = f'{{__name__="{name}",device_id="{DEVICE}"}}'
    return sorted(t for s in vm.export(match) for t in s["timestamps"])


def run_and_check(vm, agent, t0: float) -> dict:  # noqa: F811
    """Run the agent for RUN_SECONDS; every uploaded sample must carry a true time."""
    agent.start()
    time.sleep(RUN_SECONDS)
    report = agent.health()
    assert agent.stop() == 0, agent.log_text()
    t1 = time.time()
    stamps = uploaded_timestamps(vm, "node_load1")
    assert len(stamps) >= 3, f"only {len(stamps)} samples arrived\n{agent.log_text()}"
    assert all(t0 * 1000 - 1500 <= t <= t1 * 1000 + 1500 for t in stamps), (
        f"timestamps outside the true run window [{t0:.3f}, {t1:.3f}]: {stamps}")
    return report


@pytest.mark.parametrize("shift", [-3 * DAY, None], ids=["3-days-behind", "booted-in-1970"])
def test_wrong_clock_uploads_true_times(vm, agent_factory, shift):  # noqa: F811
    base = 0.0 if shift is None else true_base() + shift
    agent = agent_factory(vm.import_url, base)
    t0 = time.time()
    report = run_and_check(vm, agent, t0)
    tm = report["components"]["time"]
    assert tm["status"] == "degraded" and "behind" in tm["message"], tm
    assert tm["details"]["source"] == "server" and tm["details"]["synchronized"] is False
    expected_skew = (base - true_base()) * 1000
    assert abs(tm["details"]["skew_ms"] - expected_skew) < 1500, (tm, expected_skew)


def test_correct_clock_without_kernel_sync_then_stepped_an_hour(vm, agent_factory):  # noqa: F811
    agent = agent_factory(vm.import_url, true_base())
    t0 = time.time()
    agent.start()
    time.sleep(3)
    tm = agent.health()["components"]["time"]
    assert (tm["status"], tm["message"], tm["details"]["source"]) == ("ok", "time synchronized", "server"), tm
    agent.set_base(true_base() + 3600)  # someone sets the clock an hour ahead
    time.sleep(4)
    report = agent.health()
    assert agent.stop() == 0, agent.log_text()
    t1 = time.time()
    stamps = uploaded_timestamps(vm, "node_load1")
    assert len(stamps) >= 5, agent.log_text()
    assert all(t0 * 1000 - 1500 <= t <= t1 * 1000 + 1500 for t in stamps), (t0, t1, stamps)
    assert report["components"]["time"]["status"] == "degraded"


def test_untrusted_batch_of_an_earlier_boot_never_arrives(vm, agent_factory, tmp_path):  # noqa: F811
    agent = agent_factory(vm.import_url, true_base() - 3 * DAY)
    agent.db.parent.mkdir(parents=True)
    spool = Spool.open(str(agent.db), config.StorageConfig())
    plausible = int((time.time() - 3 * DAY - 600) * 1000)  # what that boot's wrong clock said
    spool.append(Batch((sample("e2e_old_boot", 1.0),), plausible, "0ldb00t0-0000-4000-8000-000000000000",
                       5_000_000_000, False))
    spool.append(Batch((sample("e2e_old_boot_trusted", 2.0),), int(time.time() * 1000) - 600_000,
                       "0ldb00t0-0000-4000-8000-000000000000", 6_000_000_000, True))
    spool.flush()
    spool.close()
    run_and_check(vm, agent, time.time())
    assert uploaded_timestamps(vm, "e2e_old_boot") == []
    assert len(uploaded_timestamps(vm, "e2e_old_boot_trusted")) == 1  # a trusted clock is kept
    spool = Spool.open(str(agent.db), config.StorageConfig())
    try:
        assert spool.stats().parked_batches == 1
    finally:
        spool.close()
