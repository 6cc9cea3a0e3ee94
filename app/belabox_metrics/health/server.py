"""The HTTP server for /health, /health/live, /health/ready and /metrics.

tidewatch served these with no timeouts on every interface (W28). Here one event-loop
thread owns every socket: it reads request heads without blocking, under a size cap and a
deadline, and only a complete head reaches one of a few worker threads, which build the
response in memory and never touch a socket. So an idle or slow client costs a file
descriptor, not a thread (slowloris), and the oldest unfinished connection is evicted when
the connection cap is reached. /health/live is answered by the loop itself, so it keeps
answering even while every worker is busy.

This module owns the sockets and threads; what a request is answered is handler.py, a
connection's record and the 503s at capacity are connections.py.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from socketserver import TCPServer

from belabox_metrics import config
from belabox_metrics.health.connections import Conn, Overload, close
from belabox_metrics.health.handler import BUSY, MAX_REQUEST_LINE, Handler, head_end, is_live, run_handler, simple
from belabox_metrics.health.registry import Registry

log = logging.getLogger(__name__)


class HealthServerError(OSError):
    """The server could not be started; ``str()`` is one line naming the address."""


def _bind_address(listen_addr: str) -> tuple[str, int]:
    # Port 0 (any free port) is for tests only: the config schema rejects it.
    head, sep, port = listen_addr.rpartition(":")
    if sep and port == "0":
        host, _ = config.parse_listen_addr(f"{head}:1")
        return host, 0
    return config.parse_listen_addr(listen_addr)


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
            super().__init__((host, port), Handler)
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
        self.overload = Overload(max_draining=64)  # the 503s and the sockets they leave draining

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can hang on a box with no
        # network at boot; the name is only used in error pages we do not serve.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def evicted(self) -> int:
        """Connections closed (with a 503) to make room for new ones."""
        return self.overload.evicted

    @property
    def refused(self) -> int:
        """Requests answered 503 because the server was at capacity."""
        return self.overload.refused

    @property
    def max_draining(self) -> int:
        return self.overload.max_draining

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
        """``poll_interval`` is the longest wait while a connection has a deadline; with none
        open the loop sleeps until a client or the wake pipe (stop, a finished answer) arrives,
        instead of waking twice a second on an idle box."""
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: dict[socket.socket, Conn] = {}  # insertion order = accept order
        try:
            while not self._stopping.is_set():
                idle = not conns and not self.overload.draining
                for key, _mask in sel.select(None if idle else poll_interval):
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
                            self.overload.drain(sel, key.data)
                    except Exception:  # a bug with one client must not stop the endpoint for all
                        log.exception("health: connection handling failed")
                        if isinstance(key.data, Conn):
                            close(sel, conns, key.data)
                now = time.monotonic()
                for c in [c for c in conns.values() if c.deadline < now and c.state != "wait"]:
                    close(sel, conns, c)
                self.overload.expire(sel, now)
        finally:
            for c in list(conns.values()):
                close(sel, conns, c)
            self.overload.close_all(sel)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict) -> None:
        for _ in range(128):
            try:
                sock, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:  # EMFILE and friends: make room and retry on the next event
                log.warning("health: accept failed: %s", e.strerror or e)
                self.overload.evict_one(sel, conns)
                return
            # Over capacity: answer at once rather than leave the client in the kernel's backlog
            # (which overflows) or close it unanswered. The 503 fits any socket buffer. The oldest
            # connection still sending its head makes room, else the newcomer is refused.
            if len(conns) >= self.max_connections and not self.overload.evict_one(sel, conns):
                self.overload.busy(sel, Conn(sock, addr, 0.0))
                continue
            sock.setblocking(False)
            c = Conn(sock, addr, time.monotonic() + self.head_timeout)
            conns[sock] = c
            sel.register(sock, selectors.EVENT_READ, c)

    def _read(self, sel: selectors.BaseSelector, conns: dict, c: Conn) -> None:
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            close(sel, conns, c)
            return
        c.buf += data
        end = head_end(c.buf)
        if end > self.max_head_bytes or (end < 0 and len(c.buf) > self.max_head_bytes):
            self._respond(sel, conns, c, simple(431, "request header fields too large"))
            return
        if end < 0:
            if b"\n" not in c.buf and len(c.buf) > MAX_REQUEST_LINE:
                self._respond(sel, conns, c, simple(414, "request line too long"))
            return
        head = bytes(c.buf[:end])
        c.state = "wait"
        sel.unregister(c.sock)
        if is_live(head):
            self._respond(sel, conns, c, run_handler(head, c.addr, self))
        elif self._inflight >= self.max_queued:
            self.overload.refused += 1
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

    def _respond(self, sel: selectors.BaseSelector, conns: dict, c: Conn, response: bytes) -> None:
        if c.state == "read":
            sel.unregister(c.sock)
        c.state, c.out = "write", response
        c.deadline = time.monotonic() + self.write_timeout
        sel.register(c.sock, selectors.EVENT_WRITE, c)
        self._write(sel, conns, c)

    def _write(self, sel: selectors.BaseSelector, conns: dict, c: Conn) -> None:
        try:
            sent = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            close(sel, conns, c)
            return
        c.out = c.out[sent:]
        if not c.out:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            close(sel, conns, c)

    # --- workers -----------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            c, head = job
            try:
                response = run_handler(head, c.addr, self)
            except Exception:  # a bug in a handler must not kill the worker pool
                log.exception("health: request handler failed")
                response = simple(500, "internal error")
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
