"""Collector polling an SRT receiver's statistics URL (``belabox.srt_stats_url``): what the
far end of the stream sees (RTT, loss, drops, retransmissions, receive bitrate).

The fetch is bounded as a whole, not per socket read: requests' timeout restarts with every
byte, so a server that trickles would hold the collector for ever. The body is read in
chunks against a deadline and a size cap. Errors are described in our own words: requests'
messages quote the URL, whose query may hold a receiver API key.
"""

from __future__ import annotations

import json
import time

import requests

from belabox_metrics import srtstats
from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.samples import Sample, sample

MAX_BODY = 1 << 20
# Share of the runner's per-collector timeout the HTTP exchange may use.
BUDGET_SHARE = 0.8

METRICS = (
    ("bitrate_bps", "belabox_srt_receive_bitrate_bps"),
    ("rtt_seconds", "belabox_srt_rtt_seconds"),
    ("lost_packets", "belabox_srt_packets_lost_total"),
    ("dropped_packets", "belabox_srt_packets_dropped_total"),
    ("retransmitted_packets", "belabox_srt_packets_retransmitted_total"),
    ("buffer_seconds", "belabox_srt_receive_buffer_seconds"),
    ("latency_seconds", "belabox_srt_latency_seconds"),
    ("bandwidth_bps", "belabox_srt_bandwidth_estimate_bps"),
    ("uptime_seconds", "belabox_srt_uptime_seconds"),
)


class FetchError(Exception):
    pass


class SrtCollector(Collector):
    name = "srt"

    def __init__(self, ctx: CollectorContext, session: requests.Session | None = None, monotonic=time.monotonic):
        super().__init__(ctx)
        self._session = session or requests.Session()
        self._monotonic = monotonic
        self.problems: list[str] = []

    def _budget(self) -> float:
        cfg = self.ctx.config
        timeout = cfg.collectors.get(self.name).timeout or cfg.collectors.default_timeout
        return max(0.2, timeout * BUDGET_SHARE)

    def collect(self) -> list[Sample]:
        self.problems = []
        url = self.ctx.config.belabox.srt_stats_url
        if not url:
            return []
        try:
            doc = self._fetch(url, self._budget())
            _shape, publishers = srtstats.parse(doc)
        except (FetchError, srtstats.UnknownShape) as e:
            self.problems.append(f"SRT stats: {e}")
            return [sample("belabox_srt_stats_up", 0)]
        out = [sample("belabox_srt_stats_up", 1), sample("belabox_srt_publishers", len(publishers))]
        for pub in publishers:
            labels = {"stream": srtstats.stream_label(pub.name)}
            for field, metric in METRICS:
                if field in pub.values:
                    out.append(sample(metric, pub.values[field], labels))
        return out

    def _fetch(self, url: str, budget: float) -> object:
        deadline = self._monotonic() + budget
        try:
            with self._session.get(url, timeout=(budget, budget), stream=True,
                                   headers={"Accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise FetchError(f"HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_content(16384):
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise FetchError(f"answer larger than {MAX_BODY} bytes")
                    if self._monotonic() > deadline:
                        raise FetchError(f"no complete answer within {budget:.1f}s")
        except requests.Timeout:
            raise FetchError(f"no answer within {budget:.1f}s") from None
        except requests.ConnectionError as e:
            # A read timeout inside iter_content surfaces as ConnectionError (requests models.py).
            if _timed_out(e):
                raise FetchError(f"no answer within {budget:.1f}s") from None
            raise FetchError(f"cannot connect ({_reason(e)})") from None
        except requests.RequestException as e:
            raise FetchError(f"request failed ({type(e).__name__})") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise FetchError("the answer is not JSON") from None

    def close(self) -> None:
        self._session.close()


def _chain(e: BaseException) -> list[BaseException]:
    """e and everything it wraps: causes, contexts, and the errors urllib3 and requests
    keep in ``args`` and ``reason`` instead of the exception chain."""
    out: list[BaseException] = []
    todo = [e]
    while todo and len(out) < 20:
        x = todo.pop(0)
        if any(x is y for y in out):
            continue
        out.append(x)
        todo.extend(n for n in (x.__cause__, x.__context__, getattr(x, "reason", None), *x.args)
                    if isinstance(n, BaseException))
    return out


def _timed_out(e: BaseException) -> bool:
    # urllib3 1.26 derives NewConnectionError from its ConnectTimeoutError, so names are
    # matched exactly rather than by "Timeout".
    return any(isinstance(x, TimeoutError) or type(x).__name__ == "ReadTimeoutError" for x in _chain(e))


def _reason(e: BaseException) -> str:
    """The OS reason (``Connection refused``) without the URL requests wraps it in."""
    for x in reversed(_chain(e)):
        if isinstance(x, OSError) and x.strerror:
            return x.strerror
    return type(e).__name__
