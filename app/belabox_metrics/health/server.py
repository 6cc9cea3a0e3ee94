"""The HTTP server for /health, /health/live, /health/ready and /metrics.

tidewatch served these with no timeouts on every interface (W28). Here one event-loop
thread owns every socket: it reads request heads without blocking, under a size cap and a
deadline, and only a complete head reaches one of a few worker threads, which build the
response in memory and never touch a socket. So an idle or slow client costs a file
descriptor, not a thread (slowloris), and the oldest unfinished connection is evicted when
the connection cap is reached. /health/live is answered by the loop itself, so it keeps
answering even while every worker is busy.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from belabox_metrics import config
from belabox_metrics.health.registry import OK, Registry
from belabox_metrics.redact import Redactor

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 4096


_SECRETS_ONLY = Redactor(identifiers=False)


class HealthServerError(OSError):
    """The server could not be started; ``str()`` is one line naming the address."""


def _bind_address(listen_addr: str) -> tuple[str, int]:
    # Port 0 (any free port) is for tests only: the config schema rejects it.
    head, sep, port = listen_addr.rpartition(":")
    if sep and port == "0":
        host, _ = config.parse_listen_addr(f"{head}:1")
        return host, 0
    return config.parse_listen_addr(listen_addr)


class _Conn:
    __slots__ = ("sock", "addr", "buf", "out", "state", "deadline")

    def __init__(self, sock: socket.socket, addr: Any, deadline: float):
        self.sock, self.addr, self.deadline = sock, addr, deadline
        self.buf = bytearray()
        self.out = b""
        self.state = "read"  # read -> wait (a worker builds the answer) -> write -> closed


class HealthServer(ThreadingHTTPServer):
    request_queue_size = 512  # a burst of connects must not hit SYN retries (1 s each)
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # ThreadingMixIn's own threads are never used: see _worker

    def __init__(self, listen_addr: str, registry: Registry, metrics_text: Callable[[], str], *,
                 workers: int = 2, max_connections: int = 256, max_queued: int = 64,
                 head_timeout: float = 5.0, write_timeout: float = 10.0, max_head_bytes: int = 8192,
                 metrics_cache_s: float = 1.0):
        try:
            host, port = _bind_address(listen_addr)
        except ValueError as e:
            raise HealthServerError(f"health: listen_addr {e}") from None
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise HealthServerError(f"health: cannot listen on {host}:{port}: "
                                    f"{e.strerror or e}") from None
        self.socket.setblocking(False)
        self.registry, self.metrics_text = registry, metrics_text
        # Two workers: answers are built under the GIL, so more add threads (stacks, memory) and no
        # throughput; a second one keeps a slow /metrics from holding up /health.
        self.workers, self.max_connections, self.max_queued = workers, max_connections, max_queued
        self.head_timeout, self.write_timeout = head_timeout, write_timeout
        self.max_head_bytes = max_head_bytes
        self.metrics_cache_s = metrics_cache_s
        self._metrics_lock = threading.Lock()
        self._metrics_cached: tuple[float, str] | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._done: deque = deque()
        self._inflight = 0
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._loop_threads: list[threading.Thread] = []
        self.evicted = 0  # connections closed to make room (visible to tests and diagnose)
        self.refused = 0  # answered 503 because the server was at capacity
        self.max_draining = 64
        self._draining: dict[socket.socket, _Conn] = {}  # answered 503, waiting for the client to close

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can hang on a box with no
        # network at boot; the name is only used in error pages we do not serve.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        loop = threading.Thread(target=self.serve_forever, name="health-http", daemon=True)
        self._loop_threads = [loop] + [
            threading.Thread(target=self._worker, name=f"health-worker-{i}", daemon=True)
            for i in range(self.workers)]
        for t in self._loop_threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        for _ in range(self.workers):
            self._jobs.put(None)
        for t in self._loop_threads:
            t.join(timeout)
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def shutdown(self) -> None:  # socketserver's shutdown() would wait for its own loop forever
        self.stop()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the buffer is full, so the loop is awake anyway

    # --- the event loop --------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: dict[socket.socket, _Conn] = {}  # insertion order = accept order
        try:
            while not self._stopping.is_set():
                for key, _mask in sel.select(poll_interval):
                    try:
                        if key.data == "listen":
                            self._accept(sel, conns)
                        elif key.data == "wake":
                            self._drain_wake(sel, conns)
                        elif key.data.state == "read":
                            self._read(sel, conns, key.data)
                        elif key.data.state == "write":
                            self._write(sel, conns, key.data)
                        elif key.data.state == "drain":
                            self._drain(sel, key.data)
                    except Exception:  # a bug with one client must not stop the endpoint for all
                        log.exception("health: connection handling failed")
                        if isinstance(key.data, _Conn):
                            self._close(sel, conns, key.data)
                now = time.monotonic()
                for c in [c for c in conns.values() if c.deadline < now and c.state != "wait"]:
                    self._close(sel, conns, c)
                for c in [c for c in self._draining.values() if c.deadline < now]:
                    self._close(sel, self._draining, c)
        finally:
            for c in list(conns.values()):
                self._close(sel, conns, c)
            for c in list(self._draining.values()):
                self._close(sel, self._draining, c)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict) -> None:
        for _ in range(128):
            try:
                sock, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:  # EMFILE and friends: make room and retry on the next event
                log.warning("health: accept failed: %s", e.strerror or e)
                self._evict_one(sel, conns)
                return
            if len(conns) >= self.max_connections:
                # Over capacity: answer at once rather than leave the client in the kernel's
                # backlog (which overflows) or close it unanswered. The 503 fits any socket buffer.
                victim = next((c for c in conns.values() if c.state == "read"), None)
                if victim is None:
                    self._busy(sel, _Conn(sock, addr, 0.0))
                    continue
                # The oldest connection still sending its head (likeliest slow or idle) makes room,
                # with an answer: 503 and Retry-After, never a silent close.
                self.evicted += 1
                self._busy(sel, victim, conns)
            sock.setblocking(False)
            c = _Conn(sock, addr, time.monotonic() + self.head_timeout)
            conns[sock] = c
            sel.register(sock, selectors.EVENT_READ, c)

    def _evict_one(self, sel: selectors.BaseSelector, conns: dict) -> None:
        victim = next((c for c in conns.values() if c.state == "read"), None)
        if victim is not None:
            self.evicted += 1
            self._busy(sel, victim, conns)

    def _busy(self, sel: selectors.BaseSelector, c: _Conn, conns: dict | None = None) -> None:
        """Answer 503 + Retry-After and close gracefully: the socket is drained until the client
        closes (or a second passes), since closing with its request unread would send a reset
        that can destroy the 503 before the client reads it."""
        self.refused += 1
        if conns is not None:
            if c.state == "read":
                sel.unregister(c.sock)
            conns.pop(c.sock, None)
        try:
            c.sock.setblocking(False)
            c.sock.send(BUSY)
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if len(self._draining) >= self.max_draining:
            c.state = "closed"
            c.sock.close()
            return
        c.state, c.deadline = "drain", time.monotonic() + 1.0
        self._draining[c.sock] = c
        sel.register(c.sock, selectors.EVENT_READ, c)

    def _drain(self, sel: selectors.BaseSelector, c: _Conn) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(sel, self._draining, c)

    def _read(self, sel: selectors.BaseSelector, conns: dict, c: _Conn) -> None:
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(sel, conns, c)
            return
        c.buf += data
        end = _head_end(c.buf)
        if end > self.max_head_bytes or (end < 0 and len(c.buf) > self.max_head_bytes):
            self._respond(sel, conns, c, _simple(431, "request header fields too large"))
            return
        if end < 0:
            if b"\n" not in c.buf and len(c.buf) > MAX_REQUEST_LINE:
                self._respond(sel, conns, c, _simple(414, "request line too long"))
            return
        head = bytes(c.buf[:end])
        c.state = "wait"
        sel.unregister(c.sock)
        if _is_live(head):
            self._respond(sel, conns, c, _run_handler(head, c.addr, self))
        elif self._inflight >= self.max_queued:
            self.refused += 1
            self._respond(sel, conns, c, BUSY)
        else:
            self._inflight += 1
            self._jobs.put((c, head))

    def _drain_wake(self, sel: selectors.BaseSelector, conns: dict) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._done:
            c, response = self._done.popleft()
            self._inflight -= 1
            if c.state == "wait" and c.sock in conns:
                self._respond(sel, conns, c, response)

    def _respond(self, sel: selectors.BaseSelector, conns: dict, c: _Conn, response: bytes) -> None:
        if c.state == "read":
            sel.unregister(c.sock)
        c.state, c.out = "write", response
        c.deadline = time.monotonic() + self.write_timeout
        sel.register(c.sock, selectors.EVENT_WRITE, c)
        self._write(sel, conns, c)

    def _write(self, sel: selectors.BaseSelector, conns: dict, c: _Conn) -> None:
        try:
            sent = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(sel, conns, c)
            return
        c.out = c.out[sent:]
        if not c.out:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(sel, conns, c)

    def _close(self, sel: selectors.BaseSelector, conns: dict, c: _Conn) -> None:
        if c.state in ("read", "write", "drain"):
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.state = "closed"
        conns.pop(c.sock, None)
        c.sock.close()

    # --- workers -----------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            c, head = job
            try:
                response = _run_handler(head, c.addr, self)
            except Exception:  # a bug in a handler must not kill the worker pool
                log.exception("health: request handler failed")
                response = _simple(500, "internal error")
            self._done.append((c, response))
            self._wake()

    def render_metrics(self) -> str:
        """metrics_text(), shared by requests within ``metrics_cache_s`` so a scrape storm
        costs one rendering per second."""
        with self._metrics_lock:
            now = time.monotonic()
            if self._metrics_cached and now - self._metrics_cached[0] < self.metrics_cache_s:
                return self._metrics_cached[1]
            text = self.metrics_text()
            self._metrics_cached = (now, text)
            return text


def _head_end(buf: bytearray) -> int:
    i = buf.find(b"\r\n\r\n")
    if i >= 0:
        return i + 4
    i = buf.find(b"\n\n")
    return i + 2 if i >= 0 else -1


def _is_live(head: bytes) -> bool:
    parts = head.split(b" ", 2)
    return len(parts) == 3 and parts[0] in (b"GET", b"HEAD") and parts[1] == b"/health/live"


def _simple(code: int, text: str, extra: str = "") -> bytes:
    from http import HTTPStatus
    body = (text + "\n").encode()
    return (f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n").encode() + body


BUSY = _simple(503, "busy, try again", "Retry-After: 1\r\n")


def _run_handler(head: bytes, addr: Any, server: HealthServer) -> bytes:
    h = _Handler(head, addr, server)
    return h.wfile.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """Parses one buffered request head and writes the response into memory."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # never answer in HTTP/0.9 (no status line)
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    server_version = "metrics-collector"

    def version_string(self) -> str:
        return self.server_version

    def __init__(self, head: bytes, client_address: Any, server: HealthServer):
        self.rfile, self.wfile = io.BytesIO(head), io.BytesIO()
        self.client_address, self.server, self.request = client_address, server, None
        self.close_connection = True
        self.handle_one_request()

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        if self.command not in ("GET", "HEAD"):
            self._reply(405, b"method not allowed\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})
            return
        self._route(urlsplit(self.path).path)

    def _route(self, path: str) -> None:
        server: HealthServer = self.server  # type: ignore[assignment]
        if path == "/health/live":
            self._json(200, {"status": "alive"})
        elif path == "/health":
            report = server.registry.report()
            self._json(503 if report["status"] == "error" else 200, report)
        elif path == "/health/ready":
            status = server.registry.overall()
            if status == OK:
                self._json(200, {"status": "ready"})
            else:
                self._json(503, {"current_status": status, "message": "system is not in OK state",
                                 "status": "not_ready"})
        elif path == "/metrics":
            try:
                text = server.render_metrics()
            except Exception as e:  # the agent's callable; report, do not die
                log.warning("health: rendering /metrics failed: %s", e)
                self._reply(500, b"cannot render metrics\n", "text/plain; charset=utf-8")
                return
            self._reply(200, text.encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/history":  # field history, answered by the agent (agent/history.py)
            answer = getattr(server, "history", None)
            code, body = answer(urlsplit(self.path).query) if answer else (503, b'{"error": "no history yet"}')
            self._reply(code, body, "application/json")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _json(self, code: int, obj: dict) -> None:
        # A component's message may be an exception's text: URL credentials, query values and
        # bearer tokens never leave in it (identifiers are the collectors' own business).
        self._reply(code, (json.dumps(_SECRETS_ONLY.tree(obj)) + "\n").encode(), "application/json")

    def _reply(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the journal is not an access log; errors reach the log through other paths
