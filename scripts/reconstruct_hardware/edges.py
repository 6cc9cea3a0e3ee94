"""Edge-case trees under hardware/edge/<problem>/, each as small as the problem allows."""

from __future__ import annotations

from scripts.reconstruct_hardware import stream
from scripts.reconstruct_hardware.board import Zone
from scripts.reconstruct_hardware.boards import _lo
from scripts.reconstruct_hardware.tree import (
    Iface,
    Tree,
    cpu_ticks,
    meminfo,
    mountinfo,
    proc_net_dev,
    proc_stat,
    traffic,
    write_iface,
)
from scripts.reconstruct_hardware.tree import (
    mounts as mounts_text,
)

USB = "devices/platform/fc400000.usb/xhci-hcd.8.auto/usb5/5-1/5-1:1.4"
NIC = "devices/platform/fe170000.pcie/pci0003:30/0003:30:00.0/0003:31:00.0"


def counter_wrap(t: Tree) -> None:
    """Counters at the top of their range: 64-bit rx_bytes of a long-lived modem link and a
    32-bit tx counter of a 32-bit kernel. Both are exported raw; rate() handles the reset."""
    t.reset()
    stats = traffic(10, 10)
    stats.update(rx_bytes=2**64 - 1, tx_bytes=2**32 - 1, rx_packets=2**32 - 1)
    ifaces = [_lo(1000), Iface("wwan0", f"{USB}/net/wwan0", USB, "00:00:00:00:00:00", speed=None, duplex=None,
                               devtype="wwan", ifindex=3, iftype=519, stats=stats)]
    for i in ifaces:
        write_iface(t, i)
    t.write("proc/net/dev", proc_net_dev(ifaces))


def thermal_zone_eio(t: Tree) -> None:
    """thermal_zone1's ``temp`` is a directory, so reading it fails with EISDIR: git cannot
    store a file that answers EIO, and to the collector both are an OSError on read."""
    t.reset()
    zones = [Zone("soc-thermal", 48000), Zone("gpu-thermal", "unreadable"), Zone("npu-thermal", 47100)]
    for n, z in enumerate(zones):
        zdir = f"sys/devices/virtual/thermal/thermal_zone{n}"
        t.attrs(zdir, {"type": z.type, "policy": "step_wise", "mode": "enabled"})
        if isinstance(z.millicelsius, int):
            t.write(f"{zdir}/temp", f"{z.millicelsius}\n")
        else:
            t.write(f"{zdir}/temp/README", "a directory where the temp file should be: reading it fails\n")
        t.link(f"sys/class/thermal/thermal_zone{n}", zdir)


def hot_removed_interface(t: Tree) -> None:
    """wwan0 is still listed in class/net but its device directory is gone: the state between
    a USB modem's unplug and the kernel's removal of the class link."""
    t.reset()
    ifaces = [_lo(1000), Iface("eth0", f"{NIC}/net/eth0", NIC, "c0:74:2b:fe:3a:11", ifindex=2,
                                stats=traffic(5_000_000, 700_000))]
    for i in ifaces:
        write_iface(t, i)
    t.link("sys/class/net/wwan0", f"sys/{USB}/net/wwan0")  # dangling on purpose
    t.write("proc/net/dev", proc_net_dev(ifaces))


def cpu_64_cores(t: Tree) -> None:
    t.reset()
    cpus = [cpu_ticks(n, 86_400, 30.0) for n in range(64)]
    t.write("proc/stat", proc_stat(cpus, 99_000_000, 400_000_000, 1700000000, 50_000, 12, 1))


def missing_psi(t: Tree) -> None:
    """A kernel built without CONFIG_PSI (many vendor BSPs): no proc/pressure at all."""
    t.reset()
    t.write("proc/stat", proc_stat([cpu_ticks(n, 3600, 10.0) for n in range(4)], 10_000, 90_000,
                                   1700000000, 900, 1, 0))
    t.write("proc/meminfo", meminfo(4_059_520, 30, 0))
    t.write("proc/loadavg", "0.10 0.20 0.30 1/200 900\n")


