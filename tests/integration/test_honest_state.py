"""Issue 12: what the agent says about uploading is what happened, everywhere it says it.

One real agent (a child process whose kernel clock reports no sync, tests/support/fakewall.py)
uploads to a TCP fault server written here, switched through phases: port closed while the
clock is unverified, connection reset mid-body, refused, 429 with Retry-After, vmauth's 401,
204, and a server that accepts and never answers. In each phase /health, /metrics,
`diagnose --json` and `queue stats --json` must give the same pending and parked figures,
the uploader's state and message must name what happened, and the last success must be the
last 2xx and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from belabox_metrics import config
from belabox_metrics.health.scrape import parse_exposition
from tests.support.agent import AgentProcess
from tests.support.cli import APP, REPO, cli_argv, cli_env

VMAUTH_BODY = "cannot find the provided auth token"


class FaultServer:
    """Loopback TCP server acting out one failure mode at a time; records each POST's arrival."""

    def __init__(self) -> None:
        self.mode = "refuse"
        self.posts: list[tuple[float, str]] = []  # (monotonic arrival, mode)
        self.retry_after = 3
        self._lsock: socket.socket | None = None
        self._stop = threading.Event()
        # Bound but not listening while refusing: connects are refused, and the port stays ours
        # (no other process or test can be handed it in between).
        self._hold: socket.socket | None = self._bound(0)
        self.port = self._hold.getsockname()[1]

    def _bound(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/import"

    def set(self, mode: str) -> None:
        """Switch mode; "refuse" closes the listener so connects are refused by the kernel."""
        self.mode = mode
        if mode == "refuse" and self._lsock is not None:
            self._lsock.close()
            self._lsock = None
            if not self._stop.is_set():
                try:
                    self._hold = self._bound(self.port)
                except OSError:  # an accepted connection still open on the port: bind when listening
                    self._hold = None
        elif mode != "refuse" and self._lsock is None:
            s, self._hold = self._hold, None
            deadline = time.monotonic() + 5
            while s is None:
                try:
                    s = self._bound(self.port)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            s.listen(64)
            self._lsock = s
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.set("refuse")
        if self._hold is not None:
            self._hold.close()

    def _accept(self, lsock: socket.socket) -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            mode = self.mode
            if not head.startswith(b"POST"):  # the clock check: any answer with a Date will do
                if mode != "hang":
                    self._answer(conn, 204)
                return
            self.posts.append((time.monotonic(), mode))
            if mode in ("reset", "refuse"):  # took part of the body, then the server "crashed"
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if mode == "hang":  # accepts, never answers
                self._stop.wait(30)
                return
            m = re.search(rb"content-length:\s*(\d+)", head, re.I)
            body = head.split(b"\r\n\r\n", 1)[1]
            while m and len(body) < int(m.group(1)):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            if mode == "429":
                self._answer(conn, 429, {"Retry-After": str(self.retry_after)}, "slow down")
            elif mode == "401":
                self._answer(conn, 401, {}, VMAUTH_BODY)
            else:
                self._answer(conn, 204)
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _answer(conn: socket.socket, status: int, headers: dict | None = None, body: str = "") -> None:
        data = body.encode()
        lines = [f"HTTP/1.1 {status} X", f"Date: {formatdate(usegmt=True)}", f"Content-Length: {len(data)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)


@pytest.fixture
def fault():
    srv = FaultServer()
    yield srv
    srv.close()


def _cli_json(agent: AgentProcess, *args: str) -> dict:
    out = subprocess.run(cli_argv(*args, "--json", "--config", str(agent.config_path)), env=cli_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip(), f"{args}: rc {out.returncode}: {out.stderr[-2000:]}"
    return json.loads(out.stdout)


def _cli_text(agent: AgentProcess, *args: str) -> str:
    out = subprocess.run(cli_argv(*args, "--config", str(agent.config_path)), env=cli_env(),
                         capture_output=True, text=True, timeout=60)
    return out.stdout


def _metrics(agent: AgentProcess) -> dict:
    text = requests.get(agent.base + "/metrics", timeout=5).text
    out: dict = {"parked_by_reason": {}}
    for s in parse_exposition(text).samples:
        if s.name == "metrics_collector_spool_parked_samples" and s.value:
            out["parked_by_reason"][s.label("reason")] = int(s.value)
        elif s.name.startswith("metrics_collector_") and not dict(s.labels):
            out[s.name.removeprefix("metrics_collector_")] = s.value
        elif s.name == "metrics_collector_component_status":
            out.setdefault("component_status", {})[s.label("component")] = s.value
        elif s.name == "metrics_collector_build_info":
            out["build_info"] = dict(s.labels)
    return out


def uploader(agent: AgentProcess) -> dict:
    return requests.get(agent.base + "/health", timeout=5).json()["components"]["uploader"]


def agree(agent: AgentProcess) -> dict:
    """The same pending/parked figures in /health, /metrics, diagnose --json and queue stats --json."""
    last = None
    for _ in range(4):  # the spool may change between reads (an unpark): agree on a quiet moment
        t0 = time.time()
        up = uploader(agent)
        t1 = time.time()
        d = up["details"]
        m = _metrics(agent)
        t2 = time.time()
        diag = _cli_json(agent, "diagnose", "--rate-seconds", "0")["spool"]
        t3 = time.time()
        q = _cli_json(agent, "queue", "stats")
        t4 = time.time()
        views = {
            "health": (d["pending_count"], d["pending_bytes"], d["parked_count"], d["parked_bytes"],
                       d["parked_by_reason"]),
            "metrics": (int(m["spool_pending_samples"]), int(m["spool_pending_bytes"]),
                        sum(m["parked_by_reason"].values()), int(m["spool_parked_bytes"]), m["parked_by_reason"]),
            "diagnose": (int(diag["pending_samples"]), int(diag["pending_bytes"]), int(diag["parked_samples"]),
                         int(diag["parked_bytes"]), diag["parked_by_reason"]),
            "queue": (int(q["pending_samples"]), int(q["pending_bytes"]), int(q["parked_samples"]),
                      int(q["parked_bytes"]), q["parked_by_reason"]),
        }
        # The oldest sample's time as each view implies it (read time minus its age), as a
        # range: the ages grow while the commands run, and the agent refreshes them each tick
        # (plus a second of /metrics cache).
        ages = [(t0, t1, d["oldest_pending_age_seconds"]), (t2, t3, diag["oldest_age_seconds"]),
                (t3, t4, q["oldest_age_seconds"])]
        last = views, ages
        if len({json.dumps(v, sort_keys=True) for v in views.values()}) == 1:
            known = [(lo - a - 2.5, hi - a + 0.5) for lo, hi, a in ages if a is not None]
            assert len(known) in (0, 3), ages
            assert not known or max(k[0] for k in known) <= min(k[1] for k in known), ages
            return {"pending": views["health"][0], "parked": views["health"][2], "by_reason": views["health"][4],
                    "uploader": up, "metrics": m}
        time.sleep(0.5)
    raise AssertionError(f"the views disagree: {last}")


def wait_uploader(agent: AgentProcess, pred, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    up = None
    while time.monotonic() < deadline:
        up = uploader(agent)
        if pred(up):
            return up
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; uploader: {up}\n{agent.log()[-3000:]}")


def _error_lines(agent: AgentProcess) -> list[str]:
    return [ln for ln in agent.log().splitlines() if " ERROR " in ln and "upload" in ln.lower()
            and "error" in ln.lower()]


@pytest.mark.slow
@pytest.mark.long  # over 40 s: `scripts/test --long` (CI runs it after the suite)
def test_upload_state_is_what_happened_in_every_view(tmp_path: Path, fault: FaultServer):
    wall_file = tmp_path / "wall-base"
    wall_file.write_text(repr(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)))  # true time, kernel unsynced
    off = {"enabled": False}
    agent = AgentProcess(tmp_path, {
        "collection_interval": "1h",  # one collection at start: the spool holds still between phases
        "upload_interval": "1s",
        "remote": {"url": fault.url, "timeout": "2s", "max_bytes_per_second": 0,
                   "retry": {"max_attempts": 2, "initial_backoff": "100ms", "max_backoff": "200ms",
                             "max_retry_after": "10s"}},
        "monitoring": {"clock_skew_check_interval": "1s"},
        "collectors": {n: off for n in config.COLLECTOR_NAMES if n not in ("loadavg", "meminfo")},
        "logging": {"level": "info", "format": "console"},
    }, env={"BBM_TEST_WALL_FILE": str(wall_file), "PYTHONPATH": f"{APP}{os.pathsep}{REPO}"},
        launcher=[sys.executable, "-m", "tests.support.fakewall"])
    with agent:
        # --- A: port closed, clock never verified: everything parked, nothing has left the box
        up = wait_uploader(agent, lambda u: u["details"]["parked_count"] > 0, 15, "parked batches")
        a = agree(agent)
        assert a["pending"] == 0 and set(a["by_reason"]) == {"clock_unverified"}
        assert a["uploader"]["status"] == "degraded"
        assert a["uploader"]["message"].startswith("clock not verified: "), a["uploader"]
        assert "batches parked" in a["uploader"]["message"]
        assert up["details"]["last_upload_time"] is None and fault.posts == []
        assert a["metrics"].get("upload_last_success_timestamp_seconds", 0) == 0
        assert a["metrics"]["component_status"]["uploader"] == 1
        assert a["metrics"]["build_info"]["version"]
        text = _cli_text(agent, "diagnose", "--rate-seconds", "0")
        assert "no success seen" in text and "backlog: empty" not in text
        assert re.search(r"parked: [\d,]+ samples.*clock_unverified", text.replace("\n", " ")), text
        qtext = _cli_text(agent, "queue", "stats")
        assert "clock_unverified" in qtext and "earlier boot" not in qtext

        # --- B: the server learns us the time (its Date), then resets every upload mid-body
        fault.set("reset")
        up = wait_uploader(agent, lambda u: "reset" in u["message"], 20, "connection reset")
        assert up["status"] == "degraded"
        assert re.search(r"connection reset by server .* since \d\d:\d\d:\d\d", up["message"]), up
        b = agree(agent)
        assert b["parked"] == 0 and b["pending"] > 0  # unparked once the time was known
        assert b["uploader"]["details"]["last_upload_time"] is None
        time.sleep(2.5)
        errors, posts = len(_error_lines(agent)), len([p for p in fault.posts if p[1] == "reset"])
        assert errors >= 1 and abs(posts - 2 * errors) <= 2, (errors, posts)  # 2 attempts, 1 ERROR line

        # --- C: nothing listens: refused, named as such (not "HTTP 204", not stale)
        fault.set("refuse")
        up = wait_uploader(agent, lambda u: "connection refused" in u["message"], 10, "connection refused")
        assert up["message"].startswith(f"cannot connect to 127.0.0.1:{fault.port}: connection refused since ")
        text = _cli_text(agent, "diagnose", "--rate-seconds", "0")
        assert "connection refused" in text and "HTTP 204" not in text

        # --- E: 429 with Retry-After holds across cycles
        fault.set("429")
        first = len(fault.posts)
        wait_uploader(agent, lambda u: "HTTP 429" in (u["details"]["last_error"] or ""), 15, "429")
        time.sleep(2 * fault.retry_after + 0.5)
        times = [t for t, mode in fault.posts[first:] if mode == "429"]
        assert len(times) >= 2, times
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= fault.retry_after - 0.05, gaps  # never sooner than the server asked

        # --- F: vmauth refuses the token: error, backoff instead of a storm, advice in diagnose
        fault.set("401")
        first = len(fault.posts)
        up = wait_uploader(agent, lambda u: u["status"] == "error", 15, "token refused")
        assert up["message"] == "server refused the token (401)"
        time.sleep(3.5)
        times = [t for t, mode in fault.posts[first:] if mode == "401"]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert len(times) <= 4 and all(g >= 0.9 for g in gaps) and gaps == sorted(gaps), gaps
        text = _cli_text(agent, "diagnose", "--rate-seconds", "0")
        assert "check the token in /etc/belabox-metrics/api-token" in text and "belabox-fleet register" in text
        f = agree(agent)
        assert f["metrics"]["component_status"]["uploader"] == 2

        # --- G: 204: ok, and the last success is that 2xx
        fault.set("204")
        up = wait_uploader(agent, lambda u: u["status"] == "ok", 30, "ok after 204")
        assert up["message"] in ("uploading metrics", "up to date") or up["message"].startswith("up to date: ")
        assert up["details"]["last_upload_time"]
        g = agree(agent)
        assert g["pending"] == 0 and g["parked"] == 0
        success_at = g["metrics"]["upload_last_success_timestamp_seconds"]
        assert success_at > 0

        # --- D: data flowing again (reload: collect every second), then a server that accepts
        # and never answers: health turns while the request hangs, not at the cycle's end
        assert agent.stop() == 0
        agent.settings["collection_interval"] = "1s"
        agent.write_config()
        agent.start()
        up = wait_uploader(agent, lambda u: u["message"] == "uploading metrics", 15, "uploading again")
        g = {"uploader": up}
        success_at = _metrics(agent)["upload_last_success_timestamp_seconds"]
        fault.set("hang")
        hung_at = time.monotonic()
        up = wait_uploader(agent, lambda u: u["status"] != "ok", 8, "degraded while the server hangs")
        assert time.monotonic() - hung_at < 5, up
        up = wait_uploader(agent, lambda u: "server not answering" in u["message"], 8, "timeout named")
        last_ok = up["details"]["last_upload_time"]
        assert last_ok and last_ok >= g["uploader"]["details"]["last_upload_time"]
        time.sleep(2.5)  # more failures: the last success stays the last 2xx
        assert uploader(agent)["details"]["last_upload_time"] == last_ok
        assert _metrics(agent)["upload_last_success_timestamp_seconds"] >= success_at


def test_real_vmauth_refusing_the_token_is_named_and_backed_off(tmp_path: Path, caplog):
    """vmauth answers an unknown bearer token with 400 and "cannot find the provided auth token"
    (echoing the token): a refused token, not a poison sample to bisect, and never logged."""
    import logging

    from tests.support.uploading import Env, fill, make_config, write_token
    from tests.support.vm import free_port

    port = free_port()
    (tmp_path / "auth.yml").write_text('users:\n- bearer_token: "the-right-one"\n  url_prefix: "http://127.0.0.1:1/"\n')
    proc = subprocess.Popen(["vmauth", f"-auth.config={tmp_path / 'auth.yml'}", f"-httpListenAddr=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "vmauth exited at start"
                time.sleep(0.1)
        wrong = "wrong-token-1234567890"
        tok = write_token(tmp_path / "api-token", wrong)
        env = Env(tmp_path, make_config(f"http://127.0.0.1:{port}/api/v1/import", auth_token_file=str(tok)))
        try:
            fill(env.spool, batches=2, series=5)
            caplog.set_level(logging.DEBUG)
            res = env.uploader.cycle()
            assert not res.ok and res.status == 400 and not res.dropped and res.requests == 1
            h = env.uploader_health()
            assert (h.status, h.message) == ("error", "server refused the token (400)")
            assert env.pending() == 10
            again = env.uploader.cycle()
            assert again.stopped and again.deferred_s > 0 and again.requests == 0  # no storm
            everything = caplog.text + json.dumps(env.health.report())
            assert "cannot find the provided auth token" in everything and wrong not in everything
            write_token(tmp_path / "api-token", "another-token-0987654321")  # a new token goes at once
            assert env.uploader.cycle().requests == 1
        finally:
            env.close()
    finally:
        proc.terminate()
        proc.wait(10)
