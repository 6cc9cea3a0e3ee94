"""boundedhttp.Client against a loopback server: kept-alive connections, and every way a kept
connection ends (the server closes it idle, says so, drops a request, answers too much)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from belabox_metrics.platform import boundedhttp


class Server:
    """HTTP/1.1 with keep-alive; records (connection number, method, path, headers) per request.
    ``mode`` decides how a connection ends: "keep" (never), "close" (Connection: close on the
    first answer), "silent" (closed after the first answer without a word), "drop2" (the
    second request on a connection is read and dropped unanswered), "drop" (every request)."""

    def __init__(self) -> None:
        self.mode = "keep"
        self.body = b""
        self.seen: list[tuple[int, str, str, dict]] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1
                self.conn_no, self.served = outer.connections, 0

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length:
                    self.rfile.read(length)
                self.served += 1
                outer.seen.append((self.conn_no, self.command, self.path, dict(self.headers)))
                if outer.mode == "drop" or (outer.mode == "drop2" and self.served == 2):
                    self.close_connection = True
                    return
                self.send_response(200)
                if outer.mode == "close":
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)
                if outer.mode == "silent":
                    self.close_connection = True

            do_GET = do_POST = answer  # noqa: N815 - http.server's naming

            def log_message(self, *a) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # resets are what some tests do
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/import"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def post(client: boundedhttp.Client, url: str, max_body: int = 1024) -> boundedhttp.Answer:
    return client.request("POST", url, body=b"x" * 100, budget=5.0, max_body=max_body)


def test_requests_share_one_kept_alive_connection(server):
    with boundedhttp.Client() as client:
        answers = [post(client, server.url) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5 and all(a.complete for a in answers)
    assert [conn for conn, *_ in server.seen] == [1] * 5


@pytest.mark.parametrize("mode", ["close", "silent"])
def test_a_connection_the_server_ended_is_replaced(server, mode):
    server.mode = mode
    with boundedhttp.Client() as client:
        assert post(client, server.url).status == 200
        time.sleep(0.2)  # the silent close reaches us
        assert post(client, server.url).status == 200
    assert [conn for conn, *_ in server.seen] == [1, 2]


def test_a_connection_idle_for_too_long_is_not_reused(server):
    now = [100.0]
    with boundedhttp.Client(monotonic=lambda: now[0]) as client:
        post(client, server.url)
        now[0] += boundedhttp.MAX_IDLE_S - 1
        post(client, server.url)
        now[0] += boundedhttp.MAX_IDLE_S + 1  # a NAT on the way may have dropped it silently
        post(client, server.url)
    assert [conn for conn, *_ in server.seen] == [1, 1, 2]


def test_a_request_dropped_on_a_kept_connection_goes_once_more_on_a_new_one(server):
    server.mode = "drop2"
    with boundedhttp.Client() as client:
        assert post(client, server.url).status == 200
        assert post(client, server.url).status == 200  # dropped on connection 1, answered on 2
    assert [conn for conn, *_ in server.seen] == [1, 1, 2]


def test_a_request_dropped_twice_is_an_error_not_a_loop(server):
    with boundedhttp.Client() as client:
        assert post(client, server.url).status == 200
        server.mode = "drop"
        with pytest.raises(boundedhttp.FetchError) as e:
            post(client, server.url)
        assert e.value.kind == boundedhttp.CONNECT
        with pytest.raises(boundedhttp.FetchError):
            post(client, server.url)  # a new connection that drops it is not retried
    assert [conn for conn, *_ in server.seen] == [1, 1, 2, 3]


def test_a_long_answer_is_cut_and_its_connection_not_reused(server):
    server.body = b"y" * 100_000
    with boundedhttp.Client() as client:
        a = post(client, server.url, max_body=1000)
        assert (a.complete, a.body) == (False, b"y" * 1000)
        b = post(client, server.url, max_body=200_000)
        assert b.complete and len(b.body) == 100_000
    assert [conn for conn, *_ in server.seen] == [1, 2]


def test_url_credentials_become_basic_auth_and_the_origin_change_reconnects(server):
    other = Server()
    try:
        with boundedhttp.Client() as client:
            url = server.url.replace("http://", "http://user:p%40ss@")
            post(client, url)
            post(client, other.url)
            post(client, server.url)
        assert server.seen[0][3]["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
        assert "Authorization" not in server.seen[1][3]
        assert [conn for conn, *_ in server.seen] == [1, 2] and len(other.seen) == 1
    finally:
        other.close()


def test_failures_have_a_kind_and_no_url(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with boundedhttp.Client() as client:
        with pytest.raises(boundedhttp.FetchError) as e:
            post(client, f"http://127.0.0.1:{port}/x?key=SECRET")
        assert e.value.kind == boundedhttp.CONNECT and "Connection refused" in str(e.value)
        assert "SECRET" not in str(e.value)
        with pytest.raises(boundedhttp.FetchError) as e:
            post(client, server.url.replace("http://", "https://"))
        assert e.value.kind == boundedhttp.TLS
