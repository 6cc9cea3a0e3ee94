"""The SRT receiver stats poller against a real local HTTP server serving every documented
shape, errors, a hang, a trickle and malformed JSON."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.belabox import srtstats
from belabox_metrics.collectors.belabox.collector import BelaboxCollector
from belabox_metrics.collectors.belabox.srt import SrtCollector
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.health import registry as health
from belabox_metrics.platform import boundedhttp
from tests.support.proctree import STREAM_TREE

STREAM_ID = "publish/live/PLANTED_streamkey_srt"

SHAPES = {
    # irl-srt-server / SLS forks, camelCase (NOALBS "SrtLiveServer")
    "/sls": {"publishers": {STREAM_ID: {
        "bitrate": 4962, "bytesRcvDrop": 0, "bytesRcvLoss": 1316, "latency": 2000, "mbpsBandwidth": 542.556,
        "mbpsRecvRate": 4.546, "msRcvBuf": 182, "pktRcvDrop": 3, "pktRcvLoss": 17, "rtt": 12.702, "uptime": 13,
        "pktRcvRetrans": 21, "pktSentNAKTotal": 9}}, "status": "ok"},
    # OpenIRL srt-live-server ?legacy=1, snake_case
    "/snake": {"publishers": {"live": {
        "bitrate": 16363, "bytes_rcv_drop": 0, "bytes_rcv_loss": 0, "mbps_bandwidth": 2.1, "mbps_recv_rate": 2.4,
        "ms_rcv_buf": 1984, "pkt_rcv_drop": 5, "pkt_rcv_loss": 8, "rtt": 30.2, "uptime": 3600, "latency": 2000}},
        "status": "ok"},
    # BELABOX-style receiver (NOALBS "Belabox")
    "/belabox": {"publishers": {"feed1": {"bitrate": 5800, "rtt": 45.5, "dropped_pkts": 12}}},
    # OpenIRL srt-live-server /stats/<player>
    "/openirl": {"publisher": {"bitrate": 16363, "buffer": 1995, "dropped_pkts": 45, "rtt": 30.2, "uptime": 3600,
                               "latency": 2000}, "status": "ok"},
    # voc/srtrelay /sockets
    "/srtrelay": [
        {"address": "127.0.0.1:59565", "stream_id": "publish/q2", "stats": {
            "PktRecvTotal": 9484, "PktRcvLossTotal": 4, "PktRcvDropTotal": 1, "PktRcvRetrans": 6,
            "MbpsRecvRate": 3.557279995149639, "MsRTT": 0.013, "MbpsBandwidth": 1843.584, "MsRcvBuf": 188,
            "MsRcvTsbPdDelay": 200}},
        {"address": "127.0.0.1:60000", "stream_id": "play/q2", "stats": {"MsRTT": 1.0}},
    ],
    "/empty": {"publishers": {}, "status": "ok"},
}


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in SHAPES:
            self._send(200, json.dumps(SHAPES[path]).encode())
        elif path == "/500":
            self._send(500, b'{"status":"error"}')
        elif path == "/malformed":
            self._send(200, b'{"publishers": {"x": ')
        elif path == "/html":
            self._send(200, b"<html>login</html>", "text/html")
        elif path == "/error":
            self._send(200, json.dumps({"status": "error", "message": "Stream ID not found"}).encode())
        elif path == "/big":
            self._send(200, b"[" + b" " * (2 << 20) + b"]")
        elif path == "/hang":
            self.release.wait(10)
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(200):
                if self.release.is_set():
                    return
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(404, b"{}")


@pytest.fixture
def server():
    release = threading.Event()
    handler = type("H", (_Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def _ctx(url: str, timeout: str = "1s") -> CollectorContext:
    cfg = configmod.loads(f"belabox:\n  srt_stats_url: '{url}'\ncollectors:\n  srt:\n    timeout: {timeout}\n")
    return CollectorContext(config=cfg, procfs=str(STREAM_TREE / "proc"), sysfs=str(STREAM_TREE / "sys"),
                            rootfs=str(STREAM_TREE / "root"))


def _by_name(samples):
    return {(s.name, s.labels): s.value for s in samples}


def test_sls_camelcase(server):
    c = SrtCollector(_ctx(server + "/sls?publisher=" + STREAM_ID))
    out = c.collect()
    assert c.problems == []
    stream = (("stream", srtstats.stream_label(STREAM_ID)),)
    v = _by_name(out)
    assert v[("belabox_srt_stats_up", ())] == 1
    assert v[("belabox_srt_publishers", ())] == 1
    assert v[("belabox_srt_receive_bitrate_bps", stream)] == 4962_000
    assert v[("belabox_srt_rtt_seconds", stream)] == pytest.approx(0.012702)
    assert v[("belabox_srt_packets_lost_total", stream)] == 17
    assert v[("belabox_srt_packets_dropped_total", stream)] == 3
    assert v[("belabox_srt_packets_retransmitted_total", stream)] == 21
    assert v[("belabox_srt_receive_buffer_seconds", stream)] == pytest.approx(0.182)
    assert v[("belabox_srt_latency_seconds", stream)] == 2.0
    assert v[("belabox_srt_bandwidth_estimate_bps", stream)] == pytest.approx(542.556e6)
    assert v[("belabox_srt_uptime_seconds", stream)] == 13
    # The stream id carries the stream key: only its hash leaves the collector.
    assert not any("PLANTED" in value for s in out for _, value in s.labels)


@pytest.mark.parametrize(("path", "expected"), [
    ("/snake", {"belabox_srt_receive_bitrate_bps": 16363_000, "belabox_srt_packets_lost_total": 8,
                "belabox_srt_packets_dropped_total": 5, "belabox_srt_receive_buffer_seconds": 1.984,
                "belabox_srt_bandwidth_estimate_bps": 2.1e6, "belabox_srt_rtt_seconds": 0.0302}),
    ("/belabox", {"belabox_srt_receive_bitrate_bps": 5800_000, "belabox_srt_rtt_seconds": 0.0455,
                  "belabox_srt_packets_dropped_total": 12}),
    ("/openirl", {"belabox_srt_receive_bitrate_bps": 16363_000, "belabox_srt_receive_buffer_seconds": 1.995,
                  "belabox_srt_packets_dropped_total": 45, "belabox_srt_latency_seconds": 2.0,
                  "belabox_srt_uptime_seconds": 3600}),
    ("/srtrelay", {"belabox_srt_receive_bitrate_bps": 3.557279995149639e6, "belabox_srt_rtt_seconds": 0.013e-3,
                   "belabox_srt_packets_lost_total": 4, "belabox_srt_packets_dropped_total": 1,
                   "belabox_srt_packets_retransmitted_total": 6, "belabox_srt_latency_seconds": 0.2}),
])
def test_other_documented_shapes(server, path, expected):
    c = SrtCollector(_ctx(server + path))
    out = c.collect()
    assert c.problems == []
    got = {s.name: s.value for s in out if s.label("stream") is not None}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    assert _by_name(out)[("belabox_srt_publishers", ())] == 1  # srtrelay's player socket is not a publisher


def test_no_publisher_is_zero_publishers_not_an_error(server):
    c = SrtCollector(_ctx(server + "/empty"))
    out = c.collect()
    assert c.problems == []
    assert _by_name(out) == {("belabox_srt_stats_up", ()): 1, ("belabox_srt_publishers", ()): 0}


@pytest.mark.parametrize(("path", "words"), [
    ("/500", "HTTP 500"),
    ("/404", "HTTP 404"),
    ("/malformed", "not JSON"),
    ("/html", "not JSON"),
    ("/error", "status=error"),
    ("/big", "larger than"),
    ("/hang", "no complete answer within 0.8s"),
    ("/trickle", "within 0.8s"),
])
def test_failures_are_degraded_and_bounded(server, path, words):
    c = SrtCollector(_ctx(server + path + "?key=PLANTED_api_key"))
    t0 = time.monotonic()
    out = c.collect()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"{path} took {elapsed:.2f}s"
    assert _by_name(out) == {("belabox_srt_stats_up", ()): 0}
    assert len(c.problems) == 1 and words in c.problems[0]
    assert "PLANTED" not in c.problems[0]


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = SrtCollector(_ctx(f"http://127.0.0.1:{port}/stats?key=PLANTED_api_key"))
    assert _by_name(c.collect()) == {("belabox_srt_stats_up", ()): 0}
    assert "Connection refused" in c.problems[0] and "PLANTED" not in c.problems[0]


def test_no_url_configured_means_nothing_to_poll():
    c = SrtCollector(_ctx(""))
    assert c.collect() == [] and c.problems == []


def test_through_the_runner_a_hang_degrades_srt_only(server):
    ctx = _ctx(server + "/hang")
    reg = health.Registry()
    runner = CollectorRunner([SrtCollector(ctx), BelaboxCollector(ctx)], ctx.config, reg, None)
    try:
        t0 = time.monotonic()
        samples = runner.run_all()
        assert time.monotonic() - t0 < 1.5
        assert reg.get("collector.srt").status == health.DEGRADED
        assert "no complete answer" in reg.get("collector.srt").message
        assert reg.get("collector.belabox").status == health.OK
        assert any(s.name == "belabox_process_up" for s in samples)
        # The next cycle against a healthy shape recovers.
        runner2 = CollectorRunner([SrtCollector(_ctx(server + "/sls"))], ctx.config, reg, None)
        runner2.run_all()
        runner2.close()
        assert reg.get("collector.srt").status == health.OK
    finally:
        runner.close()


def test_tls_to_a_plain_server_and_odd_schemes_fail_cleanly(server):
    c = SrtCollector(_ctx(server.replace("http://", "https://") + "/sls"))
    c.collect()
    assert c.problems and "TLS failed" in c.problems[0]
    # The config refuses other schemes; the fetcher does too.
    with pytest.raises(boundedhttp.FetchError, match="not http"):
        boundedhttp.get("ftp://127.0.0.1/stats", 1.0, 100)
