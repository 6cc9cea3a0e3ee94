"""The health HTTP server over real loopback sockets: endpoints, limits and abuse."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time

import pytest

from belabox_metrics.health.registry import DEGRADED, ERROR, OK, Registry
from belabox_metrics.health.server import HealthServer, HealthServerError


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def server(registry):
    srv = HealthServer("127.0.0.1:0", registry, lambda: "node_load1 0.5\n")
    srv.start()
    yield srv
    srv.stop()


def get(port: int, path: str, method: str = "GET", timeout: float = 3.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def live_latency(port: int) -> float:
    t0 = time.monotonic()
    status, _, body = get(port, "/health/live", timeout=5)
    elapsed = time.monotonic() - t0
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    return elapsed


# --- endpoints --------------------------------------------------------------------------------

def test_health_status_codes_follow_rollup(server, registry):
    status, headers, body = get(server.port, "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == OK and json.loads(body)["components"] == {}
    registry.update("uploader", DEGRADED, "last upload failed: timeout")
    status, _, body = get(server.port, "/health")
    assert status == 200 and json.loads(body)["status"] == DEGRADED
    registry.update("storage", ERROR, "cannot write the spool: disk I/O error")
    status, _, body = get(server.port, "/health")
    assert status == 503 and json.loads(body)["components"]["storage"]["status"] == ERROR


def test_ready_only_when_ok(server, registry):
    assert get(server.port, "/health/ready")[::2] == (200, b'{"status": "ready"}\n')
    registry.update("time", DEGRADED, "clock not verified")
    status, _, body = get(server.port, "/health/ready")
    assert status == 503
    assert json.loads(body) == {"current_status": "degraded", "message": "system is not in OK state",
                                "status": "not_ready"}
    registry.update("time", OK, "time synchronized")
    assert get(server.port, "/health/ready")[0] == 200


def test_live_and_metrics(server, registry):
    registry.update("uploader", ERROR, "server rejected the auth token (HTTP 401)")
    assert get(server.port, "/health/live")[::2] == (200, b'{"status": "alive"}\n')
    status, headers, body = get(server.port, "/metrics?x=1")
    assert status == 200 and body == b"node_load1 0.5\n"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_head_has_headers_but_no_body(server):
    status, headers, body = get(server.port, "/health", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_unknown_path_is_404(server):
    assert get(server.port, "/healthz")[0] == 404
    assert get(server.port, "/health/live/x")[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_other_methods_are_405(server, method):
    status, headers, _ = get(server.port, "/health", method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_metrics_failure_is_500_and_server_survives(registry):
    def boom() -> str:
        raise RuntimeError("collector registry gone")
    srv = HealthServer("127.0.0.1:0", registry, boom)
    srv.start()
    try:
        assert get(srv.port, "/metrics")[0] == 500
        assert get(srv.port, "/health")[0] == 200
    finally:
        srv.stop()


def test_metrics_rendering_is_shared_within_a_second(registry):
    calls = []
    srv = HealthServer("127.0.0.1:0", registry, lambda: calls.append(1) or f"n {len(calls)}\n")
    srv.start()
    try:
        bodies = {get(srv.port, "/metrics")[2] for _ in range(20)}
        assert bodies == {b"n 1\n"} and len(calls) == 1
    finally:
        srv.stop()


# --- malformed and oversize requests ---------------------------------------------------------------

def test_oversize_headers_rejected(server):
    big = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 10000 + b"\r\n\r\n"
    assert raw(server.port, big).startswith(b"HTTP/1.1 431 ")
    many = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n"
    assert raw(server.port, many).startswith(b"HTTP/1.1 431 ")


def test_long_request_line_rejected(server):
    assert raw(server.port, b"GET /" + b"a" * 5000).startswith(b"HTTP/1.1 414 ")


def test_garbage_gets_400(server):
    assert raw(server.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server.port, b"GET /health HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 505 ")


def test_idle_connection_closed_after_head_timeout(registry):
    srv = HealthServer("127.0.0.1:0", registry, lambda: "", head_timeout=0.5)
    srv.start()
    try:
        t0 = time.monotonic()
        assert raw(srv.port, b"GET /health HTTP/1.1\r\n", timeout=5) == b""
        assert 0.4 < time.monotonic() - t0 < 2.0
    finally:
        srv.stop()


# --- binding -----------------------------------------------------------------------------------------

def test_port_zero_and_empty_host_bind_loopback(registry):
    srv = HealthServer(":0", registry, lambda: "")
    try:
        assert srv.server_address[0] == "127.0.0.1" and srv.port > 0
    finally:
        srv.server_close()


def test_bind_failure_is_one_clear_line(registry):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(HealthServerError) as e:
            HealthServer(f"127.0.0.1:{port}", registry, lambda: "")
    msg = str(e.value)
    assert isinstance(e.value, OSError)  # the agent catches OSError, logs it and keeps collecting
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "in use" in msg
    with pytest.raises(HealthServerError, match="listen_addr"):
        HealthServer("nonsense", registry, lambda: "")


def test_stop_releases_the_port(registry):
    srv = HealthServer("127.0.0.1:0", registry, lambda: "")
    srv.start()
    port = srv.port
    assert get(port, "/health/live")[0] == 200
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --- abuse ------------------------------------------------------------------------------------------

def test_survives_500_idle_half_and_garbage_connections(server):
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    hostile = []
    try:
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 3 == 1:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half: ")  # half a request
            elif i % 3 == 2:
                s.sendall(os.urandom(64))  # garbage that never ends a head
            hostile.append(s)
        # Garbage requests that do complete, interleaved with measurements.
        latencies = []
        for _ in range(10):
            assert raw(server.port, b"\x00\xff junk \r\n\r\n").startswith(b"HTTP/1.1 400 ")
            latencies.append(live_latency(server.port))
        assert max(latencies) < 1.0, latencies
        assert get(server.port, "/health")[0] == 200
        # Bounded: the loop and its workers, whatever the number of clients.
        assert threading.active_count() <= threads_before
        assert server.evicted > 0
        # The server holds at most max_connections sockets for the 500 hostile clients.
        fds_now = len(os.listdir("/proc/self/fd"))
        assert fds_now - fds_before <= 500 + server.max_connections + server.max_draining + 16
    finally:
        for s in hostile:
            s.close()


def test_slow_clients_and_non_reading_clients(registry):
    big = "x " + "1" * 4_000_000 + "\n"  # larger than any socket buffer
    srv = HealthServer("127.0.0.1:0", registry, lambda: big, head_timeout=2.0, write_timeout=3.0)
    srv.start()
    stop = threading.Event()
    socks: list[socket.socket] = []

    def trickle() -> None:  # one byte every 100 ms: a slowloris head
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        socks.append(s)
        for b in b"GET /health HTTP/1.1\r\nHost: slow\r\n\r\n":
            if stop.wait(0.1):
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return

    try:
        # Twenty clients ask for a 4 MB /metrics and never read the answer.
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            socks.append(s)
        trick = [threading.Thread(target=trickle) for _ in range(30)]
        for t in trick:
            t.start()
        latencies = [live_latency(srv.port) for _ in range(10)]
        assert max(latencies) < 1.0, latencies
        assert get(srv.port, "/health")[0] == 200
        # A patient client still gets the whole large answer.
        status, _, body = get(srv.port, "/metrics", timeout=10)
        assert status == 200 and len(body) == len(big)
    finally:
        stop.set()
        for t in trick:
            t.join()
        for s in socks:
            s.close()
        srv.stop()


def test_slow_head_within_deadline_is_served(registry):
    srv = HealthServer("127.0.0.1:0", registry, lambda: "", head_timeout=2.0)
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            for piece in (b"GET /health/re", b"ady HTTP/1.1\r\nHo", b"st: x\r\n\r\n"):
                s.sendall(piece)
                time.sleep(0.3)
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        srv.stop()


def test_ipv6_loopback(registry):
    srv = HealthServer("[::1]:0", registry, lambda: "")
    srv.start()
    try:
        conn = http.client.HTTPConnection("::1", srv.port, timeout=3)
        conn.request("GET", "/health/live")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.stop()


# --- load ---------------------------------------------------------------------------------

def _hammer(port: int, n: int) -> list[bytes]:
    """``n`` clients connected at once, each sending GET /health; every answer read back."""
    import selectors
    sel = selectors.DefaultSelector()
    answers: dict[socket.socket, bytearray] = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        answers[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + 20
    open_ = set(answers)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                answers[s] += data
            else:
                sel.unregister(s)
                open_.discard(s)
    for s in answers:
        s.close()
    return [bytes(a) for a in answers.values()]


@pytest.mark.slow
def test_500_concurrent_clients_are_all_answered(registry):
    registry.update("uploader", OK, "uploading metrics")
    srv = HealthServer("127.0.0.1:0", registry, lambda: "", max_connections=128, max_queued=16)
    srv.start()
    try:
        answers = _hammer(srv.port, 500)
    finally:
        srv.stop()
    heads = [a.split(b"\r\n\r\n", 1)[0] for a in answers]
    ok = [h for h in heads if h.startswith(b"HTTP/1.1 200 ")]
    busy = [h for h in heads if h.startswith(b"HTTP/1.1 503 ")]
    others = [h[:40] for h in heads if not h.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503"))]
    assert len(ok) + len(busy) == 500, others[:5]
    assert all(b"Retry-After: 1" in h for h in busy)
    assert ok and busy, (len(ok), len(busy))  # at capacity: some served, the rest told to retry
