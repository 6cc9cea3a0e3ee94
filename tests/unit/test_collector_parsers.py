"""The pure parsing functions of the collectors: text in, values out, no filesystem."""

from __future__ import annotations

import re

from belabox_metrics.collectors.cpu import parse_cpu_lines
from belabox_metrics.collectors.diskstats import NEVER, disk_samples, parse_stat, wanted
from belabox_metrics.collectors.filesystem import parse_mountinfo
from belabox_metrics.collectors.filesystem import wanted as fs_wanted
from belabox_metrics.collectors.hwmon import clean_name, metric_for, split_sensor_file
from belabox_metrics.collectors.loadavg import parse_loadavg, parse_stat_totals
from belabox_metrics.collectors.meminfo import parse_meminfo, parse_mm_stat
from belabox_metrics.collectors.netdev import parse_uevent
from belabox_metrics.collectors.pressure import parse_psi
from belabox_metrics.collectors.selfstats import parse_io_write_bytes, parse_stat_cpu_seconds, parse_status_rss
from belabox_metrics.config import DiskConfig


def test_meminfo_names_follow_node_exporter():
    got = parse_meminfo("MemTotal:       16146664 kB\nActive(anon):     1000 kB\n"
                        "HugePages_Total:       0\nHugepagesize:       2048 kB\n\n")
    assert got == {"MemTotal_bytes": 16146664 * 1024.0, "Active_anon_bytes": 1024000.0,
                   "HugePages_Total": 0.0, "Hugepagesize_bytes": 2097152.0}


def test_zram_mm_stat_short_and_long_forms():
    assert parse_mm_stat("4096 1365 83285 0 98304 12 0") == {
        "belabox_zram_original_data_bytes": 4096.0, "belabox_zram_compressed_data_bytes": 1365.0,
        "belabox_zram_memory_used_bytes": 83285.0, "belabox_zram_memory_limit_bytes": 0.0,
        "belabox_zram_memory_used_max_bytes": 98304.0, "belabox_zram_same_pages": 12.0,
        "belabox_zram_pages_compacted_total": 0.0}
    assert len(parse_mm_stat("1 2 3 4 5 6 7 8 9")) == 8


def test_cpu_lines_skip_the_total_and_pad_old_kernels():
    text = "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 4 0 2 50 1 0 0 0\ncpu1 6 0 3 50 0 0 0 0 2 0\nintr 5\n"
    assert parse_cpu_lines(text) == [("0", [4, 0, 2, 50, 1, 0, 0, 0, -1, -1]),
                                     ("1", [6, 0, 3, 50, 0, 0, 0, 0, 2, 0])]


def test_loadavg_and_stat_totals():
    assert parse_loadavg("0.52 0.61 0.58 2/412 97251\n") == (0.52, 0.61, 0.58)
    totals = parse_stat_totals("cpu  1 2\nintr 12345 3 4\nctxt 99\nbtime 1700000000\nprocesses 7\n"
                               "procs_running 2\nprocs_blocked 1\nsoftirq 5 1\n")
    assert totals == {"node_intr_total": 12345.0, "node_context_switches_total": 99.0,
                      "node_boot_time_seconds": 1.7e9, "node_forks_total": 7.0, "node_procs_running": 2.0,
                      "node_procs_blocked": 1.0}


def test_psi_totals_are_microseconds():
    assert parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n"
                     "full avg10=0.00 avg60=0.00 avg300=0.00 total=250\n") == {"some": 1.5, "full": 0.00025}


def test_disk_stat_units_and_filters():
    fields = parse_stat("  100 2 800 30 10 1 160 4 0 7 9 3 0 2048 5 11 6")
    got = {s.name: s.value for s in disk_samples("sda", fields)}
    assert got["node_disk_read_bytes_total"] == 800 * 512
    assert got["node_disk_read_time_seconds_total"] == 0.03
    assert got["node_disk_discarded_sectors_total"] == 2048
    assert got["node_disk_flush_requests_time_seconds_total"] == 0.006
    assert len(disk_samples("sda", fields[:11])) == 11  # a kernel before 4.18
    allowed = re.compile(DiskConfig().allowed_devices)
    for dev in ("mmcblk0", "mmcblk1", "nvme0n1", "sda", "vda"):
        assert wanted(dev, allowed), dev
    for dev in ("mmcblk0boot0", "mmcblk0rpmb", "mmcblk0p1", "zram0", "loop3", "ram0", "mtdblock0", "sda1"):
        assert not wanted(dev, allowed), dev
    # Even when an operator widens the pattern, these are never disks.
    assert not wanted("zram0", re.compile(".*")) and NEVER.match("mmcblk2boot1")


def test_mountinfo_escapes_options_and_exclusions():
    text = ("22 1 179:2 / / ro,noatime shared:1 - ext4 /dev/mmcblk0p2 ro\n"
            "30 22 8:1 / /media/my\\040stick rw - vfat /dev/sda1 rw\n"
            "31 22 8:2 / /srv/a\\134b rw,relatime - ext4 /dev/sda2 rw\n"
            "bad line\n")
    assert parse_mountinfo(text) == [("/dev/mmcblk0p2", "/", "ext4", True),
                                     ("/dev/sda1", "/media/my stick", "vfat", False),
                                     ("/dev/sda2", "/srv/a\\b", "ext4", False)]
    assert fs_wanted("/", "ext4") and fs_wanted("/tmp", "tmpfs")
    assert not fs_wanted("/run/user/1000", "tmpfs") and not fs_wanted("/snap/x", "squashfs")
    assert not fs_wanted("/var/lib/docker/overlay2/x/merged", "overlay")


def test_hwmon_naming_rules():
    assert split_sensor_file("temp1_input") == ("temp", "temp1", "input")
    assert split_sensor_file("temp") == ("temp", "temp0", "")
    assert split_sensor_file("in0_label") == ("in", "in0", "label")
    assert split_sensor_file("trip_point_0_temp") is None and split_sensor_file("name") is None
    assert clean_name("Package id 0") == "package_id_0" and clean_name("_a-b.c_") == "a_b_c"
    assert metric_for("temp", "input", False) == ("node_hwmon_temp_celsius", -1000.0)
    assert metric_for("temp", "input", True) == ("node_hwmon_temp_input_celsius", -1000.0)
    assert metric_for("temp", "crit_alarm", False) == ("node_hwmon_temp_crit_alarm_celsius", -1000.0)
    assert metric_for("in", "input", False) == ("node_hwmon_in_volts", -1000.0)
    assert metric_for("curr", "max", False) == ("node_hwmon_curr_max_amps", -1000.0)
    assert metric_for("power", "average", False) == ("node_hwmon_power_average_watt", -1e6)
    assert metric_for("fan", "input", False) == ("node_hwmon_fan_rpm", 1.0)
    assert metric_for("temp", "alarm", False) == ("node_hwmon_temp_alarm", 1.0)
    assert metric_for("pwm", "", False) == ("node_hwmon_pwm", 1.0)
    assert metric_for("temp", "label", False) is None


def test_uevent_and_self_stats():
    assert parse_uevent("INTERFACE=wwan0\nDEVTYPE=wwan\n") == {"INTERFACE": "wwan0", "DEVTYPE": "wwan"}
    assert parse_status_rss("Name:\tpython\nVmRSS:\t   29000 kB\n") == 29000 * 1024
    # A command name with spaces and parentheses must not shift the fields.
    stat = "4242 (metrics (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 500"
    assert parse_stat_cpu_seconds(stat) == 3.0
    assert parse_io_write_bytes("rchar: 1\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n") == 8192.0
