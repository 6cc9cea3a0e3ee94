"""Realistic collection batches for spool tests and benchmarks: 300 node_exporter-style series
whose values move the way counters, gauges and sizes do on a BELABOX."""

from __future__ import annotations

import random

from belabox_metrics.samples import Batch, Sample, make_labels

BASE_WALL_MS = 1_750_000_000_000


def series_300() -> list[tuple[str, tuple, str]]:
    """(name, labels, kind) for 300 series; kind picks how the value moves."""
    out: list[tuple[str, tuple, str]] = []
    for cpu in range(8):
        for mode in ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"):
            out.append(("node_cpu_seconds_total", make_labels({"cpu": cpu, "mode": mode}), "seconds"))
        out.append(("node_cpu_scaling_frequency_hertz", make_labels({"cpu": cpu}), "freq"))
    for f in ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
              "Inactive", "Dirty", "Writeback", "Slab", "SReclaimable", "SUnreclaim", "Shmem", "Mapped",
              "AnonPages", "PageTables", "KernelStack", "CommitLimit", "Committed_AS", "SwapTotal",
              "SwapFree", "VmallocUsed", "Percpu", "CmaTotal", "CmaFree"):
        out.append((f"node_memory_{f}_bytes", (), "bytes"))
    for dev in ("eth0", "wlan0", "usb0", "usb1", "wwan0", "wwan1", "enx1"):
        for m in ("receive_bytes_total", "transmit_bytes_total", "receive_packets_total",
                  "transmit_packets_total", "receive_errs_total", "transmit_errs_total",
                  "receive_drop_total", "transmit_drop_total"):
            out.append((f"node_network_{m}", make_labels({"device": dev}), "counter"))
        out.append(("node_network_up", make_labels({"device": dev}), "flag"))
    for dev in ("mmcblk0", "mmcblk1", "nvme0n1", "sda"):
        for m in ("reads_completed_total", "writes_completed_total", "read_bytes_total",
                  "written_bytes_total", "io_time_seconds_total", "read_time_seconds_total",
                  "write_time_seconds_total", "io_now", "reads_merged_total", "writes_merged_total",
                  "discards_completed_total"):
            out.append((f"node_disk_{m}", make_labels({"device": dev}), "counter"))
    for mp, dev, fs in (("/", "/dev/mmcblk0p2", "ext4"), ("/boot", "/dev/mmcblk0p1", "vfat"),
                        ("/data", "/dev/nvme0n1p1", "ext4"), ("/run", "tmpfs", "tmpfs")):
        for m in ("avail_bytes", "free_bytes", "size_bytes", "files", "files_free", "readonly"):
            out.append((f"node_filesystem_{m}", make_labels({"device": dev, "fstype": fs, "mountpoint": mp}),
                        "bytes"))
    for z, t in enumerate(("soc-thermal", "bigcore0-thermal", "bigcore1-thermal", "littlecore-thermal",
                           "center-thermal", "gpu-thermal", "npu-thermal")):
        out.append(("node_thermal_zone_temp", make_labels({"type": t, "zone": z}), "temp"))
    for i in range(12):
        out.append(("node_hwmon_temp_celsius",
                    make_labels({"chip": f"platform_{i // 4}", "sensor": f"temp{i % 4 + 1}"}), "temp"))
    for m in range(2):
        for k in ("signal_rssi_dbm", "signal_rsrp_dbm", "signal_rsrq_db", "signal_snr_db",
                  "signal_quality_percent", "state", "rx_bytes_total", "tx_bytes_total",
                  "bearer_connected", "access_technology"):
            out.append((f"belabox_modem_{k}", make_labels({"modem": f"m{m:08x}", "operator": "Vodafone"}),
                        "gauge"))
    for k in ("load1", "load5", "load15", "boot_time_seconds", "time_seconds", "procs_running",
              "procs_blocked", "context_switches_total", "forks_total", "intr_total",
              "entropy_available_bits"):
        out.append((f"node_{k}", (), "gauge"))
    for c in ("cpu", "cpufreq", "meminfo", "pressure", "diskstats", "filesystem", "netdev", "thermal",
              "hwmon", "loadavg", "modem", "selfstats"):
        out.append(("metrics_collector_collector_duration_seconds", make_labels({"collector": c}), "gauge"))
        out.append(("metrics_collector_collector_success", make_labels({"collector": c}), "flag"))
    for res in ("cpu", "io", "memory"):
        out.append((f"node_pressure_{res}_waiting_seconds_total", (), "seconds"))
        out.append((f"node_pressure_{res}_stalled_seconds_total", (), "seconds"))
    i = 0
    while len(out) < 300:
        out.append(("node_scrape_collector_success", make_labels({"collector": f"c{i}"}), "flag"))
        i += 1
    return out[:300]


class BatchGen:
    """Successive batches of one device; deterministic for a seed."""

    def __init__(self, seed: int = 1, boot_id: str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                 interval_ms: int = 10_000):
        self.rng = random.Random(seed)
        self.series = series_300()
        self.state = [self.rng.uniform(0, 1e6) for _ in self.series]
        self.boot_id = boot_id
        self.interval_ms = interval_ms
        self.cycle = 0

    def values(self) -> list[float]:
        r, out = self.rng, []
        for i, (_, _, kind) in enumerate(self.series):
            if kind == "seconds":
                self.state[i] += round(r.uniform(0, 10), 2)
                v = round(self.state[i], 2)
            elif kind == "counter":
                self.state[i] += r.randint(0, 100_000)
                v = float(int(self.state[i]))
            elif kind == "bytes":
                if r.random() < 0.5:
                    self.state[i] += r.randint(-50, 50) * 4096
                v = float(int(self.state[i]) // 4096 * 4096)
            elif kind == "temp":
                v = round(r.uniform(40, 70), 3)
            elif kind == "freq":
                v = float(r.choice((408, 816, 1200, 1800, 2208)) * 1_000_000)
            elif kind == "flag":
                v = float(r.random() < 0.9)
            else:
                if r.random() < 0.3:
                    self.state[i] = round(r.uniform(-120, 100), 2)
                v = float(self.state[i])
            out.append(v)
        return out

    def batch(self, synced: bool = True) -> Batch:
        self.cycle += 1
        samples = tuple(Sample(n, lb, v) for (n, lb, _), v in zip(self.series, self.values(), strict=True))
        wall = BASE_WALL_MS + self.cycle * self.interval_ms
        return Batch(samples, wall, self.boot_id, self.cycle * self.interval_ms * 1_000_000, synced)
