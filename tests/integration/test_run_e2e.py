"""`metrics-collector run` end to end against a real VictoriaMetrics: delivery, crashes, damage, tokens."""

from __future__ import annotations

import json
import os
import re
import time
import warnings

import pytest

from tests.support.agent import AgentProcess, dump
from tests.support.cli import run_cli
from tests.support.vm import VictoriaMetrics, VMError

SERIES = 'node_cpu_seconds_total{device_id="e2e-device",cpu="0",mode="idle"}'


def _start_vm(tmp_path, name: str, flags=()) -> VictoriaMetrics:
    vm = VictoriaMetrics(tmp_path / name, extra_flags=list(flags))
    try:
        return vm.start()
    except VMError as e:
        pytest.fail(str(e), pytrace=False)


def _uploaded(agent: AgentProcess) -> bool:
    up = agent.health()["components"].get("uploader", {})
    return bool((up.get("details") or {}).get("last_upload_time"))


def test_run_delivers_samples_with_names_labels_and_times(vm, tmp_path):
    agent = AgentProcess(tmp_path, {"remote": {"url": vm.import_url, "extra_labels": {"site": "lab"}}})
    t0 = int(time.time() * 1000)
    with agent:
        agent.wait_for(lambda: _uploaded(agent), what="a first successful upload")
        time.sleep(2.5)
        assert agent.stop() == 0
    t1 = int(time.time() * 1000)
    vm.force_flush()
    series = vm.export('{__name__="node_cpu_seconds_total"}')
    assert series, agent.log()[-2000:]
    for s in series:
        assert s["metric"]["device_id"] == "e2e-device" and s["metric"]["site"] == "lab"
        assert {"cpu", "mode"} <= set(s["metric"])
        assert all(t0 - 1000 <= t <= t1 + 1000 for t in s["timestamps"]), (t0, t1, s["timestamps"])
    idle = vm.export(SERIES)
    assert len(idle) == 1 and len(idle[0]["timestamps"]) >= 3
    # Every batch the agent wrote reached the server (with the uplink up most never are written:
    # they are acknowledged while still in memory), and a clean stop left nothing behind.
    committed = set(agent.committed_wall_ms())
    assert committed <= set(idle[0]["timestamps"])
    stats = json.loads(run_cli("queue", "stats", "--json", "--config", str(agent.config_path)).stdout)
    assert stats["pending_samples"] == 0 and stats["parked_samples"] == 0, stats
    for name in ("node_memory_MemAvailable_bytes", "node_load1", "node_network_receive_bytes_total"):
        assert vm.export(f'{{__name__="{name}"}}'), name
    res = run_cli("check-config", "--config", str(agent.config_path))
    assert res.returncode == 0


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup-1ms", "no-dedup"])
def test_kill9_mid_run_every_committed_batch_arrives_once(tmp_path, dedup):
    flags = ["-dedup.minScrapeInterval=1ms"] if dedup else []
    vm = _start_vm(tmp_path, "vm", flags)
    try:
        agent = AgentProcess(tmp_path / "agent", {"collection_interval": "300ms", "upload_interval": "700ms",
                                                  # Shorter than a collection: every batch is
                                                  # written before its upload, as with a lagging
                                                  # uplink, so the kills hit commits and uploads.
                                                  "storage": {"commit_interval": "100ms"},
                                                  "remote": {"url": vm.import_url}})
        for delay in (2.3, 1.7, 2.9):
            agent.start()
            time.sleep(delay)
            agent.kill9()  # in the middle of collecting and uploading
        agent.start()
        agent.wait_for(lambda: agent.health()["components"]["uploader"]["details"]["pending_count"] == 0
                       and _uploaded(agent), timeout=30, what="the backlog to drain")
        assert agent.stop() == 0
        vm.force_flush()
        idle = vm.export(SERIES)
        assert len(idle) == 1
        stored = idle[0]["timestamps"]
        committed = set(agent.committed_wall_ms())
        assert len(committed) >= 8  # about half are acknowledged in memory first, never written
        missing = sorted(committed - set(stored))
        assert not missing, f"committed batches lost: {missing[:10]}"
        duplicates = len(stored) - len(set(stored))
        if dedup:
            assert duplicates == 0
        else:
            warnings.warn(f"kill -9 x3 without server dedup: {duplicates} duplicate samples of "
                          f"{len(stored)} for one series (each is a batch acknowledged by the server "
                          f"but killed before its ack was committed)", stacklevel=1)
    finally:
        vm.stop()


def test_damaged_spool_is_quarantined_and_the_agent_keeps_running(tmp_path):
    agent = AgentProcess(tmp_path)
    agent.start()
    agent.wait_for(lambda: len(agent.committed_wall_ms()) >= 10, what="some committed batches")
    assert agent.stop() == 0
    db = agent.db_path
    size = db.stat().st_size
    assert size > 8192
    with open(db, "r+b") as fh:  # garbage over the middle, as a failing SD card leaves it
        fh.seek(size // 2)
        fh.write(os.urandom(2048))
    agent.start()
    try:
        def quarantined():
            st = agent.health()["components"]["storage"]
            return st["status"] == "degraded" and "corrupt-" in (st.get("details") or {}).get("quarantined", "")
        agent.wait_for(quarantined, what="storage degraded after quarantine")
        assert list(db.parent.glob("metrics.db.corrupt-*")), os.listdir(db.parent)
        salvaged = re.search(r"salvaged (\d+) batches", agent.log())
        assert salvaged and int(salvaged.group(1)) > 0, agent.log()[-2000:]
        agent.wait_for(lambda: agent.health()["components"]["collector.cpu"]["status"] == "ok",
                       what="collection after quarantine")
        n = len(agent.committed_wall_ms())
        agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 1, what="new batches committed")
    finally:
        assert agent.stop() == 0


def test_missing_token_keeps_spooling_until_the_token_appears(vm, tmp_path):
    token = tmp_path / "api-token"
    agent = AgentProcess(tmp_path, {"remote": {"url": vm.import_url, "auth_token_file": str(token)}})
    with agent:
        def waiting():
            up = agent.health()["components"]["uploader"]
            return up["status"] == "error" and "token" in up["message"]
        agent.wait_for(waiting, what="uploader error while the token is missing")
        agent.wait_for(lambda: agent.health()["components"]["storage"]["details"]["pending_count"] > 0,
                       what="samples spooled meanwhile")
        assert agent.health()["components"]["collector.cpu"]["status"] == "ok"
        token.write_text("first-boot-token\n")
        os.chmod(token, 0o600)
        agent.wait_for(lambda: agent.health()["components"]["uploader"]["status"] == "ok", timeout=30,
                       what=f"uploads once the token exists: {dump(agent.health())}")
        assert agent.stop() == 0
    assert "first-boot-token" not in agent.log()
    vm.force_flush()
    assert vm.export(SERIES)


def test_second_instance_exits_75_naming_the_holder(tmp_path):
    with AgentProcess(tmp_path) as agent:
        res = run_cli("run", "--config", str(agent.config_path), timeout=30)
        assert res.returncode == 75, res.stderr
        assert f"PID {agent.proc.pid}" in res.stderr and "Traceback" not in res.stderr
        assert agent.stop() == 0


def test_bad_config_exits_78_without_traceback(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("collection_interval: often\n")
    res = run_cli("run", "--config", str(cfg))
    assert res.returncode == 78
    assert res.stderr.strip() == "config.yaml: collection_interval: must be a duration like 30s, 1m or 1h, got 'often'"
