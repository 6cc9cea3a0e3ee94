"""The health server's connections: the record of one, closing one, and refusing one when
the server is at capacity.

A refusal is an answer, never a silent close: 503 with Retry-After, then the socket is
drained until the client closes (or a second passes), since closing with its request
unread would send a reset that can destroy the 503 before the client reads it. Sockets
still draining are bounded too (``max_draining``); past that a refused one is closed.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Any

from belabox_metrics.health.handler import BUSY


class Conn:
    __slots__ = ("sock", "addr", "buf", "out", "state", "deadline")

    def __init__(self, sock: socket.socket, addr: Any, deadline: float):
        self.sock, self.addr, self.deadline = sock, addr, deadline
        self.buf = bytearray()
        self.out = b""
        self.state = "read"  # read -> wait (a worker builds the answer) -> write -> closed


def close(sel: selectors.BaseSelector, conns: dict, c: Conn) -> None:
    if c.state in ("read", "write", "drain"):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
    c.state = "closed"
    conns.pop(c.sock, None)
    c.sock.close()


class Overload:
    """The 503s: which connection makes room, how many were sent, the sockets still draining."""

    def __init__(self, max_draining: int = 64):
        self.refused = 0  # answered 503 because the server was at capacity
        self.evicted = 0  # connections closed to make room (visible to tests and diagnose)
        self.max_draining = max_draining
        self.draining: dict[socket.socket, Conn] = {}  # answered 503, waiting for the client to close

    def evict_one(self, sel: selectors.BaseSelector, conns: dict) -> bool:
        """The oldest connection still sending its head (likeliest slow or idle) makes room,
        with an answer; False when every connection is past that."""
        victim = next((c for c in conns.values() if c.state == "read"), None)
        if victim is None:
            return False
        self.evicted += 1
        self.busy(sel, victim, conns)
        return True

    def busy(self, sel: selectors.BaseSelector, c: Conn, conns: dict | None = None) -> None:
        """Answer 503 + Retry-After and close gracefully (see the module docstring); ``conns``
        is where ``c`` was open until now, if anywhere."""
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
        if len(self.draining) >= self.max_draining:
            c.state = "closed"
            c.sock.close()
            return
        c.state, c.deadline = "drain", time.monotonic() + 1.0
        self.draining[c.sock] = c
        sel.register(c.sock, selectors.EVENT_READ, c)

    def drain(self, sel: selectors.BaseSelector, c: Conn) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            close(sel, self.draining, c)

    def expire(self, sel: selectors.BaseSelector, now: float) -> None:
        for c in [c for c in self.draining.values() if c.deadline < now]:
            close(sel, self.draining, c)

    def close_all(self, sel: selectors.BaseSelector) -> None:
        for c in list(self.draining.values()):
            close(sel, self.draining, c)
