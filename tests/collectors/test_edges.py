"""The edge trees under hardware/edge/, each showing one behaviour."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from belabox_metrics import config
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.cpu import CpuCollector
from belabox_metrics.collectors.filesystem import FilesystemCollector
from belabox_metrics.collectors.hwmon import HwmonCollector
from belabox_metrics.collectors.netdev import NetdevCollector
from belabox_metrics.collectors.pressure import PressureCollector
from belabox_metrics.collectors.registry import build_collectors
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.collectors.thermal import ThermalCollector
from belabox_metrics.health.registry import Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from tests.collectors.support import HARDWARE

EDGE = HARDWARE / "edge"


def ctx(tree: Path, cfg: config.Config | None = None, **kw) -> CollectorContext:
    return CollectorContext(config=cfg or config.Config(), procfs=str(tree / "proc"), sysfs=str(tree / "sys"),
                            rootfs=str(tree / "root"), selfmetrics=kw.pop("selfmetrics", SelfMetrics()), **kw)


def values(samples, name):
    return {s.labels: s.value for s in samples if s.name == name}


def test_counter_wrap_is_exported_raw():
    got = NetdevCollector(ctx(EDGE / "counter-wrap")).collect()
    wwan = (("device", "wwan0"),)
    assert values(got, "node_network_receive_bytes_total")[wwan] == float(2**64 - 1)
    assert values(got, "node_network_transmit_bytes_total")[wwan] == float(2**32 - 1)
    assert values(got, "node_network_receive_packets_total")[wwan] == float(2**32 - 1)


def test_unreadable_zone_hides_no_other_zone():
    c = ThermalCollector(ctx(EDGE / "thermal-zone-eio"))
    temps = values(c.collect(), "node_thermal_zone_temp")
    assert temps == {(("type", "soc-thermal"), ("zone", "0")): 48.0,
                     (("type", "npu-thermal"), ("zone", "2")): 47.1}
    assert len(c.problems) == 1 and "thermal_zone1 (gpu-thermal)" in c.problems[0]


def test_unreadable_zone_shows_as_degraded_health():
    health = Registry()
    cfg = config.Config()
    runner = CollectorRunner([ThermalCollector(ctx(EDGE / "thermal-zone-eio"))], cfg, health, SelfMetrics())
    try:
        assert len(runner.run_all()) == 2
    finally:
        runner.close()
    comp = health.get("collector.thermal")
    assert comp.status == "degraded" and "thermal_zone1" in comp.message
    assert comp.details == {"metrics_collected": 2}


def test_interface_listed_but_gone_is_skipped_whole():
    got = NetdevCollector(ctx(EDGE / "hot-removed-interface")).collect()
    devices = {s.label("device") for s in got}
    assert devices == {"eth0"}


def test_interface_removed_between_two_reads(tmp_path):
    tree = tmp_path / "board"
    shutil.copytree(HARDWARE / "rk3588-orangepi5plus", tree, symlinks=True)
    c = NetdevCollector(ctx(tree))
    first = c.collect()
    assert values(first, "node_network_receive_bytes_total")[(("device", "usb0"),)] == 602_112_887
    # The phone is unplugged: its USB interface directory goes, the class link dangles.
    shutil.rmtree(tree / "sys/devices/platform/fc880000.usb/usb1/1-1/1-1:1.0")
    second = c.collect()
    assert not [s for s in second if s.label("device") == "usb0"], "no zeros for a vanished interface"
    assert {s.label("device") for s in second} == {s.label("device") for s in first} - {"usb0"}


def test_64_cores_give_64_times_8_cpu_series():
    got = CpuCollector(ctx(EDGE / "cpu-64-cores")).collect()
    cpu = values(got, "node_cpu_seconds_total")
    assert len(cpu) == 64 * 8
    assert {dict(k)["cpu"] for k in cpu} == {str(n) for n in range(64)}


def test_missing_psi_is_no_metrics_and_no_error():
    health = Registry()
    tree = EDGE / "missing-psi"
    assert PressureCollector(ctx(tree)).collect() == []
    runner = CollectorRunner([PressureCollector(ctx(tree)), CpuCollector(ctx(tree))], config.Config(), health,
                             SelfMetrics())
    try:
        samples = runner.run_all()
    finally:
        runner.close()
    assert not [s for s in samples if s.name.startswith("node_pressure_")]
    assert health.get("collector.pressure").status == "ok"


def test_read_only_root_is_readonly_1():
    got = FilesystemCollector(ctx(EDGE / "read-only-filesystem")).collect()
    ro = {s.label("mountpoint"): s.value for s in got if s.name == "node_filesystem_readonly"}
    assert ro == {"/": 1.0, "/data": 0.0}


def test_ina3221_hwmon_layout_gives_rails_and_node_exporter_names():
    got = HwmonCollector(ctx(EDGE / "ina3221-hwmon-layout")).collect()
    rails = values(got, "belabox_power_rail_voltage_volts")
    assert rails == {(("rail", "VDD_IN"),): 5.064, (("rail", "VDD_CPU_GPU_CV"),): 5.056, (("rail", "VDD_SOC"),): 5.06}
    assert values(got, "belabox_power_rail_power_watts")[(("rail", "VDD_IN"),)] == round(5.064 * 1.48, 6)
    chip = "i2c_1_1_0040"
    assert values(got, "node_hwmon_in_volts")[(("chip", chip), ("sensor", "in1"))] == 5.064
    assert values(got, "node_hwmon_curr_amps")[(("chip", chip), ("sensor", "curr1"))] == 1.48
    assert (("chip", chip), ("label", "VDD_IN"), ("sensor", "in1")) in values(got, "node_hwmon_sensor_label")


def test_jetson_iio_rails():
    got = HwmonCollector(ctx(HARDWARE / "jetson-nano")).collect()
    assert values(got, "belabox_power_rail_power_watts") == {
        (("rail", "POM_5V_IN"),): 5.199, (("rail", "POM_5V_GPU"),): 0.392, (("rail", "POM_5V_CPU"),): 2.005}


def test_max_interfaces_drops_and_counts():
    sm = SelfMetrics()
    cfg = config.loads("network:\n  max_interfaces: 2\n")
    c = NetdevCollector(ctx(HARDWARE / "rk3588-orangepi5plus", cfg, selfmetrics=sm))
    got = c.collect()
    kept = {s.label("device") for s in got}
    assert kept == {"enP3p49s0", "enP4p65s0"}  # sorted by name, first two
    per_interface = len([s for s in got if s.label("device") == "enP3p49s0"])
    dropped = sm.value("metrics_collector_dropped_series_total", {"reason": "max_interfaces"})
    assert dropped >= 3 * (per_interface - 2)  # three more interfaces, each nearly as many series
    assert "over network.max_interfaces=2" in c.problems[0]


def test_interfaces_are_classified_from_sysfs_not_names():
    boards = {"rk3588-orangepi5plus": {"enP3p49s0", "enP4p65s0", "wwan0", "enx0c5b8f279a64", "usb0"},
              "jetson-nano": {"eth0", "wwan0"},  # gadget usb0/rndis0 and the l4tbr0 bridge are not uplinks
              "generic": {"enp1s0", "wlp2s0", "wwan0"}}  # docker0 and veth are virtual
    for board, want in boards.items():
        assert set(NetdevCollector(ctx(HARDWARE / board)).interfaces()) == want, board


def test_disks_skip_partitions_boot_areas_zram_loop_and_mtd():
    got = build_collectors(ctx(HARDWARE / "rk3588-orangepi5plus"), only=["diskstats"])[0].collect()
    assert {s.label("device") for s in got} == {"mmcblk0", "nvme0n1"}


def test_disk_sectors_are_512_bytes_even_on_a_4k_namespace():
    tree = HARDWARE / "generic"
    assert (tree / "sys/block/nvme0n1/queue/logical_block_size").read_text().strip() == "4096"
    got = build_collectors(ctx(tree), only=["diskstats"])[0].collect()
    sectors = int((tree / "sys/block/nvme0n1/stat").read_text().split()[2])
    assert values(got, "node_disk_read_bytes_total")[(("device", "nvme0n1"),)] == sectors * 512


def test_disks_from_the_discovery_registry_when_it_runs():
    class Disk:
        def __init__(self, name):
            self.name = name

    class Discovery:  # the shape of discovery.DeviceRegistry that diskstats relies on
        def disks(self):
            return [Disk("nvme0n1"), Disk("zram0"), Disk("mmcblk0boot0")]

    got = build_collectors(ctx(HARDWARE / "rk3588-orangepi5plus", registry=Discovery()), only=["diskstats"])[0]
    assert {s.label("device") for s in got.collect()} == {"nvme0n1"}


def test_slow_statvfs_skips_that_mount_with_backoff_and_keeps_the_others():
    clock = {"t": 0.0, "slow": None}

    def monotonic():
        return clock["t"]

    def statvfs(path):
        if clock["slow"] and path.endswith(clock["slow"]):
            clock["t"] += 30.0  # this mount's statvfs hung for 30 s before it returned
        return os.statvfs(path)

    tree = HARDWARE / "rk3588-orangepi5plus"
    c = FilesystemCollector(ctx(tree), monotonic=monotonic, statvfs=statvfs)
    mounts = {s.label("mountpoint") for s in c.collect()}
    assert mounts == {"/", "/boot", "/data", "/var/log", "/tmp"}

    clock["slow"] = "/data"
    c.collect()  # the slow one: it returns late, and is remembered
    clock["slow"] = None
    skipped = c.collect()
    data = [s for s in skipped if s.label("mountpoint") == "/data"]
    assert [(s.name, s.value) for s in data] == [("node_filesystem_device_error", 1.0)]
    assert {s.label("mountpoint") for s in skipped if s.name == "node_filesystem_size_bytes"} == mounts - {"/data"}
    assert c.problems == ["/data: statvfs was slow, skipped"]
    after = c.collect()  # skipped for one cycle only after the first slow call
    assert any(s.name == "node_filesystem_size_bytes" and s.label("mountpoint") == "/data" for s in after)


def test_a_blocking_sysfs_read_is_cut_off_and_the_cycle_goes_on(tmp_path):
    """A thermal zone whose ``temp`` blocks forever (a FIFO nobody writes: like a read from a
    wedged I2C sensor, it sleeps in the kernel where Python cannot interrupt it)."""
    tree = tmp_path / "board"
    shutil.copytree(HARDWARE / "generic", tree, symlinks=True)
    temp = tree / "sys/devices/virtual/thermal/thermal_zone1/temp"
    temp.unlink()
    os.mkfifo(temp)
    cfg = config.loads("collection_interval: 10s\ncollectors:\n  thermal:\n    timeout: 200ms\n")
    health, sm = Registry(), SelfMetrics()
    c = ctx(tree, cfg, selfmetrics=sm)
    runner = CollectorRunner(build_collectors(c, only=["cpu", "thermal", "meminfo"]), cfg, health, sm)
    try:
        got = runner.run_due(0.0)
        assert {s.name for s in got} >= {"node_cpu_seconds_total", "node_memory_MemTotal_bytes"}
        assert not [s for s in got if s.name == "node_thermal_zone_temp"]
        assert health.get("collector.thermal").status == "error"
        assert "timed out after 0.2s" in health.get("collector.thermal").message
        assert health.get("collector.cpu").status == "ok"
        second = runner.run_due(10.0)  # backoff: thermal is not started again
        assert "node_cpu_seconds_total" in {s.name for s in second}
        assert sm.value("metrics_collector_collector_errors_total", {"collector": "thermal"}) == 1
    finally:
        fd = os.open(temp, os.O_WRONLY | os.O_NONBLOCK)  # release the blocked reader
        os.write(fd, b"40000\n")
        os.close(fd)
        runner.close()
