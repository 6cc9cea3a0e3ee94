"""Uploads honour http_proxy/https_proxy/no_proxy (tidewatch ignored them: W34)."""

from __future__ import annotations

import socket
import threading

import pytest

from belabox_metrics.platform.boundedhttp import Client, FetchError, proxy_for


@pytest.mark.parametrize("env,host,port,want", [
    ({}, "vm.example.org", 443, None),
    ({"https_proxy": "http://proxy.lan:3128"}, "vm.example.org", 443, ("proxy.lan", 3128)),
    ({"HTTPS_PROXY": "proxy.lan:3128"}, "vm.example.org", 443, ("proxy.lan", 3128)),
    ({"https_proxy": "http://p:1", "no_proxy": "example.org"}, "vm.example.org", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": ".example.org"}, "vm.example.org", 443, None),
    ({"https_proxy": "http://p:1", "NO_PROXY": "*"}, "anything", 443, None),
    ({"https_proxy": "http://p:1", "no_proxy": "vm.example.org:8443"}, "vm.example.org", 443, ("p", 1)),
    ({"https_proxy": "http://p:1", "no_proxy": "ample.org"}, "vm.example.org", 443, ("p", 1)),
    ({"http_proxy": "http://p:1"}, "vm.example.org", 443, None),  # the scheme decides
])
def test_proxy_choice(env, host, port, want):
    got = proxy_for("https", host, port, env)
    assert (None if got is None else (got.hostname, got.port)) == want


class RecordingProxy:
    """Records the first request head it gets and answers with a fixed response."""

    def __init__(self, answer: bytes):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.heads: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.heads.append(data.split(b"\r\n\r\n")[0].decode())
            conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


def test_plain_http_goes_through_the_proxy_in_absolute_form(monkeypatch):
    proxy = RecordingProxy(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("http_proxy", f"http://user:pw@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    try:
        with Client() as c:
            answer = c.request("POST", "http://vm.example.invalid:8428/api/v1/import", budget=5, max_body=100,
                               body=b"{}")
        assert answer.status == 204
        head = proxy.heads[0]
        assert head.startswith("POST http://vm.example.invalid:8428/api/v1/import HTTP/1.1"), head
        assert "Proxy-Authorization: Basic dXNlcjpwdw==" in head
    finally:
        proxy.close()


def test_https_is_tunnelled_with_connect(monkeypatch):
    proxy = RecordingProxy(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    try:
        with Client() as c, pytest.raises(FetchError) as e:
            c.request("POST", "https://vm.example.invalid/api/v1/import", budget=5, max_body=100, body=b"{}")
        assert proxy.heads[0].startswith("CONNECT vm.example.invalid:443 HTTP/1.")
        assert "vm.example.invalid" not in str(e.value)  # one line, no URL
    finally:
        proxy.close()


def test_no_proxy_goes_direct(monkeypatch):
    direct = RecordingProxy(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    try:
        with Client() as c:
            answer = c.request("GET", f"http://127.0.0.1:{direct.port}/health", budget=5, max_body=100)
        assert answer.status == 204
        assert direct.heads[0].startswith("GET /health HTTP/1.1")
    finally:
        direct.close()
