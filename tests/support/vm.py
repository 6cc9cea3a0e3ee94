"""A real VictoriaMetrics for tests: Debian's single-node binary on a free loopback port.

Recipe from reference/feasibility.md §1: ``-retentionPeriod=100y`` so old test timestamps
are kept, ``-search.latencyOffset=0s`` so recent points are visible, and
``/internal/force_flush`` before reading back. Stopped by PID: SIGTERM, then SIGKILL
after a bound. A missing binary fails the test with the reason; it never skips.

    def test_x(vm):                       # the fixture
        post(vm.import_url, ...)
        vm.force_flush()
        assert vm.count_samples('{__name__="x"}') == 3

    with VictoriaMetrics(tmp_path, extra_flags=["-dedup.minScrapeInterval=1ms"]) as vm: ...
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support import process

VM_BINARY = os.environ.get("VM_BINARY", "/usr/bin/victoria-metrics")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0  # graceful stop takes about 2 s (feasibility.md §1)


class VMError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VictoriaMetrics:
    def __init__(self, workdir: str | os.PathLike, extra_flags: list[str] | tuple[str, ...] = (),
                 port: int | None = None, binary: str = VM_BINARY):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "vm-data"
        self.log_path = self.workdir / "vm.log"
        self.extra_flags = list(extra_flags)
        self.port = port or free_port()
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def import_url(self) -> str:
        return f"{self.base}/api/v1/import"

    def start(self) -> VictoriaMetrics:
        if not os.access(self.binary, os.X_OK):
            raise VMError(f"{self.binary} is missing: install Debian's victoria-metrics package "
                          "(scripts/test does)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data_dir}",
                "-retentionPeriod=100y", "-search.latencyOffset=0s", *self.extra_flags]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise VMError(f"victoria-metrics exited with {self.proc.returncode} at start; log tail:\n"
                              f"{self.log_tail()}")
            try:
                if self.http.get(f"{self.base}/health", timeout=1).text.strip() == "OK":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise VMError(f"victoria-metrics not healthy within {START_TIMEOUT:g}s; log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM by PID, wait, SIGKILL after STOP_TIMEOUT; waits for the PID to go, so the
        port and data dir can be reused at once."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        process.stop(proc, STOP_TIMEOUT)
        self.http.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # --- reading back -------------------------------------------------------------------

    def force_flush(self) -> None:
        r = self.http.get(f"{self.base}/internal/force_flush", timeout=10)
        r.raise_for_status()

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        """Every series matching ``match`` as {"metric": {...}, "values": [...], "timestamps": [...]},
        one dict per series (VM may split a series over several lines), samples in time order."""
        # `end` defaults to "now" truncated to the second, which hides samples of the last second.
        end = int(time.time()) + 3 * 86_400
        r = self.http.post(f"{self.base}/api/v1/export", data={"match[]": match, "end": str(end)}, timeout=30)
        r.raise_for_status()
        merged: dict[tuple, dict] = {}
        for line in r.text.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = tuple(sorted(row["metric"].items()))
            into = merged.setdefault(key, {"metric": row["metric"], "values": [], "timestamps": []})
            into["values"].extend(row["values"])
            into["timestamps"].extend(row["timestamps"])
        for s in merged.values():
            pairs = sorted(zip(s["timestamps"], s["values"], strict=True))
            s["timestamps"] = [t for t, _ in pairs]
            s["values"] = [v for _, v in pairs]
        return list(merged.values())

    def count_samples(self, match: str = '{__name__=~".+"}') -> int:
        return sum(len(s["values"]) for s in self.export(match))

    def metrics_text(self) -> str:
        r = self.http.get(f"{self.base}/metrics", timeout=10)
        r.raise_for_status()
        return r.text

    def metric(self, name: str, labels: str = "") -> float:
        """One value of VM's own /metrics, e.g. metric('vm_rows_invalid_total', 'type="vmimport"');
        0 when the series is not there yet."""
        want = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics_text().splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
def vm(tmp_path):
    """A running VictoriaMetrics for one test; fails (never skips) when it cannot run."""
    server = VictoriaMetrics(tmp_path)
    try:
        server.start()
    except VMError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
