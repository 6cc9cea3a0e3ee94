"""`metrics-collector history` against the real agent on a board tree: through the running
agent, from the read-only spool after it stopped, across a restart (history persisted while
VictoriaMetrics took and deleted every batch), one 80x24 screen without colour, and an HTML
page that loads in a real Chromium."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.support.agent import AgentProcess
from tests.support.cli import REPO, run_cli
from tests.timeline.test_chromium import chromium, console_lines, run_chromium  # noqa: F401 - fixture

BOARD = REPO / "hardware" / "rk3588-orangepi5plus"
KEY = ("node_memory_MemAvailable_bytes", "node_cpu_seconds_total", "metrics_collector_spool_pending_samples")


def _agent(tmp_path, vm) -> AgentProcess:
    return AgentProcess(tmp_path / "agent", {
        "remote": {"url": vm.import_url},
        "host": {"procfs": str(BOARD / "proc"), "sysfs": str(BOARD / "sys"), "rootfs": str(BOARD / "root")},
        "modem": {"mmcli_path": str(tmp_path / "no-mmcli")},
        "logging": {"level": "info"},
    })


def _history(agent: AgentProcess, *args: str, env: dict | None = None):
    return run_cli("history", "--config", str(agent.config_path), "--since", "10m", *args, env=env)


def _json(agent: AgentProcess) -> dict:
    r = _history(agent, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return json.loads(r.stdout)


def _times(doc: dict, name: str) -> list[float]:
    return sorted({p[0] for s in doc["series"] if s["name"] == name for p in s["points"]})


def _texts(doc: dict, kind: str) -> list[str]:
    return [e["text"] for e in doc["events"] if e["kind"] == kind]


def _pending(agent: AgentProcess) -> int:
    r = run_cli("queue", "stats", "--json", "--config", str(agent.config_path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["pending_samples"]


@pytest.mark.slow
def test_history_running_stopped_restarted_screen_and_html(vm, tmp_path, chromium):  # noqa: F811
    agent = _agent(tmp_path, vm)
    with agent:
        agent.wait_for(lambda: (agent.health()["components"]["uploader"]["details"] or {}).get("last_upload_time"),
                       what="a first upload")
        time.sleep(3)
        running = _json(agent)  # through the agent's /history: it holds the spool exclusively
        assert requests.get(agent.base + "/history?since=x", timeout=5).status_code == 400
        assert agent.stop() == 0
    for name in KEY:
        assert len(_times(running, name)) >= 3, (name, [s["name"] for s in running["series"]])
    assert [t for t in _texts(running, "agent") if t.startswith("agent started (")], running["events"]
    # The board's recorded journal: HDMI loss and a USB disconnect, counted before the first batch.
    assert any("hdmirx signal lost" in t for t in _texts(running, "hdmi")), running["events"]
    assert any("usb disconnect 5-1" in t for t in _texts(running, "usb")), running["events"]
    assert running["device_id"] == "e2e-device"

    # Stopped: the final upload took everything, so these points come from the history table.
    assert _pending(agent) == 0
    stopped = _json(agent)
    first_run = _times(stopped, "node_memory_MemAvailable_bytes")
    assert set(_times(running, "node_memory_MemAvailable_bytes")) <= set(first_run)
    assert _texts(stopped, "agent")[-1] == "agent stopped"

    agent.start()
    try:
        time.sleep(3)
        again = _json(agent)
        times = _times(again, "node_memory_MemAvailable_bytes")
        assert set(first_run) <= set(times) and max(times) > max(first_run)
        starts = [t for t in _texts(again, "agent") if t.startswith("agent started")]
        assert len(starts) == 2 and "agent stopped" in _texts(again, "agent")
        assert "unclean" not in starts[1]

        screen = _history(agent, env={"COLUMNS": "80", "LINES": "24", "NO_COLOR": "1", "TERM": "xterm"})
        assert screen.returncode == 0, screen.stderr
        lines = screen.stdout.rstrip("\n").split("\n")
        assert 10 <= len(lines) <= 24 and max(len(ln) for ln in lines) <= 80, screen.stdout
        assert "\x1b" not in screen.stdout
        assert lines[0].startswith("history ") and "device e2e-device" in lines[0]
        assert any(ln.startswith("mem available") for ln in lines), screen.stdout
        (tmp_path / "screen.txt").write_text(screen.stdout)

        page = tmp_path / "timeline.html"
        r = _history(agent, "--html", str(page))
        assert r.returncode == 0 and r.stdout.startswith(f"wrote {page}"), r.stderr
    finally:
        assert agent.stop() == 0
    dom, err = run_chromium(chromium, tmp_path, page.as_uri() + "#selftest", "--dump-dom")
    assert "data-js-errors" not in re.search(r"<html[^>]*>", dom).group(0)
    assert console_lines(err) == []
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the page's script did not run to its end"
    assert len(re.findall(r'<svg class="plot', dom)) >= 5


def test_bad_input_is_one_line_with_exit_codes(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  path: {tmp_path}/none/metrics.db\n")
    r = run_cli("history", "--config", str(cfg), "--since", "yesterday")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("history: not a time")
    r = run_cli("history", "--config", str(cfg), "--since", "1h", "--until", "2h")
    assert r.returncode == 2 and "--until must be after --since" in r.stderr
    r = run_cli("history", "--config", str(cfg))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no spool file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("history", "--help")
    assert r.returncode == 0 and "--series" in r.stdout
