"""Writing a procfs/sysfs-shaped tree: files, real relative symlinks, and the kernel's
text formats for the files several collectors (and node_exporter) read twice over.

The same numbers feed /proc/net/dev and class/net/*/statistics, /proc/diskstats and
block/*/stat, so the two views agree the way they do on a running kernel.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field


class Tree:
    def __init__(self, root: str):
        self.root = root

    def reset(self) -> None:
        """Remove the generated parts (proc, sys, root); profile.yaml and notes stay."""
        for part in ("proc", "sys", "root"):
            path = os.path.join(self.root, part)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
        os.makedirs(self.root, exist_ok=True)

    def write(self, rel: str, content: str | bytes, mode: int | None = None) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        with open(path, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(path, mode)

    def attrs(self, rel_dir: str, values: dict) -> None:
        """One sysfs attribute file per key, each value followed by a newline as the kernel writes it."""
        for name, value in values.items():
            if value is None:
                continue
            self.write(f"{rel_dir}/{name}", f"{value}\n")

    def link(self, rel: str, target_rel: str) -> None:
        """A relative symlink at ``rel`` pointing at ``target_rel`` (both relative to the tree
        root), as sysfs has them (class/net/eth0 -> ../../devices/.../net/eth0)."""
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        target = os.path.relpath(os.path.join(self.root, target_rel), os.path.dirname(path))
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(target, path)

    def mkdir(self, rel: str) -> None:
        os.makedirs(os.path.join(self.root, rel), exist_ok=True)


# --- network interfaces ---------------------------------------------------------------------

STAT_FILES = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "rx_missed_errors", "rx_fifo_errors",
              "rx_length_errors", "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_compressed",
              "multicast", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped", "tx_fifo_errors",
              "collisions", "tx_carrier_errors", "tx_aborted_errors", "tx_window_errors",
              "tx_heartbeat_errors", "tx_compressed", "rx_nohandler")


@dataclass
class Iface:
    name: str
    devpath: str  # under sys/, e.g. devices/platform/.../net/eth0
    device: str | None  # what the ``device`` link points at (under sys/); None: virtual
    mac: str
    operstate: str = "up"
    carrier: int | None = 1
    mtu: int = 1500
    speed: int | None = 1000
    duplex: str | None = "full"
    devtype: str | None = None
    ifindex: int = 2
    iftype: int = 1
    stats: dict = field(default_factory=dict)
    bridge: bool = False


def write_iface(t: Tree, i: Iface) -> None:
    base = f"sys/{i.devpath}"
    uevent = f"INTERFACE={i.name}\nIFINDEX={i.ifindex}\n" + (f"DEVTYPE={i.devtype}\n" if i.devtype else "")
    t.write(f"{base}/uevent", uevent)
    t.attrs(base, {
        "address": i.mac, "addr_assign_type": 0, "addr_len": 6,
        "broadcast": "00:00:00:00:00:00" if i.name == "lo" else "ff:ff:ff:ff:ff:ff",
        "carrier": i.carrier, "carrier_changes": 2 if i.carrier else 1,
        "carrier_up_count": 1, "carrier_down_count": 1 if i.carrier else 0,
        "dev_id": "0x0", "dev_port": 0, "dormant": 0, "duplex": i.duplex, "flags": "0x1003",
        "ifalias": "", "ifindex": i.ifindex, "iflink": i.ifindex, "link_mode": 0, "mtu": i.mtu,
        "name_assign_type": 4 if i.name.startswith(("en", "wl")) else 1, "netdev_group": 0,
        "operstate": i.operstate, "proto_down": 0, "speed": i.speed, "tx_queue_len": 1000, "type": i.iftype,
    })
    t.attrs(f"{base}/statistics", {f: i.stats.get(f, 0) for f in STAT_FILES})
    if i.device:
        t.link(f"{base}/device", f"sys/{i.device}")
    if i.bridge:
        t.attrs(f"{base}/bridge", {"stp_state": 0, "forward_delay": 1500})
    t.link(f"sys/class/net/{i.name}", base)


def proc_net_dev(ifaces: list[Iface]) -> str:
    """/proc/net/dev as net/core/net-procfs.c dev_seq_printf_stats builds it from the same counters."""
    lines = ["Inter-|   Receive                                                |  Transmit",
             " face |bytes    packets errs drop fifo frame compressed multicast|"
             "bytes    packets errs drop fifo colls carrier compressed"]
    for i in ifaces:
        s = {f: i.stats.get(f, 0) for f in STAT_FILES}
        fields = (s["rx_bytes"], s["rx_packets"], s["rx_errors"], s["rx_dropped"] + s["rx_missed_errors"],
                  s["rx_fifo_errors"],
                  s["rx_length_errors"] + s["rx_over_errors"] + s["rx_crc_errors"] + s["rx_frame_errors"],
                  s["rx_compressed"], s["multicast"], s["tx_bytes"], s["tx_packets"], s["tx_errors"],
                  s["tx_dropped"], s["tx_fifo_errors"], s["collisions"],
                  s["tx_carrier_errors"] + s["tx_aborted_errors"] + s["tx_window_errors"]
                  + s["tx_heartbeat_errors"], s["tx_compressed"])
        widths = (7, 7, 4, 4, 4, 5, 10, 9, 8, 7, 4, 4, 4, 5, 7, 10)
        lines.append(f"{i.name:>6}: " + " ".join(f"{v:>{w}}" for v, w in zip(fields, widths, strict=True)))
    return "\n".join(lines) + "\n"


def traffic(rx_bytes: int, tx_bytes: int, errors: int = 0, drops: int = 0) -> dict:
    """Plausible counters for an interface that moved this much."""
    return {"rx_bytes": rx_bytes, "rx_packets": rx_bytes // 1100 + 7, "tx_bytes": tx_bytes,
            "tx_packets": tx_bytes // 1200 + 5, "rx_errors": errors, "rx_crc_errors": errors,
            "rx_dropped": drops, "multicast": rx_bytes // 900000, "tx_dropped": drops // 3}


# --- block devices --------------------------------------------------------------------------

@dataclass
class Disk:
    name: str
    devpath: str  # under sys/, e.g. devices/platform/fe2e0000.mmc/.../block/mmcblk0
    major: int
    minor: int
    size_sectors: int
    stat: tuple  # the 17 fields of Documentation/block/stat.rst
    partitions: list = field(default_factory=list)  # [(name, minor, size, stat)]
    logical_block_size: int = 512
    rotational: int = 0
    extra: dict = field(default_factory=dict)  # more attribute files (zram's disksize, mm_stat)


def io_stat(reads: int, writes: int, discards: int = 0, flushes: int = 0, in_flight: int = 0) -> tuple:
    """17 stat.rst fields for a device that completed this many reads and writes."""
    return (reads, reads // 9, reads * 24, reads // 3, writes, writes // 4, writes * 16, writes // 2,
            in_flight, (reads + writes) // 5, (reads + writes) // 2, discards, discards // 11,
            discards * 2048, discards // 7, flushes, flushes // 4)


def _stat_line(stat: tuple) -> str:
    return " ".join(f"{v:>8}" for v in stat) + "\n"


def write_disk(t: Tree, d: Disk) -> None:
    base = f"sys/{d.devpath}"
    t.attrs(base, {"dev": f"{d.major}:{d.minor}", "size": d.size_sectors, "removable": 0, "ro": 0,
                   "uevent": f"MAJOR={d.major}\nMINOR={d.minor}\nDEVNAME={d.name}\nDEVTYPE=disk"})
    t.write(f"{base}/stat", _stat_line(d.stat))
    t.attrs(f"{base}/queue", {"logical_block_size": d.logical_block_size,
                              "physical_block_size": d.logical_block_size,
                              "hw_sector_size": d.logical_block_size, "rotational": d.rotational})
    t.attrs(base, d.extra)
    for pname, pminor, psize, pstat in d.partitions:
        t.attrs(f"{base}/{pname}", {"dev": f"{d.major}:{pminor}", "size": psize, "partition": pminor - d.minor,
                                    "uevent": f"MAJOR={d.major}\nMINOR={pminor}\nDEVNAME={pname}\nDEVTYPE=partition"})
        t.write(f"{base}/{pname}/stat", _stat_line(pstat))
        t.link(f"sys/class/block/{pname}", f"{base}/{pname}")
    t.link(f"sys/block/{d.name}", base)
    t.link(f"sys/class/block/{d.name}", base)


def proc_diskstats(disks: list[Disk]) -> str:
    lines = []
    for d in disks:
        rows = [(d.minor, d.name, d.stat)] + [(m, n, s) for n, m, _, s in d.partitions]
        for minor, name, stat in rows:
            lines.append(f"{d.major:>4} {minor:>7} {name} " + " ".join(str(v) for v in stat))
    return "\n".join(lines) + "\n"


# --- procfs text ----------------------------------------------------------------------------

def proc_stat(cpus: list[tuple], intr: int, ctxt: int, btime: int, forks: int, running: int,
              blocked: int) -> str:
    """/proc/stat for per-CPU tick tuples (user nice system idle iowait irq softirq steal guest guest_nice)."""
    total = [sum(c[i] for c in cpus) for i in range(10)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{n} " + " ".join(map(str, c)) for n, c in enumerate(cpus)]
    lines += [f"intr {intr} 0 0 " + " ".join(str(intr // (k + 7)) for k in range(12)),
              f"ctxt {ctxt}", f"btime {btime}", f"processes {forks}",
              f"procs_running {running}", f"procs_blocked {blocked}",
              f"softirq {intr // 3} 0 {intr // 9} 1 {intr // 40} 0 0 {intr // 50} 0 0 {intr // 12}"]
    return "\n".join(lines) + "\n"


def cpu_ticks(n: int, uptime_s: int, busy_percent: float) -> tuple:
    """Deterministic per-CPU ticks for ``uptime_s`` seconds at this load."""
    total = uptime_s * 100
    busy = int(total * busy_percent / 100) + n * 37
    user, system = busy * 6 // 10, busy * 3 // 10
    irq, softirq = busy // 50, busy // 25
    iowait = 120 + n * 11
    nice = 3 * n
    idle = total - user - system - irq - softirq - iowait - nice
    return (user, nice, system, idle, iowait, irq, softirq, 0, 0, 0)


MEMINFO_ORDER = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
                 "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)",
                 "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Dirty", "Writeback", "AnonPages",
                 "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack",
                 "PageTables", "NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS",
                 "VmallocTotal", "VmallocUsed", "VmallocChunk", "Percpu", "CmaTotal", "CmaFree")


def meminfo(total_kb: int, used_percent: int, swap_kb: int, cma_kb: int = 0) -> str:
    free = total_kb * (100 - used_percent) // 100
    cached = total_kb // 5
    v = {"MemTotal": total_kb, "MemFree": free - cached, "MemAvailable": free + cached // 2,
         "Buffers": total_kb // 200, "Cached": cached, "SwapCached": 0,
         "Active(anon)": total_kb // 12, "Inactive(anon)": total_kb // 90, "Active(file)": cached // 2,
         "Inactive(file)": cached // 3, "Unevictable": 3072, "Mlocked": 0, "SwapTotal": swap_kb,
         "SwapFree": swap_kb - swap_kb // 50, "Dirty": 412, "Writeback": 0, "AnonPages": total_kb // 11,
         "Mapped": total_kb // 40, "Shmem": total_kb // 300, "KReclaimable": total_kb // 70,
         "Slab": total_kb // 45, "SReclaimable": total_kb // 70, "SUnreclaim": total_kb // 130,
         "KernelStack": 9856, "PageTables": 8120, "NFS_Unstable": 0, "Bounce": 0, "WritebackTmp": 0,
         "CommitLimit": total_kb // 2 + swap_kb, "Committed_AS": total_kb // 3,
         "VmallocTotal": 133143592960, "VmallocUsed": 31472, "VmallocChunk": 0, "Percpu": 3584,
         "CmaTotal": cma_kb, "CmaFree": cma_kb * 9 // 10}
    v["Active"] = v["Active(anon)"] + v["Active(file)"]
    v["Inactive"] = v["Inactive(anon)"] + v["Inactive(file)"]
    lines = [f"{(k + ':'):<16}{v[k]:>8} kB" for k in MEMINFO_ORDER]
    lines += ["HugePages_Total:       0", "HugePages_Free:        0", "HugePages_Rsvd:        0",
              "HugePages_Surp:        0", "Hugepagesize:       2048 kB", "Hugetlb:               0 kB"]
    return "\n".join(lines) + "\n"


def psi(some_us: int, full_us: int | None) -> str:
    lines = [f"some avg10=0.12 avg60=0.31 avg300=0.20 total={some_us}"]
    if full_us is not None:
        lines.append(f"full avg10=0.00 avg60=0.05 avg300=0.02 total={full_us}")
    return "\n".join(lines) + "\n"


def mountinfo(mounts: list[tuple]) -> str:
    """Lines for (id, parent, dev, mountpoint, options, fstype, source)."""
    out = []
    for mid, parent, dev, mnt, opts, fstype, source in mounts:
        shared = " shared:1" if mnt == "/" else ""
        out.append(f"{mid} {parent} {dev} / {mnt} {opts}{shared} - {fstype} {source} {opts.split(',')[0]}")
    return "\n".join(out) + "\n"


def mounts(rows: list[tuple]) -> str:
    """/proc/<pid>/mounts (what node_exporter 1.5 reads) for the same rows as mountinfo()."""
    return "".join(f"{source} {mnt} {fstype} {opts} 0 0\n" for _, _, _, mnt, opts, fstype, source in rows)
