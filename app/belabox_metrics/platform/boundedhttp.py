"""HTTP exchanges whose whole exchange, not each socket read, ends by a deadline.

requests (and urllib3 under it) only bound each recv(): a server that sends a byte every
second keeps a read going for ever, and ``iter_content`` waits for a full chunk
(found by tests/integration/test_srt_poller.py's trickling server). Here every socket
operation gets the time that is left, and a timer shuts the socket down at the deadline,
which wakes a recv() blocked in any layer. Name resolution is the one step no socket
timeout covers; the caller's own bound (the runner's per-collector timeout, the uploader's
cycle) is the bound there. Errors are our own one-line words: library messages quote the
URL, whose query or userinfo may hold an API key.

One module for every HTTP client of the agent (the SRT poller, the uploader, the clock
check): the standard library's http.client, because requests and its helpers cost the
long-running agent about 8 MB of its 40 MB (bench_run_memory). TLS always verifies; a
private CA comes from ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``), as it did with
requests, and OpenSSL itself honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``. Redirects are
never followed and proxies from the environment are not used.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

# FetchError.kind: what went wrong, for callers that count or retry by it.
CONNECT, TIMEOUT, TLS, OTHER = "connect", "timeout", "tls", "other"
_READ_CHUNK = 65536  # per read1(): a bound on the buffer, not on the body
# A connection idle for longer is not reused: a carrier's NAT may have forgotten it without a
# word, and a request sent into it would wait out the whole budget. Within an upload cycle
# requests follow each other at once; between cycles a new handshake costs far less.
MAX_IDLE_S = 20.0


class FetchError(Exception):
    def __init__(self, message: str, kind: str = OTHER):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool  # False: the body was longer than asked for (or not read at all) and is cut


_tls_lock = threading.Lock()
_tls_cache: tuple[tuple, ssl.SSLContext] | None = None


def tls_context() -> ssl.SSLContext:
    """The verifying client context, built once per CA setting: loading the CA store costs
    time and memory, and a changed ``REQUESTS_CA_BUNDLE`` still takes effect at once."""
    global _tls_cache
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    key = (bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        if _tls_cache is not None and _tls_cache[0] == key:
            return _tls_cache[1]
        try:
            if bundle is None:
                ctx = ssl.create_default_context()
            elif os.path.isdir(bundle):
                ctx = ssl.create_default_context(capath=bundle)
            else:
                ctx = ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as e:
            raise FetchError(f"TLS failed (cannot load the CA bundle {bundle}: "
                             f"{getattr(e, 'strerror', None) or e.__class__.__name__})", TLS) from None
        _tls_cache = (key, ctx)
        return ctx


class Client:
    """Requests to one origin at a time over one kept-alive connection, reopened when the
    server closed it or the origin changed. Not thread-safe: one user thread at a time."""

    def __init__(self, monotonic=time.monotonic):
        self._monotonic = monotonic
        self._conn: http.client.HTTPConnection | None = None
        self._absolute = False
        self._origin: tuple | None = None
        self._idle_since = 0.0

    def request(self, method: str, url: str, *, budget: float, max_body: int, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        """One exchange, done within ``budget`` seconds; at most ``max_body`` bytes of the answer
        are read (0: none, the connection is then closed). Raises FetchError."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("the URL is not http:// or https://")
        deadline = self._monotonic() + budget
        hdrs = dict(headers or {})
        if parts.username is not None:
            # URL credentials replace any Authorization header, as requests did.
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            hdrs["Authorization"] = "Basic " + base64.b64encode(cred).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        origin = (parts.scheme, parts.hostname, parts.port)
        reused = (self._conn is not None and self._origin == origin and not _dropped(self._conn)
                  and self._monotonic() - self._idle_since <= MAX_IDLE_S)
        if not reused:
            self.close()
        try:
            return self._exchange(parts, origin, method, target, body, hdrs, deadline, budget, max_body)
        except _Stale:
            # The server closed the kept-alive connection while we sent: it never saw this
            # request, so it goes once more on a new connection (urllib3 does the same).
            self.close()
            return self._exchange(parts, origin, method, target, body, hdrs, deadline, budget, max_body)

    def _exchange(self, parts: SplitResult, origin: tuple, method: str, target: str, body: bytes | None,
                  hdrs: dict[str, str], deadline: float, budget: float, max_body: int) -> Answer:
        def left() -> float:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise FetchError(f"no complete answer within {budget:.1f}s", TIMEOUT)
            return remaining

        fresh = self._conn is None
        timer: threading.Timer | None = None
        keep = False
        try:
            if fresh:
                self._conn, self._absolute = _connection(parts, left())
                self._origin = origin
                self._conn.connect()
            conn = self._conn
            if self._absolute:  # plain HTTP through a proxy: the request line names the target
                target = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{target}"
                proxy = proxy_for(parts.scheme, parts.hostname, parts.port or 80)
                hdrs = {**hdrs, **(_proxy_auth(proxy) if proxy else {})}
            conn.sock.settimeout(left())
            timer = threading.Timer(left(), _shutdown, (conn.sock,))
            timer.daemon = True
            timer.start()
            try:
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError) as e:
                if fresh or self._monotonic() >= deadline:
                    raise
                raise _Stale from e
            data, complete = _read_body(conn, resp, max_body, left)
            resp.close()  # read1() leaves a fully read answer open, and an open one blocks the next request
            keep = complete and not resp.will_close
            self._idle_since = self._monotonic()
            return Answer(resp.status, resp.headers, data, complete)
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(f"no complete answer within {budget:.1f}s", TIMEOUT) from None
        except ssl.SSLCertVerificationError as e:
            raise FetchError(f"TLS failed (certificate verify failed: {e.verify_message})", TLS) from None
        except ssl.SSLError as e:
            raise FetchError(f"TLS failed ({e.reason or type(e).__name__})", TLS) from None
        except (http.client.HTTPException, ValueError) as e:
            if self._monotonic() >= deadline:
                raise FetchError(f"no complete answer within {budget:.1f}s", TIMEOUT) from None
            raise FetchError(f"bad HTTP answer ({type(e).__name__})", CONNECT) from None
        except OSError as e:
            if self._monotonic() >= deadline:
                raise FetchError(f"no complete answer within {budget:.1f}s", TIMEOUT) from None
            raise FetchError(f"cannot connect ({e.strerror or type(e).__name__})", CONNECT) from None
        finally:
            if timer is not None:
                timer.cancel()
            if not keep:
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._origin = None, None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Stale(Exception):
    pass


