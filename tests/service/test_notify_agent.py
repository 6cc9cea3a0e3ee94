"""The agent speaks to a test-owned NOTIFY_SOCKET exactly as systemd expects (design §1, issue 6)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.support.agent import AgentProcess


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket; records (time, message)."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, prefix: str, timeout: float = 15, after: float = 0.0) -> float:
        """Time of the first message starting with ``prefix`` received at or after ``after``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, m in self.messages:
                if t >= after and m.startswith(prefix):
                    return t
            self.pump(0.1)
        raise AssertionError(f"no {prefix!r} within {timeout}s; got {[m for _, m in self.messages][-10:]}")

    def since(self, t0: float) -> list[tuple[float, str]]:
        return [(t, m) for t, m in self.messages if t >= t0]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.close()


def watchdog_times(msgs):
    return [t for t, m in msgs if m == "WATCHDOG=1"]


def test_ready_watchdog_status_reload_stall_and_stop(tmp_path, notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000", "METRICS_COLLECTOR_TEST_HOOKS": "1"}
    agent = AgentProcess(tmp_path, {"collection_interval": "2s"}, env=env)
    agent.start(wait_health=False)
    try:
        t_ready = notify_socket.wait_for("READY=1")
        first = [m for _, m in notify_socket.messages]
        assert first[0].startswith("READY=1"), first  # nothing before READY
        assert "STATUS=pending=" in first[0]
        notify_socket.pump(3.0)
        pings = watchdog_times(notify_socket.since(t_ready))
        # WATCHDOG_USEC=1s: a ping at most every 0.5 s, and never a gap the watchdog would punish.
        assert len(pings) >= 4, notify_socket.messages
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert min(gaps) >= 0.45 and max(gaps) < 1.0, gaps
        assert any(m.startswith("STATUS=pending=") and "last_upload=" in m for _, m in notify_socket.messages)

        # SIGHUP: RELOADING=1 then READY=1, and the loop keeps feeding the watchdog.
        t_hup = time.monotonic()
        agent.proc.send_signal(signal.SIGHUP)
        t_rel = notify_socket.wait_for("RELOADING=1", after=t_hup)
        t_ready2 = notify_socket.wait_for("READY=1", after=t_rel)
        assert t_hup <= t_rel <= t_ready2
        notify_socket.pump(1.5)
        assert watchdog_times(notify_socket.since(t_ready2))

        # A bad config on reload: the old one stays, still RELOADING/READY, and the agent lives.
        agent.config_path.write_text("collection_interval: whenever\n")
        t_bad = time.monotonic()
        agent.proc.send_signal(signal.SIGHUP)
        t_rel2 = notify_socket.wait_for("RELOADING=1", after=t_bad)
        notify_socket.wait_for("READY=1", after=t_rel2)
        assert agent.proc.poll() is None
        assert "reload refused, keeping the running config" in agent.log()

        # The loop stalls: WATCHDOG=1 stops (systemd would now kill and restart the service).
        agent.proc.send_signal(signal.SIGUSR2)
        t_stall = time.monotonic()
        notify_socket.pump(3.0)
        late = [t for t in watchdog_times(notify_socket.since(t_stall)) if t > t_stall + 0.6]
        assert not late, "WATCHDOG=1 kept coming from a stalled loop"

        t_term = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", after=t_term)
        assert agent.proc.wait(20) == 0
    finally:
        agent.kill()


def test_silent_without_notify_socket(tmp_path):
    """No NOTIFY_SOCKET (a laptop, a container): nothing is sent and nothing fails."""
    with AgentProcess(tmp_path) as agent:
        time.sleep(1.5)
        assert agent.stop() == 0
    assert "notify:" not in agent.log()


def test_watchdog_pid_for_another_process_is_ignored(tmp_path, notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    agent = AgentProcess(tmp_path, env=env)
    agent.start(wait_health=False)
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.pump(2.0)
        assert not watchdog_times(notify_socket.messages)
    finally:
        agent.stop()
