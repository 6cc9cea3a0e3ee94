"""One HTTP GET whose whole exchange, not each socket read, ends by a deadline.

requests (and urllib3 under it) only bound each recv(): a server that sends a byte every
second keeps a read going for ever, and ``iter_content`` waits for a full chunk
(found by tests/integration/test_srt_poller.py's trickling server). Here every socket
operation gets the time that is left, and a timer shuts the socket down at the deadline,
which wakes a recv() blocked in any layer. Name resolution is the one step no socket
timeout covers; the runner's per-collector timeout is the bound there. Errors are our own one-line words: library
messages quote the URL, whose query or userinfo may hold an API key.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit


class FetchError(Exception):
    pass


def get(url: str, budget: float, max_bytes: int, headers: dict[str, str] | None = None,
        monotonic=time.monotonic) -> bytes:
    """The body of a 200 answer to GET ``url``, within ``budget`` seconds and ``max_bytes``;
    FetchError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("the URL is not http:// or https://")
    deadline = monotonic() + budget

    def left() -> float:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise FetchError(f"no complete answer within {budget:.1f}s")
        return remaining

    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=left(),
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=left())
    hdrs = {"Accept": "application/json", "Accept-Encoding": "identity", "Connection": "close"}
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        hdrs["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    hdrs.update(headers or {})
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timer: threading.Timer | None = None
    try:
        conn.connect()
        timer = threading.Timer(left(), _shutdown, (conn.sock,))
        timer.daemon = True
        timer.start()
        conn.request("GET", target, headers=hdrs)
        conn.sock.settimeout(left())
        resp = conn.getresponse()
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status}")
        body = bytearray()
        while True:
            if conn.sock is not None:  # http.client drops it once the body is complete
                conn.sock.settimeout(left())
            chunk = resp.read1(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"answer larger than {max_bytes} bytes")
        left()  # EOF caused by the deadline's shutdown is a timeout, not an answer
        if resp.length not in (None, 0):
            raise FetchError("the answer was cut short")
        return bytes(body)
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"no complete answer within {budget:.1f}s") from None
    except ssl.SSLError as e:
        raise FetchError(f"TLS failed ({e.reason or type(e).__name__})") from None
    except (http.client.HTTPException, ValueError) as e:
        if monotonic() >= deadline:
            raise FetchError(f"no complete answer within {budget:.1f}s") from None
        raise FetchError(f"bad HTTP answer ({type(e).__name__})") from None
    except OSError as e:
        if monotonic() >= deadline:
            raise FetchError(f"no complete answer within {budget:.1f}s") from None
        raise FetchError(f"cannot connect ({e.strerror or type(e).__name__})") from None
    finally:
        if timer is not None:
            timer.cancel()
        conn.close()


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the exchange ended in time
