"""The stream-side metrics end to end on the board trees, and belaUI's secrets nowhere.

The trees' config.json and command lines hold planted secrets (a bcrypt hash, an SSH hash, a
stream key, a relay host, a cloud key). They must not appear in `collect --once` output (text or
JSON, stdout or stderr), the agent's debug log, /metrics, /health, or what VictoriaMetrics
stored, also when config.json turns malformed and its error is reported.
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.collectors.support import parse_text
from tests.support.agent import AgentProcess
from tests.support.cli import run_cli
from tests.support.proctree import BOARD_TREES, PLANTED_SECRETS
from tests.support.vm import VictoriaMetrics, VMError

STREAM_KEY = PLANTED_SECRETS[2]


def _no_secrets(text: str, where: str) -> None:
    for secret in PLANTED_SECRETS:
        assert secret not in text, f"planted secret {secret!r} in {where}"
    assert "PLANTED" not in text, f"something planted leaked into {where}"


def _collect(tree, *extra):
    return run_cli("collect", "--once", "--procfs", str(tree / "proc"), "--sysfs", str(tree / "sys"),
                   "--rootfs", str(tree / "root"), *extra)


@pytest.mark.parametrize("board", sorted(BOARD_TREES))
def test_collect_once_on_a_streaming_board(board):
    tree = BOARD_TREES[board]
    res = _collect(tree, "--collector", "belabox", "--collector", "kernel_events")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    got = parse_text(res.stdout)
    for p in ("belaUI", "belacoder", "srtla_send"):
        assert got[("belabox_process_up", (("process", p),))] == 1
        assert got[("belabox_process_restarts_total", (("process", p),))] == 0
        assert got[("belabox_process_cpu_seconds_total", (("process", p),))] > 0
        assert got[("belabox_process_resident_memory_bytes", (("process", p),))] > 0
    names = {n for n, _ in got}
    assert {"belabox_encoder_bitrate_bps", "belabox_bond_link_info", "belabox_stream_config_info",
            "belabox_stream_max_bitrate_bps", "belabox_stream_latency_seconds", "belabox_kernel_events_total",
            "belabox_network_duplicate_address"} <= names
    # Every bonded address maps to the interface holding it.
    assert all(dict(labels)["device"] != "unknown" for n, labels in got if n == "belabox_bond_link_info")
    _no_secrets(res.stdout + res.stderr, f"collect --once on {board}")
    res = _collect(tree, "--json")
    assert res.returncode == 0, res.stderr
    _no_secrets(res.stdout + res.stderr, f"collect --once --json on {board}")
    assert any(json.loads(line)["name"] == "belabox_process_up" for line in res.stdout.splitlines())


class _Sls(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"publishers": {f"publish/live/{STREAM_KEY}": {"bitrate": 5000, "rtt": 40.0,
                                                                         "pktRcvLoss": 3, "pktRcvDrop": 1}},
                           "status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_agent_outputs_and_uploads_carry_no_secrets(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(BOARD_TREES["rk3588-orangepi5plus"], tree, symlinks=True)
    sls = ThreadingHTTPServer(("127.0.0.1", 0), _Sls)
    threading.Thread(target=sls.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    vm = VictoriaMetrics(tmp_path / "vm")
    try:
        vm.start()
    except VMError as e:
        sls.shutdown()
        pytest.fail(str(e), pytrace=False)
    agent = AgentProcess(tmp_path / "agent", {
        "remote": {"url": vm.import_url},
        "host": {"procfs": str(tree / "proc"), "sysfs": str(tree / "sys"), "rootfs": str(tree / "root")},
        "belabox": {"srt_stats_url": f"http://127.0.0.1:{sls.server_address[1]}/stats"},
    })
    try:
        with agent:
            agent.wait_for(lambda: "belabox_process_up" in requests.get(agent.base + "/metrics", timeout=5).text,
                           what="belabox metrics on /metrics")
            agent.wait_for(lambda: "belabox_srt_rtt_seconds" in requests.get(agent.base + "/metrics", timeout=5).text,
                           what="SRT metrics on /metrics")
            metrics = requests.get(agent.base + "/metrics", timeout=5).text
            health = requests.get(agent.base + "/health", timeout=5).text
            assert json.loads(health)["components"]["collector.belabox"]["status"] == "ok"
            # config.json turns malformed with its secrets in it: the error is reported, the file is not.
            cfg = tree / "root" / "opt" / "belaUI" / "config.json"
            cfg.write_text(cfg.read_text()[:-20])
            agent.wait_for(lambda: agent.health()["components"]["collector.belabox"]["status"] == "degraded",
                           what="collector.belabox degraded by a malformed config.json")
            degraded = requests.get(agent.base + "/health", timeout=5).text
            assert "config.json" in degraded
            metrics_after = requests.get(agent.base + "/metrics", timeout=5).text
            agent.wait_for(lambda: bool(vm.export('{__name__="belabox_stream_config_info"}')) or vm.force_flush(),
                           what="an upload of the belabox series")
            assert agent.stop() == 0
        vm.force_flush()
        stored = json.dumps(vm.export('{__name__=~"belabox_.*"}'))
        assert "belabox_bond_link_info" in stored and "belabox_srt_packets_lost_total" in stored
        for text, where in ((metrics, "/metrics"), (metrics_after, "/metrics after the breakage"),
                            (health, "/health"), (degraded, "/health when degraded"), (agent.log(), "the debug log"),
                            (stored, "VictoriaMetrics")):
            _no_secrets(text, where)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.stop()
        vm.stop()
        sls.shutdown()
        sls.server_close()
