"""One board tree from a description: procfs, sysfs and a rootfs with its mount points.

Paths and names are the public facts of belabox-image.md §1.7 and §2 (zone types, INA3221
layouts, block device names, gadget and modem interfaces); numbers are invented but
consistent across the files that repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scripts.reconstruct_hardware import stream
from scripts.reconstruct_hardware.tree import (
    Disk,
    Iface,
    Tree,
    cpu_ticks,
    meminfo,
    mountinfo,
    mounts,
    proc_diskstats,
    proc_net_dev,
    proc_stat,
    psi,
    write_disk,
    write_iface,
)


@dataclass
class Policy:
    cpus: list[int]
    min_khz: int
    max_khz: int
    cur_khz: int
    scaling_max_khz: int | None = None  # below max_khz: capped (thermal or user)
    governor: str = "schedutil"


@dataclass
class Zone:
    type: str
    millicelsius: int | str  # a str is written as-is (e.g. an unreadable placeholder)
    policy: str = "step_wise"
    hwmon: bool = False  # the thermal core registers a hwmon device for it


@dataclass
class Hwmon:
    devpath: str  # the hwmonN directory under sys/
    name: str
    files: dict  # sensor attribute files
    device: str | None = None  # what ``device`` links to, under sys/


@dataclass
class Board:
    id: str
    compatible: list[str] | None
    model: str | None
    cores: int
    uptime: float
    busy_percent: float
    policies: list[Policy]
    zones: list[Zone]
    cooling: list[tuple[str, int, int]]  # (type, cur_state, max_state)
    hwmons: list[Hwmon]
    ifaces: list[Iface]
    disks: list[Disk]
    mounts: list[tuple]  # mountinfo rows
    mem_total_kb: int
    swap_kb: int = 0
    psi: bool = True
    x86_throttle: bool = False
    dmi_board: str | None = None
    extra: list = field(default_factory=list)  # callables(Tree) for board-specific files
    load: tuple = (0.52, 0.61, 0.58)


def build(t: Tree, b: Board) -> None:
    t.reset()
    uptime = int(b.uptime)
    cpus = [cpu_ticks(n, uptime, b.busy_percent) for n in range(b.cores)]
    intr = uptime * 2311
    t.write("proc/stat", proc_stat(cpus, intr, uptime * 4057, 1700000000, uptime // 3 + 9000, 2, 0))
    t.write("proc/meminfo", meminfo(b.mem_total_kb, 38, b.swap_kb))
    l1, l5, l15 = b.load
    t.write("proc/loadavg", f"{l1:.2f} {l5:.2f} {l15:.2f} 2/412 {uptime // 3 + 9000}\n")
    t.write("proc/uptime", f"{b.uptime:.2f} {b.uptime * b.cores * 0.81:.2f}\n")
    if b.psi:
        t.write("proc/pressure/cpu", psi(uptime * 1400, 0))
        t.write("proc/pressure/io", psi(uptime * 900, uptime * 310))
        t.write("proc/pressure/memory", psi(uptime * 20, uptime * 6))
    t.write("proc/net/dev", proc_net_dev(b.ifaces))
    t.write("proc/diskstats", proc_diskstats(b.disks))
    t.write("proc/1/mountinfo", mountinfo(b.mounts))
    t.write("proc/1/mounts", mounts(b.mounts))
    for row in b.mounts:
        t.mkdir("root" + row[3])
    t.write("root/.keep", "mount points of proc/1/mountinfo resolve below this directory\n")
    if b.compatible is not None:
        base = "sys/firmware/devicetree/base"
        t.write(f"{base}/compatible", "\0".join(b.compatible) + "\0")
        t.write(f"{base}/model", (b.model or "") + "\0")
        t.link("proc/device-tree", base)
    if b.dmi_board:
        t.attrs("sys/devices/virtual/dmi/id", {"board_name": b.dmi_board, "sys_vendor": "Generic"})
        t.link("sys/class/dmi/id", "sys/devices/virtual/dmi/id")
    _cpus(t, b)
    _thermal(t, b)
    for h in b.hwmons:
        t.attrs(f"sys/{h.devpath}", {"name": h.name, **h.files})
        if h.device:
            t.link(f"sys/{h.devpath}/device", f"sys/{h.device}")
        t.link(f"sys/class/hwmon/{h.devpath.rsplit('/', 1)[1]}", f"sys/{h.devpath}")
    for i in b.ifaces:
        write_iface(t, i)
    for d in b.disks:
        write_disk(t, d)
    for fn in b.extra:
        fn(t)
    if b.id in stream.BOARD_STREAMS:  # a BELABOX streaming right now (the generic box is not one)
        stream.write(t, stream.BOARD_STREAMS[b.id]())


def _cpus(t: Tree, b: Board) -> None:
    base = "sys/devices/system/cpu"
    t.write(f"{base}/online", f"0-{b.cores - 1}\n")
    t.write(f"{base}/possible", f"0-{b.cores - 1}\n")
    for n in range(b.cores):
        t.attrs(f"{base}/cpu{n}/topology", {"physical_package_id": 0, "core_id": n % max(1, b.cores),
                                             "cluster_id": 0})
        if b.x86_throttle:
            t.attrs(f"{base}/cpu{n}/thermal_throttle", {"core_throttle_count": 3 * n,
                                                        "package_throttle_count": 17})
    for p in b.policies:
        pdir = f"{base}/cpufreq/policy{p.cpus[0]}"
        cpus = " ".join(map(str, p.cpus))
        t.attrs(pdir, {"affected_cpus": cpus, "related_cpus": cpus, "cpuinfo_min_freq": p.min_khz,
                       "cpuinfo_max_freq": p.max_khz, "cpuinfo_transition_latency": 40000,
                       "scaling_min_freq": p.min_khz, "scaling_max_freq": p.scaling_max_khz or p.max_khz,
                       "scaling_cur_freq": p.cur_khz, "scaling_governor": p.governor,
                       "scaling_driver": "cpufreq-dt", "scaling_setspeed": "<unsupported>",
                       "scaling_available_governors": "conservative ondemand userspace powersave "
                                                      "performance schedutil"})
        for c in p.cpus:
            t.link(f"{base}/cpu{c}/cpufreq", pdir)


def _thermal(t: Tree, b: Board) -> None:
    hw = len(b.hwmons)
    for n, z in enumerate(b.zones):
        zdir = f"sys/devices/virtual/thermal/thermal_zone{n}"
        t.attrs(zdir, {"type": z.type, "policy": z.policy, "mode": "enabled",
                       "available_policies": "fair_share bang_bang step_wise user_space power_allocator",
                       "trip_point_0_temp": 85000, "trip_point_0_type": "passive",
                       "trip_point_1_temp": 115000, "trip_point_1_type": "critical"})
        if isinstance(z.millicelsius, int):
            t.write(f"{zdir}/temp", f"{z.millicelsius}\n")
        t.link(f"sys/class/thermal/thermal_zone{n}", zdir)
        if z.hwmon:
            hdir = f"{zdir}/hwmon{hw}"
            t.attrs(hdir, {"name": z.type.replace("-", "_")})
            if isinstance(z.millicelsius, int):
                t.write(f"{hdir}/temp1_input", f"{z.millicelsius}\n")
            t.link(f"{hdir}/device", zdir)
            t.link(f"sys/class/hwmon/hwmon{hw}", hdir)
            hw += 1
    for n, (ctype, cur, top) in enumerate(b.cooling):
        cdir = f"sys/devices/virtual/thermal/cooling_device{n}"
        t.attrs(cdir, {"type": ctype, "cur_state": cur, "max_state": top})
        t.link(f"sys/class/thermal/cooling_device{n}", cdir)
