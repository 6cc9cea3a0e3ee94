"""The statistics JSON of the SRT receivers IRL streamers run, normalised.

Documented shapes (facts from each project's public docs or API source):
- ``publishers`` map, camelCase: SRT Live Server forks (irlserver/irl-srt-server ``/stats``,
  the format NOALBS's "SrtLiveServer" reads): ``{"publishers": {"<streamid>": {"bitrate"
  (kbit/s), "rtt" (ms), "pktRcvLoss", "pktRcvDrop", "bytesRcvLoss", "bytesRcvDrop",
  "mbpsRecvRate", "mbpsBandwidth", "msRcvBuf", "uptime" (s), "latency" (ms),
  "pktRcvRetrans"?}}, "status": "ok"}``.
- ``publishers`` map, snake_case: OpenIRL/srt-live-server ``/stats/<player>?legacy=1``
  (``pkt_rcv_loss``, ``ms_rcv_buf``, ``mbps_recv_rate`` ...).
- ``publishers`` map, short: BELABOX-style receivers (NOALBS "Belabox"): ``{"bitrate",
  "rtt", "dropped_pkts"}``.
- ``publisher`` object: OpenIRL/srt-live-server ``/stats/<player>`` (API.md): ``{"publisher":
  {"bitrate", "buffer" (ms), "dropped_pkts", "rtt", "uptime", "latency"}, "status": "ok"}``.
- list of sockets: voc/srtrelay ``/sockets`` (docs/API.md): ``[{"address", "stream_id",
  "stats": {"PktRcvLossTotal", "PktRcvDropTotal", "PktRcvRetrans", "MbpsRecvRate", "MsRTT",
  "MsRcvBuf", "MsRcvTsbPdDelay", "MbpsBandwidth" ...}}]``; only ``publish/`` streams count.
Publisher names are stream ids, which often embed a stream key: they leave this module only
as a short hash (``stream_label``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

# field -> ((json key, factor to base units), ...), first present wins.
FIELDS: dict[str, tuple[tuple[str, float], ...]] = {
    "bitrate_bps": (("bitrate", 1000.0), ("mbpsRecvRate", 1e6), ("mbps_recv_rate", 1e6), ("MbpsRecvRate", 1e6)),
    "rtt_seconds": (("rtt", 1e-3), ("msRTT", 1e-3), ("MsRTT", 1e-3)),
    "lost_packets": (("pktRcvLoss", 1.0), ("pkt_rcv_loss", 1.0), ("PktRcvLossTotal", 1.0)),
    "dropped_packets": (("pktRcvDrop", 1.0), ("pkt_rcv_drop", 1.0), ("dropped_pkts", 1.0),
                        ("PktRcvDropTotal", 1.0)),
    "retransmitted_packets": (("pktRcvRetrans", 1.0), ("pkt_rcv_retrans", 1.0), ("PktRcvRetrans", 1.0)),
    "buffer_seconds": (("msRcvBuf", 1e-3), ("ms_rcv_buf", 1e-3), ("buffer", 1e-3), ("MsRcvBuf", 1e-3)),
    "latency_seconds": (("latency", 1e-3), ("MsRcvTsbPdDelay", 1e-3)),
    "bandwidth_bps": (("mbpsBandwidth", 1e6), ("mbps_bandwidth", 1e6), ("MbpsBandwidth", 1e6)),
    "uptime_seconds": (("uptime", 1.0),),
}


class UnknownShape(ValueError):
    """JSON that is none of the documented shapes; the message never quotes it."""


@dataclass(frozen=True)
class Publisher:
    name: str | None  # None: the receiver answered for one publisher without naming it
    values: dict[str, float]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) and f >= 0 else None


def normalise(stats: dict) -> dict[str, float]:
    """Base-unit values of one publisher's statistics object; unknown keys ignored."""
    out = {}
    for field, keys in FIELDS.items():
        for key, factor in keys:
            v = _number(stats.get(key))
            if v is not None:
                out[field] = v * factor
                break
    return out


def parse(doc: object) -> tuple[str, list[Publisher]]:
    """(shape, publishers) of a parsed stats document; UnknownShape otherwise."""
    if isinstance(doc, dict):
        if doc.get("status") == "error":
            raise UnknownShape("the receiver answered status=error")
        pubs = doc.get("publishers")
        if isinstance(pubs, dict):
            out = [Publisher(str(name), normalise(s)) for name, s in pubs.items() if isinstance(s, dict)]
            return "publishers", out
        if "publisher" in doc:
            one = doc["publisher"]
            if one is None or one == {}:
                return "publisher", []
            if isinstance(one, dict):
                return "publisher", [Publisher(None, normalise(one))]
        raise UnknownShape("a JSON object with neither 'publishers' nor 'publisher'")
    if isinstance(doc, list):
        out = []
        for sock in doc:
            if not isinstance(sock, dict) or not isinstance(sock.get("stats"), dict):
                raise UnknownShape("a JSON list whose items are not srtrelay sockets")
            sid = sock.get("stream_id")
            if isinstance(sid, str) and sid.startswith("publish/"):
                out.append(Publisher(sid, normalise(sock["stats"])))
        return "srtrelay", out
    raise UnknownShape(f"a JSON {type(doc).__name__}, not an object or a list")


def stream_label(name: str | None) -> str:
    """A stable, non-secret label for a stream id: ``s`` + 10 hex digits of its SHA-256."""
    if name is None:
        return "default"
    return "s" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:10]
