"""Collector for <procfs>/meminfo plus zram devices (node_exporter's ``meminfo``).

Format: Documentation/filesystems/proc.rst, "meminfo". zram is compressed RAM (Jetson's
nvzramconfig swap, Armbian's ramlog /var/log), so it is reported here as memory and never
by the disk collector (belabox-image.md §2.5). Its counters come from
Documentation/admin-guide/blockdev/zram.rst, "mm_stat".
"""

from __future__ import annotations

import os

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes, list_dir
from belabox_metrics.samples import Sample

# mm_stat columns (zram.rst) -> metric; the later columns appeared in newer kernels.
MM_STAT = (
    "belabox_zram_original_data_bytes",
    "belabox_zram_compressed_data_bytes",
    "belabox_zram_memory_used_bytes",
    "belabox_zram_memory_limit_bytes",
    "belabox_zram_memory_used_max_bytes",
    "belabox_zram_same_pages",
    "belabox_zram_pages_compacted_total",
    "belabox_zram_huge_pages",
)


def parse_meminfo(text: str) -> dict[str, float]:
    """node_exporter's names without the ``node_memory_`` prefix: ``Active(anon)`` becomes
    ``Active_anon``, kB values become bytes with a ``_bytes`` suffix, unit-less ones
    (HugePages_Total) stay as they are."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        key = parts[0][:-1]
        if "(" in key:
            key = key.replace("(", "_").replace(")", "")
        try:
            value = float(parts[1])
        except ValueError:
            continue
        if len(parts) == 3:  # the kernel writes "kB" for every sized field
            value *= 1024
            key += "_bytes"
        out[key] = value
    return out


def parse_mm_stat(text: str) -> dict[str, float]:
    """mm_stat columns by metric name (bytes, or page counts for the last three)."""
    pairs = zip(MM_STAT, text.split(), strict=False)
    return {name: float(v) for name, v in pairs if v.lstrip("-").isdigit()}


class MeminfoCollector(Collector):
    name = "meminfo"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._procfs = ctx.procfs
        self._block = os.path.join(ctx.sysfs, "block")
        self._files = OpenAttributes(64)
        self._names: dict[str, str] = {}

    def collect(self) -> list[Sample]:
        names = self._names
        out = []
        files = self._files
        files.check(self._procfs)
        for key, value in parse_meminfo(files.read(self._procfs, "meminfo").decode("ascii", "replace")).items():
            name = names.get(key)
            if name is None:
                name = names[key] = "node_memory_" + key
            out.append(Sample(name, (), value))
        out.extend(self._zram())
        return out

    def _zram(self) -> list[Sample]:
        out = []
        files = self._files
        seen = {self._procfs}
        for dev in list_dir(self._block):
            if not dev.startswith("zram"):
                continue
            base = os.path.join(self._block, dev)
            seen.add(base)
            if not files.check(base):
                continue
            labels = (("device", dev),)
            size = files.read_optional(base, "disksize")
            if size is None or not size.isdigit() or size == "0":
                continue  # an unconfigured zram device holds nothing
            out.append(Sample("belabox_zram_disksize_bytes", labels, float(size)))
            mm = files.read_optional(base, "mm_stat")
            out.extend(Sample(name, labels, value) for name, value in parse_mm_stat(mm or "").items())
        files.retain(seen)
        return out

    def close(self) -> None:
        self._files.close()
