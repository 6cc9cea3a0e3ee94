"""A minimal VictoriaMetrics starter for the image tests, until tests/support/vm.py is on main.

Same interface as tests/support/vm.py (start/stop, import_url, force_flush, export);
Debian's binary on a free loopback port, stopped by PID (feasibility §1 recipe).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

VM_BINARY = "/usr/bin/victoria-metrics"


class VMError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VictoriaMetrics:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def import_url(self) -> str:
        return f"{self.base}/api/v1/import"

    def start(self) -> VictoriaMetrics:
        if not Path(VM_BINARY).is_file():
            raise VMError(f"{VM_BINARY} is missing: install Debian's victoria-metrics")
        log = open(self.workdir / "vm.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen([VM_BINARY, f"-httpListenAddr=127.0.0.1:{self.port}",
                                      f"-storageDataPath={self.workdir / 'vm-data'}", "-retentionPeriod=100y",
                                      "-search.latencyOffset=0s"], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as r:
                    if r.read().strip() == b"OK":
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise VMError("victoria-metrics did not become healthy in 15s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def force_flush(self) -> None:
        urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=10).read()

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        data = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(f"{self.base}/api/v1/export", data=data, timeout=30) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
