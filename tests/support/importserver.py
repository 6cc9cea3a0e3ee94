"""A small scriptable ``/api/v1/import`` server on loopback, in a thread, for uploader tests.

Each request is decoded (gzip JSON lines) and recorded; a ``respond`` function decides the
answer. Used where VictoriaMetrics cannot be made to misbehave on purpose (500, 429, 413,
401, a hang) and to see the exact path and headers a client sent.
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    index: int
    path: str
    headers: dict[str, str]
    wire_bytes: int
    lines: list[dict]
    received_mono: float
    status: int = 0  # the answer given

    @property
    def samples(self) -> int:
        return sum(len(line["values"]) for line in self.lines)

    def series(self) -> set[tuple]:
        return {tuple(sorted(line["metric"].items())) for line in self.lines}


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0  # seconds to wait before answering (a hanging server)


Respond = Callable[[Request], Reply]


def accept_all(req: Request) -> Reply:
    return Reply(204)


class ImportServer:
    def __init__(self, respond: Respond = accept_all, tls: tuple[str, str] | None = None):
        """``tls``: (certfile, keyfile) to serve HTTPS."""
        self.respond = respond
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like VictoriaMetrics

            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                data = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
                with outer._lock:
                    req = Request(len(outer.requests), self.path, dict(self.headers.items()), len(raw), lines,
                                  time.monotonic())
                    outer.requests.append(req)
                reply = outer.respond(req)
                req.status = reply.status
                if reply.delay:
                    outer._stopping.wait(reply.delay)
                body = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is what a timeout test wants

            def log_message(self, fmt, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="import-server",
                                        daemon=True)

    def url(self, path: str = "/api/v1/import") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> ImportServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> ImportServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what arrived -----------------------------------------------------------------

    def accepted(self) -> list[Request]:
        """Requests answered 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]


def samples_of(requests: list[Request]) -> list[tuple]:
    """Every (series, timestamp, value) in the given requests, duplicates kept."""
    out = []
    for r in requests:
        for line in r.lines:
            key = tuple(sorted(line["metric"].items()))
            out.extend((key, t, v) for t, v in zip(line["timestamps"], line["values"], strict=True))
    return out
