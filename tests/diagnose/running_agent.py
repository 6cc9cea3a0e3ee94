"""A `metrics-collector run` child process on tmp paths and free ports, stopped by PID."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.cli import REPO, cli_argv, cli_env

BOARD = REPO / "hardware" / "generic"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def board_roots(board: Path = BOARD) -> tuple[Path, Path]:
    procfs, sysfs = board / "proc", board / "sys"
    assert procfs.is_dir() and sysfs.is_dir(), f"{board} has no proc/ and sys/ trees (collectors' board data)"
    return procfs, sysfs


def write_config(tmp: Path, remote_url: str = "", extra: str = "", board: Path = BOARD,
                 device_id: str = "diag-box", mmcli: str | None = None) -> Path:
    """A config on tmp paths and a free port; mmcli None points at a missing program (no modems)."""
    procfs, sysfs = board_roots(board)
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    remote = f"remote:\n  url: {remote_url}\n  timeout: 2s\n  retry:\n    max_attempts: 1\n" if remote_url else ""
    path = tmp / "config.yaml"
    path.write_text(f"""device_id: {device_id}
collection_interval: 1s
upload_interval: 1s
{remote}storage:
  path: {tmp}/data/metrics.db
  commit_interval: 1s
health:
  listen_addr: 127.0.0.1:{free_port()}
monitoring:
  clock_skew_check_interval: 2s
host:
  procfs: {procfs}
  sysfs: {sysfs}
  rootfs: {board / "root"}
modem:
  mmcli_path: {mmcli or f"{tmp}/no-mmcli"}
{extra}""")
    return path


def health_base(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.strip().startswith("listen_addr:"):
            return "http://" + line.split(":", 1)[1].strip()
    raise AssertionError("no listen_addr")


def get_health(base: str) -> dict | None:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 carries the JSON too
        try:
            return json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class Agent:
    def __init__(self, config: Path, env: dict[str, str] | None = None):
        self.config = config
        self.base = health_base(config)
        self.log = config.parent / "agent.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cli_argv("run", "--config", str(config)), env=cli_env(env),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        doc = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"agent exited with {self.proc.returncode}:\n{self.log_tail()}"
            doc = get_health(self.base)
            if doc is not None and predicate(doc):
                return doc
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last /health: {json.dumps(doc, indent=1)}\n"
                             f"{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Answering401:
    """A tiny import endpoint that refuses every token, with a Date header like any server."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b"Unauthorized"
                self.send_response(401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = do_HEAD = _refuse

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def import_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/import"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
