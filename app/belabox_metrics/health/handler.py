"""Answering one health request: parsing its buffered head, routing it to /health,
/health/live, /health/ready, /metrics or /history, and the fixed answers the event loop
sends itself (431, 414, 503 busy). Builds bytes in memory and never touches a socket:
server.py owns the sockets and threads.
"""

from __future__ import annotations

import io
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import urlsplit

from belabox_metrics.health.registry import OK, Registry
from belabox_metrics.redact import Redactor

log = logging.getLogger("belabox_metrics.health.server")  # one logger for the whole endpoint

MAX_REQUEST_LINE = 4096

_SECRETS_ONLY = Redactor(identifiers=False)


class Served(Protocol):
    """What a request reads of the server (HealthServer; ``history`` is set by the agent)."""

    registry: Registry

    def render_metrics(self) -> str: ...


def head_end(buf: bytearray) -> int:
    i = buf.find(b"\r\n\r\n")
    if i >= 0:
        return i + 4
    i = buf.find(b"\n\n")
    return i + 2 if i >= 0 else -1


def is_live(head: bytes) -> bool:
    parts = head.split(b" ", 2)
    return len(parts) == 3 and parts[0] in (b"GET", b"HEAD") and parts[1] == b"/health/live"


def simple(code: int, text: str, extra: str = "") -> bytes:
    body = (text + "\n").encode()
    return (f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n").encode() + body


BUSY = simple(503, "busy, try again", "Retry-After: 1\r\n")


def run_handler(head: bytes, addr: Any, server: Served) -> bytes:
    h = Handler(head, addr, server)
    return h.wfile.getvalue()


class Handler(BaseHTTPRequestHandler):
    """Parses one buffered request head and writes the response into memory."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # never answer in HTTP/0.9 (no status line)
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    server_version = "metrics-collector"

    def version_string(self) -> str:
        return self.server_version

    def __init__(self, head: bytes, client_address: Any, server: Served):
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
        server: Served = self.server  # type: ignore[assignment]
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
