"""Collector for the stream side of a BELABOX: is it up, at what bitrate, over which links.

Sources: belaUI's processes (belabox_procs), its files (belaui_files) and the interfaces'
addresses (ifaddrs). Parity targets are what belaUI itself shows (belabox-image.md §1.6):
the bonded links, and interfaces it refuses because two share an IPv4 address (two Huawei
HiLink sticks both hand out 192.168.8.100).
"""

from __future__ import annotations

import os

from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.collectors.belabox import belaui_files as files
from belabox_metrics.collectors.belabox import ifaddrs, procs
from belabox_metrics.platform.files import read_optional
from belabox_metrics.samples import Sample, sample

# USER_HZ, the unit of proc(5) stat times (100 on every architecture the boards use).
CLK_TCK = os.sysconf("SC_CLK_TCK")


def duplicate_ipv4(addresses: dict[str, list[str]], candidates: list[str]) -> dict[str, bool]:
    """For each candidate interface with an IPv4 address: does it share one with another
    candidate? Loopback addresses never count."""
    owners: dict[str, set[str]] = {}
    for name in candidates:
        for addr in addresses.get(name, ()):
            if ":" in addr or addr.startswith("127."):
                continue
            owners.setdefault(addr, set()).add(name)
    out: dict[str, bool] = {}
    for names in owners.values():
        for name in names:
            out[name] = out.get(name, False) or len(names) > 1
    return out


def bond_links(ips: list[str], addresses: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(device, address) for each address srtla bonds over; an address no interface holds
    any more (a modem unplugged mid-stream) is reported with device ``unknown``. An address
    two interfaces hold is reported for both, as belaUI's duplicate check sees it."""
    holders: dict[str, list[str]] = {}
    for name, addrs in addresses.items():
        for a in addrs:
            holders.setdefault(a, []).append(name)
    out = []
    for ip in ips:
        for name in sorted(holders.get(ip, ["unknown"])):
            out.append((name, ip))
    return out


class BelaboxCollector(Collector):
    name = "belabox"

    def __init__(self, ctx: CollectorContext):
        super().__init__(ctx)
        self._restarts = procs.RestartTracker()
        self._pipelines: dict[str, dict[str, str]] = {}
        self.problems: list[str] = []

    def collect(self) -> list[Sample]:
        self.problems = []
        out = self._processes()
        belaui = files.under_root(self.ctx.rootfs, self.ctx.config.belabox.belaui_dir)
        setup = self._setup(belaui)
        addresses, problem = ifaddrs.read_addresses(self.ctx.procfs)
        if problem:
            self.problems.append(problem)
        out += self._encoder(setup)
        out += self._bonding(setup, addresses)
        out += self._stream_config(belaui, setup)
        out += self._duplicates(addresses)
        return out

    # --- processes ------------------------------------------------------------------------

    def _processes(self) -> list[Sample]:
        found = procs.scan(self.ctx.procfs)
        btime = procs.parse_btime(read_optional(os.path.join(self.ctx.procfs, "stat")) or "")
        out = []
        for name in procs.PROCESSES:
            p = found.get(name)
            self._restarts.observe(name, p)
            labels = {"process": name}
            out.append(sample("belabox_process_up", 1 if p else 0, labels))
            out.append(sample("belabox_process_restarts_total", self._restarts.restarts[name], labels))
            if p is None:
                continue  # gone: its CPU and memory are unknown, not zero
            out.append(sample("belabox_process_cpu_seconds_total", (p.stat.utime + p.stat.stime) / CLK_TCK, labels))
            if p.rss_bytes is not None:
                out.append(sample("belabox_process_resident_memory_bytes", p.rss_bytes, labels))
            if btime is not None:
                out.append(sample("belabox_process_start_time_seconds", btime + p.stat.starttime / CLK_TCK, labels))
        return out

    # --- belaUI's files ---------------------------------------------------------------------

    def _setup(self, belaui: str) -> files.Setup:
        text = read_optional(os.path.join(belaui, "setup.json"))
        if text is None:
            return files.Setup()  # not a BELABOX, or belaUI not installed: belaUI's defaults
        try:
            return files.parse_setup(text)
        except files.BadFile as e:
            self.problems.append(str(e))
            return files.Setup()

    def _runtime_file(self, path: str) -> str | None:
        for candidate in files.runtime_candidates(self.ctx.rootfs, path):
            text = read_optional(candidate)
            if text is not None:
                return text
        return None

    def _encoder(self, setup: files.Setup) -> list[Sample]:
        text = self._runtime_file(setup.bitrate_file)
        if text is None:
            return []  # belaUI writes it when a stream starts
        low, high = files.parse_bitrate_file(text)
        out = []
        if high is not None:
            out.append(sample("belabox_encoder_bitrate_bps", high))
        if low is not None:
            out.append(sample("belabox_encoder_min_bitrate_bps", low))
        return out

    def _bonding(self, setup: files.Setup, addresses: dict[str, list[str]]) -> list[Sample]:
        text = self._runtime_file(setup.ips_file)
        if text is None:
            return []
        links = bond_links(files.parse_ips_file(text), addresses)
        cap = self.ctx.config.network.max_interfaces
        if len(links) > cap:
            self.problems.append(f"{len(links)} bonded addresses, over network.max_interfaces={cap}")
            links = links[:cap]
        out = [sample("belabox_bond_link_info", 1, {"device": d, "address": a}) for d, a in links]
        out.append(sample("belabox_bond_links", len({a for _, a in links})))
        return out

    def _stream_config(self, belaui: str, setup: files.Setup) -> list[Sample]:
        text = read_optional(os.path.join(belaui, "config.json"))
        if text is None:
            return []
        try:
            cfg = files.parse_config(text)
        except files.BadFile as e:
            self.problems.append(str(e))
            return []
        out = []
        if cfg.max_bitrate_kbps is not None:
            out.append(sample("belabox_stream_max_bitrate_bps", cfg.max_bitrate_kbps * 1000))
        if cfg.latency_ms is not None:
            out.append(sample("belabox_stream_latency_seconds", cfg.latency_ms / 1000))
        if cfg.audio_delay_ms is not None:
            out.append(sample("belabox_stream_audio_delay_seconds", cfg.audio_delay_ms / 1000))
        info = {
            "pipeline": self._pipeline_name(setup, cfg.pipeline_id) or "",
            "pipeline_id": cfg.pipeline_id or "",
            "audio_source": cfg.audio_source or "",
            "audio_codec": cfg.audio_codec or "",
            "bitrate_overlay": "" if cfg.bitrate_overlay is None else str(cfg.bitrate_overlay).lower(),
        }
        out.append(sample("belabox_stream_config_info", 1, info))
        return out

    def _pipeline_name(self, setup: files.Setup, pid: str | None) -> str | None:
        if pid is None:
            return None
        names = self._pipelines.get(setup.pipelines_dir)
        if names is None or pid not in names:
            # Rescanned only when the id is new: pipelines change with a belacoder upgrade.
            names = files.pipeline_names(files.under_root(self.ctx.rootfs, setup.pipelines_dir))
            self._pipelines = {setup.pipelines_dir: names}
        return names.get(pid)

    # --- duplicate addresses ------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        return sorted(i.name for i in self.device_registry().interfaces())

    def _duplicates(self, addresses: dict[str, list[str]]) -> list[Sample]:
        dup = duplicate_ipv4(addresses, self._candidates())
        return [sample("belabox_network_duplicate_address", 1 if d else 0, {"device": n})
                for n, d in sorted(dup.items())]
