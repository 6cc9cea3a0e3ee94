"""The two sides of bench_peers: our agent, and node_exporter scraped by vmagent.

Each side is started as real processes on 127.0.0.1 (free ports), its data directory on the
LoopFs it is given, and stopped by PID. ``cpu_seconds`` and ``peak_rss_mb`` read
/proc/<pid>/stat and /proc/<pid>/status of the side's processes.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests
import yaml

from tests.support import process
from tests.support.cli import APP, cli_argv, cli_env
from tests.support.vm import free_port

NODE_EXPORTER = os.environ.get("NODE_EXPORTER_BINARY", "/usr/bin/prometheus-node-exporter")
VMAGENT = os.environ.get("VMAGENT_BINARY", "/usr/bin/vmagent")
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class StackError(RuntimeError):
    pass


# --- /proc readers (pure parsing separate from reading) ----------------------------------------

def parse_cpu_ticks(stat: str, children: bool) -> int:
    """utime+stime (and cutime+cstime of waited-for children) from a /proc/<pid>/stat line."""
    f = stat.rsplit(")", 1)[1].split()  # the comm field may hold spaces and parentheses
    ticks = int(f[11]) + int(f[12])  # fields 14, 15 of proc(5)
    return ticks + (int(f[13]) + int(f[14]) if children else 0)  # fields 16, 17


def parse_vm_hwm_kb(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise StackError("no VmHWM in /proc/<pid>/status")


def cpu_seconds(pid: int, children: bool, procfs: str = "/proc") -> float:
    with open(f"{procfs}/{pid}/stat", encoding="ascii", errors="replace") as fh:
        return parse_cpu_ticks(fh.read(), children) / CLK_TCK


def live_children(pid: int, procfs: str = "/proc") -> list[int]:
    """PIDs of ``pid``'s children still running, recursively (/proc/<pid>/task/*/children)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"{procfs}/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{procfs}/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids = [int(x) for x in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(live_children(kid, procfs))
    return out


def tree_cpu_seconds(pid: int, procfs: str = "/proc") -> float:
    """A process with every child: those it reaped (cutime) and those still running (a
    long-lived `journalctl -f` would otherwise never count)."""
    total = cpu_seconds(pid, children=True, procfs=procfs)
    for kid in live_children(pid, procfs):
        try:
            total += cpu_seconds(kid, children=True, procfs=procfs)
        except OSError:
            pass  # it ended between the listing and the read: its parent reaps it into cutime
    return total


def peak_rss_mb(pid: int, procfs: str = "/proc") -> float:
    with open(f"{procfs}/{pid}/status", encoding="ascii", errors="replace") as fh:
        return parse_vm_hwm_kb(fh.read()) / 1024


def compile_like_the_deb() -> None:
    """Byte-compile the package as the .deb's postinst does (py3compile). Without it, where
    PYTHONDONTWRITEBYTECODE is set (as on the CI machine), every start of the agent and of its
    config-validating child compiles ~120 modules from source: 0.2 s of CPU and a higher peak
    RSS that no installed box pays."""
    import compileall

    if not compileall.compile_dir(str(APP / "belabox_metrics"), quiet=1):
        raise StackError("byte-compiling the package failed (python -m compileall app/belabox_metrics)")


# --- processes ---------------------------------------------------------------------------------

def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    if not os.access(argv[0], os.X_OK) and "/" in argv[0]:
        raise StackError(f"{argv[0]} is missing: install its Debian package (scripts/test does)")
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _stop(proc: subprocess.Popen | None) -> None:
    process.stop(proc, STOP_TIMEOUT)


def _answers(url: str, expect: str | None = None) -> bool:
    try:
        r = requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return r.status_code == 200 and (expect is None or r.text.strip() == expect)


