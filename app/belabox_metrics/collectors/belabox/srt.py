"""Collector polling an SRT receiver's statistics URL (``belabox.srt_stats_url``): what the
far end of the stream sees (RTT, loss, drops, retransmissions, receive bitrate).

The fetch (boundedhttp) ends within a share of the runner's per-collector timeout however
the server behaves, so a slow receiver degrades this collector and nothing else.
"""

from __future__ import annotations

import json
import time

from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.collectors.belabox import srtstats
from belabox_metrics.platform import boundedhttp
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


class SrtCollector(Collector):
    name = "srt"

    def __init__(self, ctx: CollectorContext, monotonic=time.monotonic):
        super().__init__(ctx)
        self._monotonic = monotonic
        self.problems: list[str] = []

    @classmethod
    def configured(cls, config) -> bool:
        return bool(config.belabox.srt_stats_url)

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
        except (boundedhttp.FetchError, srtstats.UnknownShape) as e:
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
        body = boundedhttp.get(url, budget, MAX_BODY, monotonic=self._monotonic)
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise boundedhttp.FetchError("the answer is not JSON") from None
