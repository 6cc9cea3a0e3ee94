"""Planted secrets appear in no byte the project writes.

Planted: a password and a query key in remote.url (``http://fleet:PW@host/api/v1/import?authKey=KEY``),
a token in the token file, and a secret-named extra label (``api_key``; redact.SECRET_NAME).
Then the agent runs (debug logging) against a closed port (every upload fails and is logged),
and again against a real VictoriaMetrics (uploads succeed), and every command that prints
something runs: check-config (text, --json), diagnose (text, --json, --bundle), queue stats
(text, --json, from the running agent and from the file), queue export (jsonl to stdout,
prometheus to a file), devices (text, --json). Collected: every stdout and stderr, the
agent's log, /health and /metrics bodies, every member of every bundle, and every file the
agent or a command created. None may hold a secret: raw, URL-encoded or base64 (the token
also as it would sit in a Basic header). The inputs (the config, the token file) and
VictoriaMetrics' own storage (the labels are uploaded on purpose) are not outputs.
"""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests

from tests.support.agent import AgentProcess
from tests.support.cli import run_cli
from tests.support.vm import VictoriaMetrics, VMError, free_port

PASSWORD = "pw-Qz8rT4kL"
QUERY_KEY = "qk-Vn3xM7pW"
TOKEN = "tok-Hs2dF9jB6yR1"
LABEL_SECRET = "lbl-Wc5nP0zE"
SECRETS = (PASSWORD, QUERY_KEY, TOKEN, LABEL_SECRET)


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(raw).decode().rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return forms


FORBIDDEN = set().union(*(_forms(s) for s in SECRETS)) | {
    base64.b64encode(f"fleet:{PASSWORD}".encode()).decode().rstrip("="),  # a Basic header's credentials
}


class Outputs:
    """Every text the project wrote, by where it came from."""

    def __init__(self):
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        assert where not in self.texts, where
        self.texts[where] = text

    def cli(self, where: str, *args: str, ok=(0,)) -> str:
        res = run_cli(*args, timeout=120)
        self.add(f"{where} stdout", res.stdout)
        self.add(f"{where} stderr", res.stderr)
        assert res.returncode in ok, f"{where}: exit {res.returncode}\n{res.stderr[-2000:]}"
        return res.stdout

    def http(self, where: str, url: str) -> str:
        r = requests.get(url, timeout=10)
        self.add(where, r.content)
        return r.text

    def bundle(self, where: str, path: Path) -> dict[str, str]:
        members = {}
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    members[m.name.split("/", 1)[1]] = tar.extractfile(m).read().decode("utf-8", "replace")
        for name, text in members.items():
            self.add(f"{where}:{name}", text)
        return members

    def leaks(self) -> list[tuple[str, str]]:
        return [(where, form) for where, text in self.texts.items() for form in FORBIDDEN if form in text]


def _json_members(members: dict[str, str], where: str) -> None:
    """Part of the bundle's promise: every JSON it holds is JSON."""
    names = [n for n in members if n.endswith((".json", ".jsonl"))]
    assert "report.json" in names and "spool.json" in names, sorted(members)
    for name in names:
        text = members[name]
        if name.endswith(".jsonl"):
            for line in text.splitlines():
                json.loads(line)
        else:
            json.loads(text)


def _settings(tmp_path: Path, url: str, token: Path) -> dict:
    return {
        "remote": {"url": url, "auth_token_file": str(token), "timeout": "2s", "retry": {"max_attempts": 1},
                   "extra_labels": {"site": "lab-seven", "api_key": LABEL_SECRET}},
        "modem": {"mmcli_path": str(tmp_path / "no-mmcli")},
        "monitoring": {"clock_skew_check_interval": "2s"},
    }


def _commands(out: Outputs, agent: AgentProcess, phase: str, tmp_path: Path) -> None:
    cfg = str(agent.config_path)
    text = out.cli(f"{phase} check-config", "check-config", "--config", cfg)
    assert "fleet:<redacted>@" in text and "authKey=<redacted>" in text and "lab-seven" in text
    assert "# upload token from" in text and "sha256:" in text
    doc = json.loads(out.cli(f"{phase} check-config --json", "check-config", "--json", "--config", cfg))
    assert doc["remote"]["extra_labels"] == {"site": "lab-seven", "api_key": "<redacted>"}
    out.cli(f"{phase} diagnose", "diagnose", "--rate-seconds", "0", "--config", cfg, ok=(0, 1, 2))
    report = json.loads(out.cli(f"{phase} diagnose --json", "diagnose", "--json", "--rate-seconds", "0",
                                "--config", cfg, ok=(0, 1, 2)))
    assert report["uploads"]["url"].endswith("/api/v1/import?authKey=<redacted>"), report["uploads"]
    bundle = tmp_path / f"{phase}.tar.gz"
    out.cli(f"{phase} diagnose --bundle", "diagnose", "--bundle", str(bundle), "--rate-seconds", "0",
            "--config", cfg, ok=(0, 1, 2))
    members = out.bundle(f"{phase} bundle", bundle)
    _json_members(members, phase)
    assert "metrics.txt" in members and "metrics_collector_" in members["metrics.txt"], sorted(members)
    assert "kernel.txt" in members or "kernel.unavailable.txt" in members
    out.cli(f"{phase} queue stats", "queue", "stats", "--config", cfg)
    json.loads(out.cli(f"{phase} queue stats --json", "queue", "stats", "--json", "--config", cfg))
    out.cli(f"{phase} devices", "devices", "--config", cfg)
    json.loads(out.cli(f"{phase} devices --json", "devices", "--json", "--config", cfg))