class NotifyListener:
    """Test-owned NOTIFY_SOCKETs, drained by one thread (an unread datagram queue would block
    the agent's STATUS sends); remembers when each socket first got READY=1."""

    def __init__(self):
        self.socks: dict[int, tuple[str, socket.socket]] = {}
        self.ready_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def new_socket(self, name: str) -> str:
        """An abstract socket ("@..." in NOTIFY_SOCKET): no path length limit (108 bytes would
        not fit pytest's tmp_path), nothing left on disk."""
        path = f"@bench-peers-{os.getpid()}-{len(self.socks)}-{name}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind("\0" + path[1:])
        s.setblocking(False)
        self.socks[s.fileno()] = (path, s)
        return path

    def _loop(self) -> None:
        while not self._stop.is_set():
            fds = list(self.socks)
            if not fds:
                time.sleep(0.05)
                continue
            ready, _, _ = select.select(fds, [], [], 0.05)
            now = time.monotonic()
            for fd in ready:
                path, s = self.socks[fd]
                try:
                    msg = s.recv(4096).decode(errors="replace")
                except OSError:
                    continue
                if "READY=1" in msg.split("\n"):
                    self.ready_at.setdefault(path, now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for _, s in self.socks.values():
            s.close()


class OurStack:
    """`python -m belabox_metrics run` with default settings except paths, ports, intervals."""

    side = "ours"

    def __init__(self, name: str, workdir: Path, data_dir: Path, interval: float, remote_url: str,
                 notify: NotifyListener, upload_interval: float | None = None,
                 commit_interval: float | None = None):
        self.name, self.workdir, self.interval = name, workdir, interval
        self.port = free_port()
        self.notify_path = notify.new_socket(name)
        self.notify = notify
        settings = {
            "device_id": name,
            "collection_interval": f"{interval:g}s",
            "storage": {"path": str(data_dir / "metrics.db")},
            "health": {"listen_addr": f"127.0.0.1:{self.port}"},
            "remote": {"url": remote_url},
        }
        if upload_interval is not None:
            settings["upload_interval"] = f"{upload_interval:g}s"
        if commit_interval is not None:
            settings["storage"]["commit_interval"] = f"{commit_interval:g}s"
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(settings))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.t_launch = 0.0
        self.ready_s: float | None = None

    def start(self) -> None:
        env = cli_env({"NOTIFY_SOCKET": self.notify_path})
        self.t_launch = time.monotonic()
        self.proc = _spawn(cli_argv("run", "--config", str(self.config_path)), self.log_path, env)

    def wait_ready(self) -> float:
        deadline = self.t_launch + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"{self.name}: agent exited with {self.proc.returncode}: {self.log_tail()}")
            at = self.notify.ready_at.get(self.notify_path)
            if at is not None:
                self.ready_s = at - self.t_launch
                return self.ready_s
            time.sleep(0.01)
        raise StackError(f"{self.name}: no READY=1 within {READY_TIMEOUT:g}s: {self.log_tail()}")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.proc.pid)

    def pending(self) -> int:
        h = requests.get(f"http://127.0.0.1:{self.port}/health", timeout=5).json()
        return int(h["components"]["storage"]["details"]["pending_count"])

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        _stop(self.proc)


class PeerStack:
    """node_exporter (default collectors) scraped by vmagent at the same interval; vmagent's
    -remoteWrite.tmpDataPath (its on-disk queue) is the data directory."""

    side = "peers"

    def __init__(self, name: str, workdir: Path, data_dir: Path, interval: float, remote_write_url: str):
        self.name, self.workdir, self.interval = name, workdir, interval
        self.ne_port, self.va_port = free_port(), free_port()
        scrape = {
            "global": {"scrape_interval": f"{interval:g}s"},
            "scrape_configs": [{"job_name": "node", "static_configs": [
                {"targets": [f"127.0.0.1:{self.ne_port}"], "labels": {"device_id": name}}]}],
        }
        cfg = workdir / f"{name}-scrape.yaml"
        cfg.write_text(yaml.safe_dump(scrape))
        self.ne_argv = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.ne_port}"]
        self.va_argv = [VMAGENT, f"-httpListenAddr=127.0.0.1:{self.va_port}", f"-promscrape.config={cfg}",
                        f"-remoteWrite.url={remote_write_url}", f"-remoteWrite.tmpDataPath={data_dir / 'vmagent'}"]
        self.ne: subprocess.Popen | None = None
        self.va: subprocess.Popen | None = None
        self.t_launch = 0.0
        self.ready_s: float | None = None

    def start(self) -> None:
        self.t_launch = time.monotonic()
        self.ne = _spawn(self.ne_argv, self.workdir / f"{self.name}-node_exporter.log")
        self.va = _spawn(self.va_argv, self.workdir / f"{self.name}-vmagent.log")

    def wait_ready(self) -> float:
        """Both started together; ready when both HTTP ports answer."""
        deadline = self.t_launch + READY_TIMEOUT
        ne_ok = va_ok = False
        while time.monotonic() < deadline:
            for proc, what in ((self.ne, "node_exporter"), (self.va, "vmagent")):
                if proc.poll() is not None:
                    raise StackError(f"{self.name}: {what} exited with {proc.returncode}")
            ne_ok = ne_ok or _answers(f"http://127.0.0.1:{self.ne_port}/")
            va_ok = va_ok or _answers(f"http://127.0.0.1:{self.va_port}/health", "OK")
            if ne_ok and va_ok:
                self.ready_s = time.monotonic() - self.t_launch
                return self.ready_s
            time.sleep(0.01)
        raise StackError(f"{self.name}: node_exporter/vmagent not answering within {READY_TIMEOUT:g}s")

    def pids(self) -> list[int]:
        return [self.ne.pid, self.va.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p, children=False) for p in self.pids())

    def peak_rss_mb(self) -> float:
        return sum(peak_rss_mb(p) for p in self.pids())

    def pending(self) -> int:
        return 0  # vmagent flushes its queue every second (-remoteWrite.flushInterval)

    def stop(self) -> None:
        _stop(self.va)
        _stop(self.ne)