def proxy_for(scheme: str, host: str, port: int, environ=None) -> SplitResult | None:
    """The proxy from ``<scheme>_proxy`` (or upper case) unless ``no_proxy`` names the host;
    tidewatch ignored these (W34), and a box behind a venue's proxy could not upload at all."""
    env = os.environ if environ is None else environ
    value = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
    if not value:
        return None
    for entry in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return None
        name, _, eport = entry.partition(":")
        if eport and eport != str(port):
            continue
        name = name.lstrip(".")
        if host.lower() == name or host.lower().endswith("." + name):
            return None
    proxy = urlsplit(value if "://" in value else "http://" + value)
    return proxy if proxy.hostname else None


def _proxy_auth(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    cred = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(cred).decode()}


def _connection(parts: SplitResult, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """The connection for ``parts``, and whether requests must use the absolute URL (plain HTTP
    through a proxy). HTTPS through a proxy is a CONNECT tunnel, verified against the target."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = proxy_for(parts.scheme, parts.hostname, port)
    if parts.scheme == "https":
        if proxy is None:
            return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=tls_context()), False
        conn = http.client.HTTPSConnection(proxy.hostname, proxy.port or 8080, timeout=timeout,
                                           context=tls_context())
        conn.set_tunnel(parts.hostname, port, headers=_proxy_auth(proxy))
        return conn, False
    if proxy is None:
        return http.client.HTTPConnection(parts.hostname, port, timeout=timeout), False
    return http.client.HTTPConnection(proxy.hostname, proxy.port or 8080, timeout=timeout), True


def _read_body(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, max_body: int,
               left) -> tuple[bytes, bool]:
    """(up to ``max_body`` bytes of the body, whether that was all of it)."""
    if max_body <= 0:
        return b"", False
    body = bytearray()
    while True:
        if conn.sock is not None:  # http.client drops it once the body is complete
            conn.sock.settimeout(left())
        chunk = resp.read1(_READ_CHUNK)
        if not chunk:
            break
        body += chunk
        if len(body) > max_body:
            return bytes(body[:max_body]), False
    left()  # EOF caused by the deadline's shutdown is a timeout, not an answer
    if resp.length not in (None, 0):
        raise FetchError("the answer was cut short", CONNECT)
    return bytes(body), True


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle kept-alive connection is unusable: closed by us, or readable, which
    for an idle HTTP connection means the server closed it (or sent something unasked)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def get(url: str, budget: float, max_bytes: int, headers: dict[str, str] | None = None,
        monotonic=time.monotonic) -> bytes:
    """The body of a 200 answer to GET ``url``, within ``budget`` seconds and ``max_bytes``;
    FetchError otherwise."""
    hdrs = {"Accept": "application/json", "Accept-Encoding": "identity", "Connection": "close"}
    hdrs.update(headers or {})
    with Client(monotonic) as client:
        answer = client.request("GET", url, budget=budget, max_body=max_bytes, headers=hdrs)
    if answer.status != 200:
        raise FetchError(f"HTTP {answer.status}")
    if not answer.complete:
        raise FetchError(f"answer larger than {max_bytes} bytes")
    return answer.body


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the exchange ended in time
