#!/usr/bin/env python3
"""Write a realistic synthetic history JSON (the `metrics-collector history --json` shape).

The story, at fixed fractions of the window so any length tells it the same way:
  0-5 %    clock not yet verified (booted without RTC, NTP not synced yet)
  33-58 %  wwan0's LTE signal drops (RSRP -95 -> -118 dBm), the encoder lowers its bitrate
           and the upload backlog grows while the uplink is weak
  67 %     the USB modem on usb0 disconnects; 3 minutes later it is back (counters reset)
  73-78 %  srtla_send exits, the stream is down until it restarts (restart counter +1)
  later    the backlog drains; the SoC warms up and the CPU clock is capped for a while

Deterministic (seeded), so tests can assert on it.
Usage: make_sample_history.py [--hours 1] [--step 30] [--cpus 8] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from datetime import datetime, timezone

START = datetime(2026, 12, 7, 14, 0, 0, tzinfo=timezone.utc).timestamp()
MODEM_A, MODEM_B = "3f9a0c12d4e7", "b81c55e09a21"


def _rfc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_history(hours: float = 1.0, step: float = 30.0, cpus: int = 8, start: float = START,
                 seed: int = 15) -> dict:
    rnd = random.Random(seed)
    span = hours * 3600.0
    end = start + span
    times = [start + i * step for i in range(int(span // step) + 1)]

    def at(frac: float) -> float:
        return start + frac * span

    drop = (at(0.33), at(0.58))
    usb_gone = (at(0.67), at(0.67) + 180)
    stream_down = (at(0.73), at(0.78))
    hot = (at(0.80), at(0.92))

    def inside(t: float, period: tuple[float, float]) -> bool:
        return period[0] <= t < period[1]

    series: dict[tuple, dict] = {}

    def put(name: str, labels: dict, t: float, v: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        s = series.setdefault(key, {"name": name, "labels": dict(labels), "points": []})
        s["points"].append([round(t, 3), round(v, 3)])

    counters: dict[str, float] = {}

    def count(key: str, inc: float, reset: bool = False) -> float:
        counters[key] = (0.0 if reset else counters.get(key, rnd.uniform(1e6, 1e9))) + inc
        return counters[key]

    backlog = 0.0
    restarts = 0
    was_gone = False
    for t in times:
        weak = inside(t, drop)
        gone = inside(t, usb_gone)
        down = inside(t, stream_down)
        # modem A: LTE on wwan0, the signal that drops
        put("belabox_modem_info", {"modem": MODEM_A, "interface": "wwan0", "access_tech": "lte",
                                   "model": "EG25-G", "manufacturer": "Quectel"}, t, 1)
        rsrp = (-118 if weak else -95) + rnd.gauss(0, 1.5)
        put("belabox_modem_rsrp_dbm", {"modem": MODEM_A, "access_tech": "lte"}, t, rsrp)
        put("belabox_modem_rsrq_db", {"modem": MODEM_A, "access_tech": "lte"}, t,
            (-17 if weak else -9) + rnd.gauss(0, 0.7))
        put("belabox_modem_snr_db", {"modem": MODEM_A, "access_tech": "lte"}, t, (-2 if weak else 12) + rnd.gauss(0, 1))
        tx_a = (0.4e6 if weak else 3.0e6) / 8 * step * (0 if down else 1)
        put("node_network_transmit_bytes_total", {"device": "wwan0"}, t, count("txa", tx_a))
        put("node_network_receive_bytes_total", {"device": "wwan0"}, t, count("rxa", tx_a / 20))
        # modem B: 5G on usb0; absent while unplugged, counters from 0 when it is back
        if not gone:
            put("belabox_modem_info", {"modem": MODEM_B, "interface": "usb0", "access_tech": "5gnr",
                                       "model": "RM520N-GL", "manufacturer": "Quectel"}, t, 1)
            put("belabox_modem_rsrp_dbm", {"modem": MODEM_B, "access_tech": "5gnr"}, t, -88 + rnd.gauss(0, 2))
            put("belabox_modem_snr_db", {"modem": MODEM_B, "access_tech": "5gnr"}, t, 18 + rnd.gauss(0, 1))
            tx_b = (4.5e6 if weak else 3.0e6) / 8 * step * (0 if down else 1)
            put("node_network_transmit_bytes_total", {"device": "usb0"}, t, count("txb", tx_b, reset=was_gone))
            put("node_network_receive_bytes_total", {"device": "usb0"}, t, count("rxb", tx_b / 20, reset=was_gone))
        was_gone = gone
        for dev in ("enP3p49s0", "lo"):  # ethernet unplugged: idle; loopback is never a link
            put("node_network_transmit_bytes_total", {"device": dev}, t, count("tx" + dev, 0 if dev != "lo" else 900))
        temp = 58 + 4 * math.sin((t - start) / span * math.pi) + (9 if inside(t, hot) else 0) + rnd.gauss(0, 0.3)
        put("belabox_soc_temp_celsius", {"type": "package-thermal"}, t, temp)
        for cpu in range(cpus):
            cap = 1.8e9 if inside(t, hot) and cpu >= 4 else (2.4e9 if cpu >= 4 else 1.8e9)
            put("node_cpu_scaling_frequency_max_hertz", {"cpu": str(cpu)}, t, cap)
            busy = 0.05 if down else 0.45 + 0.1 * rnd.random()
            for mode, share in (("user", busy * 0.7), ("system", busy * 0.3), ("iowait", 0.01),
                                ("idle", 1 - busy - 0.01)):
                put("node_cpu_seconds_total", {"cpu": str(cpu), "mode": mode}, t,
                    count(f"cpu{cpu}{mode}", share * step))
        put("node_memory_MemAvailable_bytes", {}, t, 5.6e9 - 2e8 * (t - start) / span + rnd.gauss(0, 5e6))
        put("node_filesystem_avail_bytes", {"device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/data"}, t,
            48.2e9 - 1.5e9 * (t - start) / span)
        put("node_filesystem_avail_bytes", {"device": "/dev/mmcblk0p2", "fstype": "ext4", "mountpoint": "/"}, t, 2.1e9)
        if not down:
            put("belabox_encoder_bitrate_bps", {}, t, 2.0e6 if weak else 6.0e6)
        if inside(t, (stream_down[1], stream_down[1] + step)):
            restarts += 1
        for proc in ("belacoder", "srtla_send", "belaUI"):
            put("belabox_process_up", {"process": proc}, t, 0 if down and proc == "srtla_send" else 1)
            put("belabox_process_restarts_total", {"process": proc}, t, restarts if proc == "srtla_send" else 0)
        rate_in = 240 / 30 * step  # samples collected per step
        backlog = max(0.0, backlog + (rate_in if weak or gone else -rate_in * 4))
        put("metrics_collector_spool_pending_samples", {}, t, backlog)

    events = [
        {"time": _rfc(at(0.05)), "kind": "clock", "text": "system clock synchronized (NTP), clock verified"},
        {"time": _rfc(drop[0] + 20), "kind": "modem", "text": "wwan0 (EG25-G): signal weak, RSRP -118 dBm"},
        {"time": _rfc(drop[1] + 10), "kind": "modem", "text": "wwan0 (EG25-G): signal recovered, RSRP -95 dBm"},
        {"time": _rfc(usb_gone[0] + 2), "kind": "usb", "text": "usb 3-1: USB disconnect, device number 4 (RM520N-GL)"},
        {"time": _rfc(usb_gone[1] + 5), "kind": "usb",
         "text": "usb 3-1: new SuperSpeed USB device number 5 (RM520N-GL)"},
        {"time": _rfc(stream_down[0] + 3), "kind": "process", "text": "srtla_send exited with status 1"},
        {"time": _rfc(stream_down[1] + 4), "kind": "process", "text": "srtla_send started (restart 1)"},
        {"time": _rfc(hot[0] + 30), "kind": "kernel", "text": "thermal: cpu clock capped to 1.8 GHz (bigcore)"},
    ]
    return {
        "since": _rfc(start), "until": _rfc(end),
        "device_id": "bx-0042", "host": "belabox",
        "series": list(series.values()),
        "events": events,
        "clock_unverified": [[start, at(0.05)]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--step", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--cpus", type=int, default=8)
    p.add_argument("--output", "-o", help="file to write (default stdout)")
    a = p.parse_args(argv)
    if a.hours <= 0 or a.step <= 0 or a.cpus < 1:
        p.error("--hours and --step must be positive, --cpus at least 1")
    text = json.dumps(make_history(a.hours, a.step, a.cpus), separators=(",", ":"))
    if a.output:
        with open(a.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
