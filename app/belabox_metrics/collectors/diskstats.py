"""Collector for block device I/O counters in <sysfs>/block/<dev>/stat (node_exporter's
``diskstats``, same names, bytes and seconds).

Format: Documentation/block/stat.rst. Sector counts there are always in 512-byte units,
whatever the device's logical block size (a 4Kn NVMe namespace too), so bytes are
sectors * 512 and never sectors * queue/logical_block_size. Times are in milliseconds.
Only whole disks matching ``disk.allowed_devices`` are reported; loop, ram, zram (reported
as memory) and the eMMC hardware partitions mmcblkNbootM/mmcblkNrpmb never are
(belabox-image.md §2.5).
"""

from __future__ import annotations

import os
import re

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

SECTOR_BYTES = 512
_MS = -1000.0  # negative: divide (ms -> s); x / 1000 prints as 1.634, x * 0.001 as 1.6340000000000001
# stat.rst field order -> (node_exporter name, scale). Fields 12-17 exist since 4.18 / 5.5.
FIELDS = (
    ("node_disk_reads_completed_total", 1.0),
    ("node_disk_reads_merged_total", 1.0),
    ("node_disk_read_bytes_total", SECTOR_BYTES),
    ("node_disk_read_time_seconds_total", _MS),
    ("node_disk_writes_completed_total", 1.0),
    ("node_disk_writes_merged_total", 1.0),
    ("node_disk_written_bytes_total", SECTOR_BYTES),
    ("node_disk_write_time_seconds_total", _MS),
    ("node_disk_io_now", 1.0),
    ("node_disk_io_time_seconds_total", _MS),
    ("node_disk_io_time_weighted_seconds_total", _MS),
    ("node_disk_discards_completed_total", 1.0),
    ("node_disk_discards_merged_total", 1.0),
    ("node_disk_discarded_sectors_total", 1.0),
    ("node_disk_discard_time_seconds_total", _MS),
    ("node_disk_flush_requests_total", 1.0),
    ("node_disk_flush_requests_time_seconds_total", _MS),
)
NEVER = re.compile(r"^(loop|ram|zram)\d+$|^mmcblk\d+(boot\d+|rpmb)$")


def parse_stat(text: str) -> list[float]:
    """The numeric fields of one ``stat`` file, in stat.rst order."""
    return [float(v) for v in text.split()]


def disk_samples(device: str, fields: list[float]) -> list[Sample]:
    labels = (("device", device),)
    return [Sample(name, labels, value / -scale if scale < 0 else value * scale)
            for (name, scale), value in zip(FIELDS, fields, strict=False)]


def wanted(device: str, allowed: re.Pattern) -> bool:
    return NEVER.match(device) is None and allowed.search(device) is not None


class DiskstatsCollector(Collector):
    name = "diskstats"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._block = os.path.join(ctx.sysfs, "block")
        self._allowed = re.compile(ctx.config.disk.allowed_devices)
        self._files = OpenAttributes(64)

    def devices(self) -> list[str]:
        """The disks discovery reports (design §8), filtered by ``disk.allowed_devices``."""
        names = [d.name for d in self.device_registry().disks()]
        return sorted(n for n in names if wanted(n, self._allowed))

    def collect(self) -> list[Sample]:
        out = []
        seen = set()
        for dev in self.devices():
            base = os.path.join(self._block, dev)
            seen.add(base)
            if not self._files.check(base):
                continue  # removed since it was listed
            try:
                text = self._files.read(base, "stat").decode("ascii")
            except FileNotFoundError:
                continue
            out.extend(disk_samples(dev, parse_stat(text)))
        self._files.retain(seen)
        return out

    def close(self) -> None:
        self._files.close()
