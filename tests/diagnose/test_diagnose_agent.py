"""diagnose against a real running agent (healthy, degraded, error) and a stopped one (stale lock, none)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.diagnose.running_agent import Agent, Answering401, free_port, write_config
from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.vm import VictoriaMetrics

ANSI = re.compile(r"\x1b\[")


def diagnose(config, *extra: str) -> subprocess.CompletedProcess:
    p = subprocess.run(cli_argv("diagnose", "--config", str(config), "--rate-seconds", "0.2", *extra),
                       env=cli_env({"NO_COLOR": ""}), capture_output=True, text=True, timeout=60)
    if "--json" not in extra:
        too_wide = [line for line in p.stdout.splitlines() if len(line) > 80]
        assert not too_wide, too_wide
        assert not ANSI.search(p.stdout), "colour on a pipe"
    return p


def flat(text: str) -> str:
    """Whitespace removed: a report line wraps at spaces, and a long path breaks anywhere."""
    return "".join(text.split())


def has(text: str, fact: str) -> bool:
    return flat(fact) in flat(text)


def _component(name: str, *statuses: str):
    return lambda doc: (doc.get("components", {}).get(name) or {}).get("status") in statuses


def _uploaded(doc: dict) -> bool:
    up = doc.get("components", {}).get("uploader") or {}
    return up.get("status") == "ok" and bool((up.get("details") or {}).get("last_upload_time"))


EXIT = {"ok": 0, "degraded": 1, "error": 2}


def test_healthy_then_degraded_when_victoriametrics_stops(tmp_path):
    with VictoriaMetrics(tmp_path / "vm") as vm:
        cfg = write_config(tmp_path, vm.import_url)
        agent = Agent(cfg)
        try:
            doc = agent.wait_for(lambda d: _uploaded(d) and _component("time", "ok")(d),
                                 what="uploads done and the clock verified against the server")
            p = diagnose(cfg)
            text = p.stdout
            # The verdict is the agent's roll-up: in CI, discovery without udevd runs in its sysfs
            # fallback and may say degraded; every component that is not ok is named in the report.
            want = doc["status"]
            assert p.returncode == EXIT[want], p.stdout + p.stderr
            assert p.stdout.splitlines()[0].endswith(" " + want.upper())
            for name, comp in doc["components"].items():
                if comp["status"] != "ok":
                    assert re.search(rf"{comp['status']} +{re.escape(name)}", text), (name, text)
            assert re.search(r"ok +uploader", text) and re.search(r"ok +time", text), text
            for fact in (f"Service running, PID {agent.pid}", f"health {want}", "device diag-box",
                         f"{tmp_path}/data/metrics.db (persistent", "samples pending", "dropped: none",
                         f"to {vm.import_url}", "last success", "Clock synchronised",
                         "(devices from the agent's /metrics)", "Board", "config.yaml: ok"):
                assert has(text, fact), fact
            assert "last error" not in text
            doc = json.loads(diagnose(cfg, "--json").stdout)
            assert doc["service"]["pid"] == agent.pid and doc["uploads"]["last_success"]
            assert doc["devices"]["interfaces"] and doc["devices"]["filesystems"]

            vm.stop()
            agent.wait_for(_component("uploader", "degraded", "error"), timeout=60,
                           what="the uploader to notice VictoriaMetrics is gone")
            p = diagnose(cfg)
            assert p.returncode >= 1, p.stdout + p.stderr
            text = p.stdout
            assert re.search(r"(degraded|error) +uploader", text), text
            assert has(text, "last error:")
            assert p.stdout.splitlines()[0].endswith((" DEGRADED", " ERROR"))
        finally:
            agent.stop()


def test_error_when_the_server_answers_401(tmp_path):
    server = Answering401()
    try:
        cfg = write_config(tmp_path, server.import_url)
        agent = Agent(cfg)
        try:
            agent.wait_for(_component("uploader", "error"), what="the uploader in error after a 401")
            p = diagnose(cfg)
            assert p.returncode == 2, p.stdout + p.stderr
            text = p.stdout
            assert p.stdout.splitlines()[0].endswith(" ERROR")
            assert has(text, "error uploader")
            assert has(text, "last error: HTTP 401")
            assert has(text, "Service running")
        finally:
            agent.stop()
    finally:
        server.close()


def test_cleanly_stopped_agent_leaves_a_free_lock_and_a_readable_spool(tmp_path):
    """A clean stop is not a stale lock (issue "first touch"): the lock file is left empty."""
    cfg = write_config(tmp_path)  # spool only: nothing is uploaded, so samples stay pending
    agent = Agent(cfg)
    try:
        agent.wait_for(lambda d: ((d["components"].get("storage") or {}).get("details") or {})
                       .get("pending_count", 0) > 0, what="samples in the spool")
    finally:
        rc = agent.stop()
    assert rc == 0, agent.log_tail()
    p = diagnose(cfg)
    assert p.returncode == 2, p.stdout + p.stderr
    text = p.stdout
    assert has(text, f"stopped cleanly (lock file {tmp_path}/data/metrics.db.lock is free and empty)")
    assert "stale" not in text
    assert has(text, "read from the spool file, read-only")
    assert re.search(r"[1-9][0-9,]* samples pending", text), text
    assert has(text, "(devices from a one-off collection)")
    assert has(text, "Uploads disabled: remote.url is not set")
    doc = json.loads(diagnose(cfg, "--json").stdout)
    assert doc["status"] == "error" and doc["spool"]["pending_samples"] > 0
    assert doc["service"]["lock"] == {"path": f"{tmp_path}/data/metrics.db.lock", "exists": True, "held": False,
                                      "pid": None, "pid_alive": False}


def test_never_started(tmp_path):
    cfg = write_config(tmp_path, extra="logging:\n  level: debug\n")
    p = diagnose(cfg)
    assert p.returncode == 2
    text = p.stdout
    assert has(text, f"no lock file at {tmp_path}/data/metrics.db.lock")
    assert has(text, "no spool file")


def test_config_problems_are_reported_not_fatal(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("collection_interval: soon\nremote:\n  retry:\n    jitter_percent: 150\n")
    p = diagnose(cfg, "--url", f"http://127.0.0.1:{free_port()}")  # the defaults' port may be anyone's
    assert p.returncode == 2
    text = p.stdout
    assert has(text, "config.yaml: 2 problem(s)")
    assert has(text, "collection_interval: must be a duration") and "jitter_percent" in text


def test_colour_on_a_tty_only_without_no_color(tmp_path):
    cfg = write_config(tmp_path)
    script = ("import os, pty, sys\n"
              "pid, fd = pty.fork()\n"
              "if pid == 0:\n"
              "    os.execvpe(sys.argv[1], sys.argv[1:], os.environ)\n"
              "out = b''\n"
              "while True:\n"
              "    try:\n        chunk = os.read(fd, 65536)\n    except OSError:\n        break\n"
              "    if not chunk:\n        break\n    out += chunk\n"
              "sys.stdout.write(out.decode())\n")
    argv = [sys.executable, "-c", script, *cli_argv("diagnose", "--config", str(cfg), "--rate-seconds", "0")]
    coloured = subprocess.run(argv, env=cli_env({"TERM": "xterm"}), capture_output=True, text=True, timeout=60)
    assert "\x1b[31mERROR\x1b[0m" in coloured.stdout
    plain = subprocess.run(argv, env=cli_env({"TERM": "xterm", "NO_COLOR": "1"}), capture_output=True, text=True,
                           timeout=60)
    assert "ERROR" in plain.stdout and not ANSI.search(plain.stdout)


def test_queue_commands_while_the_agent_runs(tmp_path):
    cfg = write_config(tmp_path)  # spool only: samples stay pending
    agent = Agent(cfg)
    try:
        agent.wait_for(lambda d: ((d["components"].get("storage") or {}).get("details") or {})
                       .get("pending_count", 0) > 0, what="samples in the spool")
        p = run_cli("queue", "stats", "--json", "--config", str(cfg))
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["pending_samples"] > 0
        p = run_cli("queue", "export", "--config", str(cfg))
        if p.returncode == 0:  # the spool allows readers beside the agent
            assert '"device_id":"diag-box"' in p.stdout
        else:  # the agent holds the file with SQLite's exclusive locking mode
            assert p.returncode == 75, p.stderr
            assert f"the agent (PID {agent.pid}) holds the spool exclusively" in p.stderr
        for action in ("drain", "vacuum"):
            p = run_cli("queue", action, "--config", str(cfg))
            assert p.returncode == 75, (action, p.stderr)
            assert f"the agent (PID {agent.pid}) is running: stop it" in p.stderr
    finally:
        rc = agent.stop()
    assert rc == 0, agent.log_tail()
    p = run_cli("queue", "export", "--config", str(cfg))  # stopped: the file is free again
    assert p.returncode == 0 and '"device_id":"diag-box"' in p.stdout, p.stderr
