"""Collector for physical network interfaces in <sysfs>/class/net (node_exporter's
``netdev`` and ``netclass`` collectors).

Counters come from ``statistics/`` (Documentation/ABI/testing/sysfs-class-net-statistics),
combined the way the kernel builds /proc/net/dev (net/core/net-procfs.c dev_seq_printf_stats)
so the values equal node_exporter's. Interfaces are classified from sysfs, never by name
(belabox-image.md §1.7, §2.6): a ``device`` link means hardware, which includes USB modems
and phone tethering; bridges and USB gadget ports (Jetson's usb0/rndis0) are left out.
"""

from __future__ import annotations

import errno
import os

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

# node_exporter name -> statistics files summed into it (dev_seq_printf_stats).
COUNTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("receive_bytes", ("rx_bytes",)),
    ("receive_packets", ("rx_packets",)),
    ("receive_errs", ("rx_errors",)),
    ("receive_drop", ("rx_dropped", "rx_missed_errors")),
    ("receive_fifo", ("rx_fifo_errors",)),
    ("receive_frame", ("rx_length_errors", "rx_over_errors", "rx_crc_errors", "rx_frame_errors")),
    ("receive_compressed", ("rx_compressed",)),
    ("receive_multicast", ("multicast",)),
    ("transmit_bytes", ("tx_bytes",)),
    ("transmit_packets", ("tx_packets",)),
    ("transmit_errs", ("tx_errors",)),
    ("transmit_drop", ("tx_dropped",)),
    ("transmit_fifo", ("tx_fifo_errors",)),
    ("transmit_colls", ("collisions",)),
    ("transmit_carrier", ("tx_carrier_errors", "tx_aborted_errors", "tx_window_errors",
                          "tx_heartbeat_errors")),
    ("transmit_compressed", ("tx_compressed",)),
)
_COUNTER_NAMES = tuple((f"node_network_{name}_total", tuple("statistics/" + f for f in files))
                       for name, files in COUNTERS)
# Link attributes (node_exporter's netclass). The carrier change counters show a modem's
# link flapping, which byte counters alone hide.
_LINK_ATTRS = (
    ("carrier", "node_network_carrier"),
    ("mtu", "node_network_mtu_bytes"),
    ("carrier_changes", "node_network_carrier_changes_total"),
    ("carrier_up_count", "node_network_carrier_up_changes_total"),
    ("carrier_down_count", "node_network_carrier_down_changes_total"),
)
# Enough to keep every attribute of ten interfaces open; more are read with open/close.
MAX_OPEN_FILES = 360


class InterfaceGone(Exception):
    """The interface disappeared while it was being read (hot unplug)."""


def parse_uevent(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _read_counter(files: OpenAttributes, base: str, name: str) -> int:
    try:
        return int(files.read(base, name))
    except FileNotFoundError:
        raise InterfaceGone(name) from None
    except OSError as e:
        # ENODEV: the netdev was unregistered between listing and reading.
        if e.errno == errno.ENODEV:
            raise InterfaceGone(name) from None
        raise


class NetdevCollector(Collector):
    name = "netdev"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._class_net = os.path.join(ctx.sysfs, "class", "net")
        self._files = OpenAttributes(MAX_OPEN_FILES)
        self._seen: set[str] = set()
        self.problems: list[str] = []

    def interfaces(self) -> list[str]:
        """Physical interfaces (devices/ decides what is physical), sorted."""
        return sorted(i.name for i in self.device_registry().interfaces())

    def collect(self) -> list[Sample]:
        self.problems = []
        self._seen = set()
        names = self.interfaces()
        cap = self.ctx.config.network.max_interfaces
        kept, over = names[:cap], names[cap:]
        out: list[Sample] = []
        for ifname in kept:
            out.extend(self._interface(ifname))
        if over:
            dropped = sum(len(self._interface(n)) for n in over)
            self.problems.append(f"{len(over)} interfaces over network.max_interfaces={cap}: "
                                 + ", ".join(over[:5]))
            if self.ctx.selfmetrics is not None:
                self.ctx.selfmetrics.inc("metrics_collector_dropped_series_total", dropped,
                                         {"reason": "max_interfaces"})
        self._files.retain(self._seen)
        return out

    def _interface(self, ifname: str) -> list[Sample]:
        base = os.path.join(self._class_net, ifname)
        self._seen.add(base)
        if not self._files.check(base):
            return []  # listed a moment ago, unplugged since
        try:
            return self._read_interface(ifname, base)
        except InterfaceGone:
            self._files.forget(base)
            return []  # half an interface is worse than none; it is gone anyway

    def _read_interface(self, ifname: str, base: str) -> list[Sample]:
        files = self._files
        dev = (("device", ifname),)
        out = []
        for metric, names in _COUNTER_NAMES:
            total = 0
            for name in names:
                total += _read_counter(files, base, name)
            out.append(Sample(metric, dev, float(total)))
        operstate = files.read_optional(base, "operstate")
        if operstate is None:
            return []
        out.append(Sample("node_network_up", dev, 1.0 if operstate == "up" else 0.0))
        for attr, metric in _LINK_ATTRS:
            value = files.read_int(base, attr)
            if value is not None:  # carrier reads EINVAL while the interface is down
                out.append(Sample(metric, dev, float(value)))
        speed = files.read_int(base, "speed")
        if speed is not None and speed >= 0:  # -1: unknown (no link, or a USB modem)
            out.append(Sample("node_network_speed_bytes", dev, speed * 1000 * 1000 / 8))
        info = (
            ("address", files.read_optional(base, "address") or ""),
            ("broadcast", files.read_optional(base, "broadcast") or ""),
            ("device", ifname),
            ("duplex", files.read_optional(base, "duplex") or ""),
            ("ifalias", files.read_optional(base, "ifalias") or ""),
            ("operstate", operstate),
        )
        out.append(Sample("node_network_info", info, 1.0))
        return out

    def close(self) -> None:
        self._files.close()