@pytest.mark.slow
def test_no_planted_secret_in_any_output(tmp_path):
    token = tmp_path / "api-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    out = Outputs()
    # VictoriaMetrics' port is known before it runs: it is also the clock source (its Date
    # header), with the same secrets in that URL, and is down at first so that check fails.
    vm = VictoriaMetrics(tmp_path / "vm")
    clock_url = f"http://clock:{PASSWORD}@127.0.0.1:{vm.port}/health?authKey={QUERY_KEY}"
    closed = free_port()  # nothing listens: every upload fails with "cannot connect"
    agent = AgentProcess(tmp_path / "agent", _settings(
        tmp_path, f"http://fleet:{PASSWORD}@127.0.0.1:{closed}/api/v1/import?authKey={QUERY_KEY}", token))
    agent.settings["monitoring"]["clock_skew_url"] = clock_url
    agent.write_config()
    inputs = {agent.config_path, token}
    assert all(s in agent.config_path.read_text() for s in (PASSWORD, QUERY_KEY, LABEL_SECRET))
    try:
        # Phase 1: the clock check fails, then uploads fail; both are logged with their URLs.
        with agent:
            agent.wait_for(lambda: "skew check against" in agent.log(), timeout=30, what="a failed clock check")
            try:
                vm.start()
            except VMError as e:
                pytest.fail(str(e), pytrace=False)
            agent.wait_for(lambda: "cannot connect" in agent.log() and agent.health()["components"]["uploader"]
                           ["status"] != "ok", timeout=30, what="a failed upload, logged")
            out.http("phase1 /health", agent.base + "/health")
            out.http("phase1 /metrics", agent.base + "/metrics")
            _commands(out, agent, "phase1", tmp_path)
            assert agent.stop() == 0
        log = agent.log()
        assert f"http://fleet:<redacted>@127.0.0.1:{closed}/api/v1/import?authKey=<redacted>" in log, log
        assert f"skew check against http://clock:<redacted>@127.0.0.1:{vm.port}/health?authKey=<redacted>" in log

        # Phase 2: a real VictoriaMetrics takes the uploads (it ignores the key and credentials).
        agent.settings["remote"]["url"] = \
            f"http://fleet:{PASSWORD}@127.0.0.1:{vm.port}/api/v1/import?authKey={QUERY_KEY}"
        agent.write_config()
        with agent:
            agent.wait_for(lambda: (agent.health()["components"]["uploader"].get("details") or {})
                           .get("last_upload_time"), timeout=30, what="a successful upload")
            out.http("phase2 /health", agent.base + "/health")
            out.http("phase2 /metrics", agent.base + "/metrics")
            _commands(out, agent, "phase2", tmp_path)
            assert agent.stop() == 0
        vm.force_flush()
        stored = vm.export('{__name__="node_load1"}')
        assert stored and stored[0]["metric"]["site"] == "lab-seven", stored[:1]

        # Agent stopped: the spool is read from the file; the export is output too.
        cfg = str(agent.config_path)
        out.cli("queue stats (file)", "queue", "stats", "--config", cfg)
        out.cli("queue stats --json (file)", "queue", "stats", "--json", "--config", cfg)
        lines = out.cli("queue export", "queue", "export", "--config", cfg).splitlines()
        exported = tmp_path / "export.prom"
        out.cli("queue export -o", "queue", "export", "--format", "prometheus", "-o", str(exported),
                "--config", cfg)
        if lines:  # a clean stop may have drained everything
            metric = json.loads(lines[0])["metric"]
            assert metric["site"] == "lab-seven" and metric["api_key"] == "<redacted>"
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.stop()
        vm.stop()

    out.add("agent log", agent.log())
    vm_files = {p for p in (tmp_path / "vm").rglob("*")}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path not in inputs and path not in vm_files and f"files:{path}" not in out.texts:
            out.add(f"files:{path}", path.read_bytes())
    assert any(k.startswith("files:") and k.endswith("metrics.db") for k in out.texts), sorted(out.texts)[:20]
    assert len(out.texts) > 60, sorted(out.texts)
    leaks = out.leaks()
    assert not leaks, sorted(leaks)[:20]
