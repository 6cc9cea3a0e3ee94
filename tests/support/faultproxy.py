"""An HTTP fault proxy between the agent and a real VictoriaMetrics, for reliability tests.

Each request is served by the phase current when it arrived:

    ok         forwarded to VictoriaMetrics, its answer returned
    slow       held ``delay`` seconds, then forwarded if the client still waits (a slow server
               that has not stored anything yet: a kill now must cost nothing)
    slowack    forwarded, then the answer held back ``delay`` seconds (stored, not yet
               acknowledged: a kill now makes the agent send it again)
    refused    nothing listens: connections are refused (open ones are closed)
    500        HTTP 500, nothing forwarded
    429        HTTP 429 with ``Retry-After: <retry_after>``, nothing forwarded
    hang       the request is read, then no answer ever comes
    reset      half the body is read, then the connection is reset (RST)
    trickle    the body is read at ``rate`` bytes/s; forwarded if the client still waits
    blackhole  HTTP 204, nothing forwarded: a server that says yes and drops everything

Every request is recorded (``Record``), with the samples it carried, so a test can tell what
the server was given, what was lost by design (blackhole) and when delivery resumed.

    with FaultProxy(vm.port) as proxy:
        agent = AgentProcess(..., {"remote": {"url": proxy.url}})
        proxy.set_phase("500"); ...
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate

PHASES = ("ok", "slow", "slowack", "refused", "500", "429", "hang", "reset", "trickle", "blackhole")


@dataclass
class Record:
    phase: str
    start: float  # monotonic: request head received
    end: float = 0.0  # answer sent (or connection given up)
    status: int | None = None  # what the agent was told; None: no answer
    forwarded: bool = False  # VictoriaMetrics took the samples (2xx from it)
    stored_at: float = 0.0  # monotonic: when VictoriaMetrics answered
    samples: list[tuple[str, int]] = field(default_factory=list)  # (series key, timestamp ms)


def series_key(metric: dict) -> str:
    return json.dumps(metric, sort_keys=True)


def _gone(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def parse_body(body: bytes, encoding: str) -> list[tuple[str, int]]:
    raw = gzip.decompress(body) if encoding == "gzip" else body
    out = []
    for line in raw.splitlines():
        if line.strip():
            row = json.loads(line)
            key = series_key(row["metric"])
            out.extend((key, int(t)) for t in row["timestamps"])
    return out


class FaultProxy:
    def __init__(self, upstream_port: int, port: int = 0, delay: float = 0.3, retry_after: int = 1,
                 rate: int = 1024):
        self.upstream_port = upstream_port
        self.delay, self.retry_after, self.rate = delay, retry_after, rate
        self.phase = "ok"
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()  # serving a request: its answer is not cut short
        self.port = port
        self._bind()
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/import"

    # --- lifecycle ----------------------------------------------------------------------

    def _bind(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self._listener = s

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._close_all()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_phase(self, phase: str) -> None:
        assert phase in PHASES, phase
        with self._lock:
            self.phase = phase
        if phase == "refused":
            # Kept-alive connections too: the next request must reconnect. A request already
            # being served keeps its answer: cutting it after VictoriaMetrics stored the samples
            # would make the agent send them again, a duplicate the proxy caused, not the agent.
            self._close_all(idle_only=True)

    def _close_all(self, idle_only: bool = False) -> None:
        with self._lock:
            conns = self._conns - self._busy if idle_only else self._conns
            self._conns = self._conns - conns
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if self.phase == "refused":
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                time.sleep(0.05)
                continue
            if self._listener is None:
                self._bind()
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(None)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # --- one connection -------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                length = int(headers.get("content-length", "0"))
                with self._lock:
                    rec = Record(self.phase, time.monotonic())
                    self.records.append(rec)
                    self._busy.add(conn)
                if rec.phase == "refused":
                    # A connection accepted just before the listener went (the accept loop closes
                    # it within 50 ms): nothing listens now, so nothing may be answered either.
                    rec.end = time.monotonic()
                    return
                if rec.phase == "reset":
                    self._read(conn, buf, length // 2)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    rec.end = time.monotonic()
                    return
                body, buf = self._read(conn, buf, length, rec.phase == "trickle")
                if rec.phase == "trickle" and _gone(conn):
                    rec.end = time.monotonic()
                    return  # the client gave up while the body crawled in: a server drops it too
                if rec.phase == "hang":
                    while not self._stop.is_set() and conn.recv(1):
                        pass  # until the client gives up
                    rec.end = time.monotonic()
                    return
                if rec.phase == "slow":
                    time.sleep(self.delay)
                    if _gone(conn):
                        rec.end = time.monotonic()
                        return
                status, extra, answer = self._answer(rec, method, path, headers, body)
                if rec.phase == "slowack":
                    time.sleep(self.delay)
                # Date: the agent checks its clock against the upload server's (as VM sends it).
                extra["Date"] = formatdate(usegmt=True)
                hdrs = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\n{hdrs}\r\n".encode()
                             + answer)
                rec.status, rec.end = status, time.monotonic()
                with self._lock:
                    self._busy.discard(conn)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._busy.discard(conn)
            conn.close()

    def _read(self, conn: socket.socket, buf: bytes, length: int, trickle: bool = False) -> tuple[bytes, bytes]:
        while len(buf) < length:
            chunk = conn.recv(min(self.rate, length - len(buf)) if trickle else 65536)
            if not chunk:
                raise OSError("client closed")
            buf += chunk
            if trickle:
                time.sleep(1.0)
        return buf[:length], buf[length:]

    def _answer(self, rec: Record, method: str, path: str, headers: dict, body: bytes):
        if rec.phase == "500":
            return 500, {}, b"injected failure\n"
        if rec.phase == "429":
            return 429, {"Retry-After": str(self.retry_after)}, b"slow down\n"
        samples = parse_body(body, headers.get("content-encoding", "")) if body else []
        rec.samples = samples
        if rec.phase == "blackhole":
            return 204, {}, b""
        up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            fwd = {k: v for k, v in headers.items() if k in ("content-type", "content-encoding", "authorization")}
            up.request(method, path, body=body, headers=fwd)
            r = up.getresponse()
            answer = r.read()
        finally:
            up.close()
        rec.forwarded = 200 <= r.status < 300
        rec.stored_at = time.monotonic()
        return r.status, {}, answer

    # --- reading the record ---------------------------------------------------------------

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)
