"""Run `metrics-collector run` as a child process with a generated config, for end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests
import yaml

from tests.support import process
from tests.support.cli import cli_argv, cli_env
from tests.support.vm import free_port


class AgentProcess:
    def __init__(self, workdir: Path, settings: dict | None = None, env: dict[str, str] | None = None,
                 name: str = "agent", launcher: list[str] | None = None):
        """``launcher``: argv that runs the CLI with the arguments after it, instead of
        ``python -m belabox_metrics`` (e.g. a ``python -c`` wrapper that reports on the process)."""
        self.launcher = launcher
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        base = {
            "device_id": "e2e-device",
            "collection_interval": "1s",
            "upload_interval": "1s",
            "storage": {"path": str(self.workdir / "data" / "metrics.db"), "commit_interval": "1s"},
            "health": {"listen_addr": f"127.0.0.1:{self.port}"},
            "logging": {"level": "debug", "format": "console"},
        }
        self.settings = _merge(base, settings or {})
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self._logs: list[str] = []
        self.write_config()

    @property
    def db_path(self) -> Path:
        return Path(self.settings["storage"]["path"])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.settings))

    def start(self, wait_health: bool = True, timeout: float = 20) -> AgentProcess:
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child for its lifetime
        args = ("run", "--config", str(self.config_path))
        argv = [*self.launcher, *args] if self.launcher else cli_argv(*args)
        self.proc = subprocess.Popen(argv, env=cli_env(self.env),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait_health:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
                try:
                    requests.get(self.base + "/health/live", timeout=1)
                    return self
                except requests.RequestException:
                    time.sleep(0.1)
            raise AssertionError(f"agent health did not come up:\n{self.log()[-3000:]}")
        return self

    def health(self) -> dict:
        return requests.get(self.base + "/health", timeout=5).json()

    def wait_for(self, predicate, timeout: float = 20, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (requests.RequestException, KeyError, TypeError, ValueError):
                pass  # not answering yet, or that component has not reported yet
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"agent did not stop on SIGTERM:\n{self.log()[-3000:]}") from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL if still running (a test's cleanup after a failure)."""
        process.kill(self.proc)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def committed_wall_ms(self) -> list[int]:
        """Batch times the agent logged as committed to disk."""
        out = []
        for m in re.finditer(r"committed batches wall_ms=([0-9,]+)", self.log()):
            out.extend(int(x) for x in m.group(1).split(","))
        return out

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]
