"""sd_notify messages received on a test-owned NOTIFY_SOCKET (path and abstract)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform.notify import Notifier


class Receiver:
    def __init__(self, addr: str):
        self.addr = addr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + addr[1:] if addr.startswith("@") else addr)
        self.sock.settimeout(2)

    def messages(self) -> list[str]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(2)
        return out

    def close(self) -> None:
        self.sock.close()
        if not self.addr.startswith("@"):
            os.unlink(self.addr)


@pytest.fixture(params=["path", "abstract"])
def receiver(request, tmp_path, monkeypatch):
    addr = str(tmp_path / "notify.sock") if request.param == "path" else f"@bbm-test-{uuid.uuid4().hex}"
    r = Receiver(addr)
    monkeypatch.setenv("NOTIFY_SOCKET", addr)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield r
    r.sock.close()


def test_lifecycle_messages_exact(receiver):
    n = Notifier()
    assert n.ready("collecting 12 collectors") and n.status("uploading\nbacklog 3")
    assert n.reloading() and n.ready() and n.extend_timeout(30) and n.stopping()
    got = receiver.messages()
    assert got[0] == "READY=1\nSTATUS=collecting 12 collectors"
    assert got[1] == "STATUS=uploading backlog 3"  # one line: a newline would start a new field
    assert got[2].startswith("RELOADING=1\nMONOTONIC_USEC=") and got[2].split("=")[-1].isdigit()
    assert got[3:] == ["READY=1", "EXTEND_TIMEOUT_USEC=30000000", "STOPPING=1"]


def test_watchdog_at_most_every_half_interval(receiver, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.watchdog_interval == 1.0
    assert n.watchdog_due(100.0) and n.ping(100.0)
    assert not n.watchdog_due(100.5) and not n.ping(100.5)
    assert n.ping(101.0)
    assert not n.ping(101.2)
    assert n.ping(105.0)  # a late ping (a slow tick) still goes out at once
    assert receiver.messages() == ["WATCHDOG=1"] * 3
    # The loop sleeps until the next ping is due, not a whole interval from any wake.
    assert n.next_ping_in(105.4) == pytest.approx(0.6) and n.next_ping_in(107.0) == 0.0


def test_no_watchdog_no_ping_deadline(receiver, monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert Notifier().next_ping_in(1.0) is None


def test_watchdog_of_another_pid_is_ignored(receiver, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    n = Notifier()
    assert n.watchdog_interval is None and not n.watchdog_due(0.0) and not n.ping(0.0)
    assert n.ready()
    assert receiver.messages() == ["READY=1"]


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_watchdog_disabled_without_valid_usec(receiver, monkeypatch, usec):
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    n = Notifier()
    assert not n.ping(0.0) and receiver.messages() == []


def test_silent_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = Notifier()
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready("x") and not n.ping(0.0) and not n.stopping()
    assert n.errors == 0


def test_unsupported_socket_kind_is_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    n = Notifier()
    assert not n.enabled and not n.ready()


def test_reconnects_after_the_receiver_comes_back(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    sm = SelfMetrics()
    r = Receiver(path)
    n = Notifier(selfmetrics=sm)
    assert n.ready()
    r.close()
    assert not n.status("systemd is away")  # counted, not raised
    assert n.errors == 1 and sm.value("metrics_collector_notify_errors_total") == 1
    r = Receiver(path)  # e.g. systemd re-executed and bound the socket again
    try:
        assert n.status("back")
        assert r.messages() == ["STATUS=back"]
    finally:
        r.close()


def test_missing_socket_at_start_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    n = Notifier()
    assert n.enabled and not n.ready() and n.errors >= 1
