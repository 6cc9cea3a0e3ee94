"""The key signals of a BELABOX, as data: what "What happened?" shows first, in order.

Each :class:`Signal` names the metrics it reads (the collectors' names, see
``collectors/*.py`` and ``tests/collectors/expected/*.prom``), how a series becomes a
plotted value (``kind``), and how many rows it makes (``group_by``). The renderers in
``screen`` and ``html`` only walk this table; the spool side uses :data:`KEY_METRICS`
and :func:`is_key_series` to decide which series it keeps as history.

Kinds:
  gauge     the value as reported
  rate      per-second rate of a counter between two points (resets and gaps handled)
  increase  how much a counter grew between two points (restarts, throttle events)
  busy      CPU busy percent from node_cpu_seconds_total (all modes but idle and iowait)
  state     0/1 (down/up); a row's column shows the worst (lowest) value in it
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GAUGE, RATE, INCREASE, BUSY, STATE = "gauge", "rate", "increase", "busy", "state"


@dataclass(frozen=True)
class Signal:
    key: str
    # Row label; ``{group}`` is replaced by the row's group (modem interface, link, process).
    title: str
    # Metric names; per group the first one present wins (RSRP on LTE/5G, RSSI on 3G).
    metrics: tuple[str, ...]
    unit: str
    kind: str = GAUGE
    group_by: str | None = None
    # How several series of one row merge at one timestamp: max, min or sum.
    combine: str = "max"
    # Only series whose label has one of these values (label, values).
    where: tuple[str, tuple[str, ...]] | None = None
    # Series whose label has one of these values are not key signals (loopback).
    exclude: tuple[str, tuple[str, ...]] | None = None
    # One group only: the first of these label values present (the data mountpoint).
    prefer: tuple[str, tuple[str, ...]] | None = None
    # Left out for a group that already has a row of this signal key.
    unless: str | None = None
    # Multiplier applied to the derived value (bytes/s -> bit/s).
    scale: float = 1.0
    # Shown on the 80x24 screen; every row is in the HTML.
    screen: bool = True
    # A row whose values are all zero is of no interest on the screen (an idle NIC).
    hide_zero_on_screen: bool = False


# Labels that are read for naming rows, not plotted.
INFO_METRICS = ("belabox_modem_info",)

STREAM_PROCESSES = ("belacoder", "srtla_send")

KEY_SIGNALS: tuple[Signal, ...] = (
    Signal("modem_rsrp", "{group} RSRP", ("belabox_modem_rsrp_dbm",), "dBm", group_by="modem"),
    Signal("modem_rssi", "{group} RSSI", ("belabox_modem_rssi_dbm",), "dBm", group_by="modem",
           unless="modem_rsrp"),
    Signal("modem_snr", "{group} SNR", ("belabox_modem_snr_db",), "dB", group_by="modem"),
    Signal("modem_rsrq", "{group} RSRQ", ("belabox_modem_rsrq_db",), "dB", group_by="modem", screen=False),
    Signal("link_tx", "{group} tx", ("node_network_transmit_bytes_total",), "bps", RATE, group_by="device",
           exclude=("device", ("lo",)), scale=8.0, hide_zero_on_screen=True),
    Signal("link_rx", "{group} rx", ("node_network_receive_bytes_total",), "bps", RATE, group_by="device",
           exclude=("device", ("lo",)), scale=8.0, screen=False),
    Signal("soc_temp", "SoC temp", ("belabox_soc_temp_celsius",), "celsius"),
    Signal("thermal_max", "hottest zone", ("node_thermal_zone_temp",), "celsius", unless="soc_temp"),
    # x86 counts throttle events; ARM (RK3588) lowers scaling_max_freq instead, so both are
    # shown; the highest cap over all CPUs drops when the big cores are throttled.
    Signal("throttles", "throttle events", ("node_cpu_package_throttles_total", "node_cpu_core_throttles_total"),
           "count", INCREASE, combine="sum"),
    Signal("cpu_clock_cap", "CPU clock cap", ("node_cpu_scaling_frequency_max_hertz",), "hertz"),
    Signal("cpu_busy", "CPU busy", ("node_cpu_seconds_total",), "percent", BUSY),
    Signal("mem_available", "mem available", ("node_memory_MemAvailable_bytes",), "bytes"),
    Signal("disk_free", "disk free {group}", ("node_filesystem_avail_bytes",), "bytes", group_by="mountpoint",
           prefer=("mountpoint", ("/data", "/var/lib/belabox-metrics", "/"))),
    Signal("encoder_bitrate", "encoder bitrate", ("belabox_encoder_bitrate_bps",), "bps"),
    Signal("stream_up", "stream up", ("belabox_process_up",), "state", STATE,
           combine="min", where=("process", STREAM_PROCESSES)),
    Signal("restarts", "restarts", ("belabox_process_restarts_total",), "count", INCREASE, combine="sum"),
    Signal("process_up", "{group} up", ("belabox_process_up",), "state", STATE, group_by="process",
           screen=False),
    Signal("backlog", "upload backlog", ("metrics_collector_spool_pending_samples",), "count"),
)

KEY_METRICS: frozenset[str] = frozenset(
    [m for s in KEY_SIGNALS for m in s.metrics] + list(INFO_METRICS))

# Name patterns (fnmatch) of the series history must retain; today exact names.
KEY_SERIES_PATTERNS: tuple[str, ...] = tuple(sorted(KEY_METRICS))


def is_key_series(name: str, labels: Mapping[str, str]) -> bool:
    """Whether the spool should keep this series as a key signal (for 24 h).

    Narrower than :data:`KEY_METRICS`: a series only some signal excludes (loopback) is
    dropped only when no signal that reads the metric would take it.
    """
    if name in INFO_METRICS:
        return True
    return any(name in s.metrics and selects(s, labels) for s in KEY_SIGNALS)


def selects(signal: Signal, labels: Mapping[str, str]) -> bool:
    if signal.where is not None and labels.get(signal.where[0]) not in signal.where[1]:
        return False
    return not (signal.exclude is not None and labels.get(signal.exclude[0]) in signal.exclude[1])


def by_key(key: str) -> Signal:
    for s in KEY_SIGNALS:
        if s.key == key:
            return s
    raise KeyError(key)