def read_only_filesystem(t: Tree) -> None:
    """An overlayroot-style image: the root is mounted read-only, /data stays writable."""
    t.reset()
    mounts = [(22, 1, "179:2", "/", "ro,noatime", "ext4", "/dev/mmcblk0p2"),
              (23, 22, "179:3", "/data", "rw,noatime", "ext4", "/dev/mmcblk0p3")]
    t.write("proc/1/mountinfo", mountinfo(mounts))
    t.write("proc/1/mounts", mounts_text(mounts))
    t.mkdir("root/data")
    t.write("root/.keep", "mount points of proc/1/mountinfo resolve below this directory\n")


def ina3221_hwmon_layout(t: Tree) -> None:
    """JetPack >= 5 power rails: the mainline ina3221 hwmon driver (belabox-image.md §2.4)."""
    t.reset()
    dev = "devices/platform/c240000.i2c/i2c-1/1-0040"
    hw = f"sys/{dev}/hwmon/hwmon3"
    t.attrs(hw, {"name": "ina3221"})
    rails = (("VDD_IN", 5064, 1480), ("VDD_CPU_GPU_CV", 5056, 402), ("VDD_SOC", 5060, 611))
    for n, (label, mv, ma) in enumerate(rails, start=1):
        t.attrs(hw, {f"in{n}_label": label, f"in{n}_input": mv, f"in{n}_enable": 1, f"curr{n}_input": ma,
                     f"curr{n}_max": 8000, f"curr{n}_crit": 10000, f"curr{n}_max_alarm": 0,
                     f"curr{n}_crit_alarm": 0, f"in{n + 3}_input": ma * 5 // 1000, f"in{n + 3}_label": f"Shunt {n}"})
    t.link(f"{hw}/device", f"sys/{dev}")
    t.attrs(f"sys/{dev}", {"name": "ina3221", "uevent": "DRIVER=ina3221\nOF_NAME=ina3221"})
    t.link("sys/class/hwmon/hwmon3", hw)


def duplicate_ipv4(t: Tree) -> None:
    """Two HiLink sticks (cdc_ether, §1.7) both at 192.168.8.100 while a stream runs over the
    wired link and a wwan modem: belabox_network_duplicate_address flags eth1 and eth2."""
    t.reset()
    hub = "devices/platform/fc800000.usb/usb1"
    ifaces = [_lo(1000),
              Iface("eth0", f"{NIC}/net/eth0", NIC, "c0:74:2b:fe:3a:11", ifindex=2, stats=traffic(9_000, 7_000)),
              Iface("eth1", f"{hub}/1-1/1-1:1.0/net/eth1", f"{hub}/1-1/1-1:1.0", "0c:5b:8f:27:9a:64", speed=None,
                    duplex=None, ifindex=3, stats=traffic(5_000, 4_000)),
              Iface("eth2", f"{hub}/1-2/1-2:1.0/net/eth2", f"{hub}/1-2/1-2:1.0", "0c:5b:8f:27:9a:64", speed=None,
                    duplex=None, ifindex=4, stats=traffic(6_000, 3_000)),
              Iface("wwan0", f"{USB}/net/wwan0", USB, "00:00:00:00:00:00", speed=None, duplex=None,
                    devtype="wwan", ifindex=5, iftype=519, stats=traffic(8_000, 2_000)),
              Iface("docker0", "devices/virtual/net/docker0", None, "02:42:6b:1a:0c:55", speed=None, duplex=None,
                    ifindex=6, bridge=True, devtype="bridge")]
    for i in ifaces:
        write_iface(t, i)
    t.write("proc/net/dev", proc_net_dev(ifaces))
    t.write("proc/stat", proc_stat([cpu_ticks(n, 3600, 20.0) for n in range(8)], 10_000, 90_000,
                                   1700000000, 900, 1, 0))
    stream.write(t, stream.duplicate_ipv4())


EDGES = {"counter-wrap": counter_wrap, "thermal-zone-eio": thermal_zone_eio,
         "hot-removed-interface": hot_removed_interface, "cpu-64-cores": cpu_64_cores,
         "missing-psi": missing_psi, "read-only-filesystem": read_only_filesystem,
         "ina3221-hwmon-layout": ina3221_hwmon_layout, "duplicate-ipv4": duplicate_ipv4}
