"""belabox-fleet end to end: real VictoriaMetrics, real vmauth, real agents uploading through it."""

from __future__ import annotations

import os
import time

import pytest

from tests.fleet.stack import ok
from tests.support.agent import AgentProcess, dump

pytestmark = pytest.mark.slow
# commit_interval below the collection interval: every batch is written before its upload (as
# with a lagging uplink), so "committed" below is every batch and the loss checks cover them all.
FAST = {"collection_interval": "500ms", "upload_interval": "1s", "storage": {"commit_interval": "100ms"}}


def _uploader(agent: AgentProcess) -> dict:
    return agent.health()["components"]["uploader"]


def _uploaded_ok(agent: AgentProcess) -> bool:
    up = _uploader(agent)
    return up["status"] == "ok" and bool((up.get("details") or {}).get("last_upload_time"))


def _landed(stack, device_id: str) -> bool:
    """Samples of ``device_id`` are in VictoriaMetrics (a first cycle with nothing to send also
    counts as a successful upload in health, so health alone proves nothing here)."""
    stack.vm.force_flush()
    return stack.vm.count_samples(f'{{device_id="{device_id}"}}') > 0


def _wait_list(stack, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stack.vm.force_flush()  # 1.79 shows fresh samples to queries only after a flush
        listing = stack.list_json()
        rows = {r["device_id"]: r for r in listing["devices"]}
        try:
            if predicate(rows):
                return listing
        except KeyError:
            pass
        if time.monotonic() > deadline:
            return listing  # the caller's asserts say what is missing
        time.sleep(0.5)


def test_boxes_land_under_their_own_device_id_even_when_claiming_another(stack, tmp_path):
    seed_a = stack.enroll("box-a", "site=north")
    seed_b = stack.enroll("box-b")
    a = AgentProcess(tmp_path / "a", stack.agent_settings(
        seed_a, tmp_path / "a-token", **FAST, remote={"extra_labels": {"site": "north", "agent": "A"}}))
    # Box B's config claims box-a's device_id; its token must still file everything under box-b.
    b_settings = stack.agent_settings(seed_b, tmp_path / "b-token", **FAST, remote={"extra_labels": {"agent": "B"}})
    b_settings["device_id"] = "box-a"
    b = AgentProcess(tmp_path / "b", b_settings)
    with a, b:
        for agent in (a, b):
            agent.wait_for(lambda agent=agent: _uploaded_ok(agent), what="uploads through vmauth")
        listing = _wait_list(stack, lambda rows: all(rows[d]["status"] == "ok" for d in ("box-a", "box-b")))
        assert a.stop() == 0 and b.stop() == 0
    stack.vm.force_flush()
    from_a = stack.vm.export('{agent="A"}')
    from_b = stack.vm.export('{agent="B"}')
    assert from_a and from_b
    assert {s["metric"]["device_id"] for s in from_a} == {"box-a"}
    assert {s["metric"]["device_id"] for s in from_b} == {"box-b"}
    assert all(s["metric"].get("site") == "north" for s in from_a)
    rows = {r["device_id"]: r for r in listing["devices"]}
    for did in ("box-a", "box-b"):
        r = rows[did]
        assert r["status"] == "ok" and r["registry"] == "active", dump(r)
        assert time.time() - r["last_seen"] < 30 and r["dark_since"] is None
        assert isinstance(r["pending_samples"], int)
    assert rows["box-a"]["labels"] == {"site": "north"}


def test_revoked_box_errors_within_one_interval_and_lists_as_refused(stack, tmp_path):
    seed = stack.enroll("box-r")
    agent = AgentProcess(tmp_path / "r", stack.agent_settings(seed, tmp_path / "r-token", **FAST))
    with agent:
        agent.wait_for(lambda: _uploaded_ok(agent) and _landed(stack, "box-r"), what="uploads before the revocation")
        res = ok("revoke", stack.dir, "box-r")
        assert "vmauth runs the new config" in res.stdout
        t_revoked = time.monotonic()
        agent.wait_for(lambda: _uploader(agent)["status"] == "error", timeout=10, what="uploader error")
        took = time.monotonic() - t_revoked
        # One upload interval (1 s) plus the cycle's own requests and a loaded machine's slack;
        # the config was live when revoke returned.
        assert took <= 3.0, (took, dump(_uploader(agent)))
        up = _uploader(agent)
        assert up["details"]["last_status"] in (400, 401, 403), dump(up)
        assert seed["token"] not in agent.log() and seed["token"] not in str(up)
        assert agent.stop() == 0
    listing = _wait_list(stack, lambda rows: rows["box-r"]["last_seen"] is not None)
    row = {r["device_id"]: r for r in listing["devices"]}["box-r"]
    assert row["status"] == "refused" and row["registry"] == "revoked", dump(row)
    assert row["dark_since"] == row["last_seen"] and row["last_seen"] is not None
    table = ok("list", stack.dir).stdout
    assert any(line.startswith("box-r") and "REFUSED" in line for line in table.splitlines()), table


def test_rotation_loses_no_sample_and_retires_the_old_token(stack, tmp_path):
    seed = stack.enroll("box-t")
    token_file = tmp_path / "t-token"
    agent = AgentProcess(tmp_path / "t", stack.agent_settings(seed, token_file, **FAST))
    with agent:
        agent.wait_for(lambda: _uploaded_ok(agent) and _landed(stack, "box-t"), what="uploads with the first token")
        new_seed_path = stack.seeds / "box-t-2.yaml"
        res = ok("rotate", stack.dir, "box-t", "--seed-out", new_seed_path)
        assert "vmauth runs the new config" in res.stdout
        import yaml
        new = yaml.safe_load(new_seed_path.read_text())
        assert new["token"] != seed["token"] and new["device_id"] == "box-t"
        time.sleep(1.5)  # the box keeps uploading with the old token meanwhile
        assert _uploader(agent)["status"] == "ok"
        tmp = token_file.with_suffix(".new")  # the box side replaces its token file atomically
        tmp.write_text(new["token"] + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, token_file)
        n = len(agent.committed_wall_ms())
        agent.wait_for(lambda: len(agent.committed_wall_ms()) > n + 2 and _uploaded_ok(agent),
                       what="uploads with the new token")
        res = ok("sync", stack.dir)
        assert "retired old token box-t#1" in res.stdout, res.stdout
        assert stack.vmauth.post(seed["token"], b"").status_code in (400, 401)
        assert "cannot find the provided auth token" in stack.vmauth.post(seed["token"], b"").text \
            or stack.vmauth.post(seed["token"], b"").status_code == 401
        time.sleep(1.5)
        agent.wait_for(lambda: _uploaded_ok(agent) and _uploader(agent)["details"]["pending_count"] == 0,
                       what="nothing pending")
        assert agent.stop() == 0
    stack.vm.force_flush()
    series = stack.vm.export('{__name__="node_cpu_seconds_total",device_id="box-t",cpu="0",mode="idle"}')
    assert len(series) == 1
    committed = set(agent.committed_wall_ms())
    assert len(committed) >= 4  # batches acknowledged while still in memory are never written
    missing = sorted(committed - set(series[0]["timestamps"]))
    assert not missing, f"lost over the rotation: {missing[:10]}"
