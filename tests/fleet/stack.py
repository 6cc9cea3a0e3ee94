"""A fleet under test: real VictoriaMetrics, a fleet directory, real vmauth started from the
generated vmauth.env (``vmauth -envflag.enable``, as the shipped systemd unit runs it).

Processes are started on free loopback ports and stopped by PID (SIGTERM, then SIGKILL
after a bound). A missing binary fails the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tests.support import process
from tests.support.cli import cli_env
from tests.support.vm import VictoriaMetrics, VMError, free_port

VMAUTH_BINARY = os.environ.get("VMAUTH_BINARY", "/usr/bin/vmauth")


def run_fleet(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "belabox_metrics.fleet", *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def ok(*args: str) -> subprocess.CompletedProcess:
    res = run_fleet(*args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


class Vmauth:
    def __init__(self, fleet_dir: Path, log_path: Path):
        self.fleet_dir = fleet_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.listen = env_file(fleet_dir / "vmauth.env")["httpListenAddr"]

    @property
    def base(self) -> str:
        return f"http://{self.listen}"

    def start(self, timeout: float = 10) -> Vmauth:
        if not os.access(VMAUTH_BINARY, os.X_OK):
            raise VMError(f"{VMAUTH_BINARY} is missing: install Debian's victoria-metrics package")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env_file(self.fleet_dir / "vmauth.env")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([VMAUTH_BINARY, "-envflag.enable"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise VMError(f"vmauth exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise VMError(f"vmauth not healthy within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        process.stop(proc, 10)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def post(self, token: str, body: bytes) -> requests.Response:
        return requests.post(self.base + "/api/v1/import", data=body,
                             headers={"Authorization": f"Bearer {token}"}, timeout=5)


class Stack:
    """VictoriaMetrics + fleet dir + vmauth. ``public_url`` is vmauth itself (no TLS in tests)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.vm = VictoriaMetrics(workdir / "vm")
        self.dir = workdir / "fleet"
        self.seeds = workdir / "seeds"
        self.vmauth: Vmauth | None = None

    def start(self, dark_after: str = "5s") -> Stack:
        self.vm.start()
        self.seeds.mkdir(parents=True, exist_ok=True)
        listen = f"127.0.0.1:{free_port()}"
        ok("init", self.dir, "--vm", self.vm.base, "--public-url", f"http://{listen}", "--listen", listen,
           "--dark-after", dark_after)
        self.vmauth = Vmauth(self.dir, self.workdir / "vmauth.log").start()
        return self

    def stop(self) -> None:
        if self.vmauth is not None:
            self.vmauth.stop()
        self.vm.stop()

    def enroll(self, device_id: str, *labels: str) -> dict:
        seed = self.seeds / f"{device_id}.yaml"
        args = ["enroll", self.dir, device_id, "--seed-out", seed]
        for lab in labels:
            args += ["--label", lab]
        res = ok(*args)
        assert "vmauth runs the new config" in res.stdout, res.stdout + res.stderr
        return yaml.safe_load(seed.read_text())

    def agent_settings(self, seed: dict, token_file: Path, **over) -> dict:
        """The agent config a flashed box would have: the seed's keys, the token in its own file."""
        token_file.write_text(seed["token"] + "\n")
        os.chmod(token_file, 0o600)
        remote = dict(seed["remote"], auth_token_file=str(token_file))
        remote.update(over.pop("remote", {}))
        return {"device_id": seed["device_id"], "remote": remote, **over}

    def list_json(self) -> dict:
        import json
        return json.loads(ok("list", self.dir, "--json").stdout)
