"""Kernel message classification on recorded lines of every kind, and on garbage."""

from __future__ import annotations

import pytest

from belabox_metrics.platform import kmsg

# (message as the journal's MESSAGE field holds it, kind, device, usb port)
RECORDED = [
    ("usb 1-1: USB disconnect, device number 5", "usb_disconnect", "1-1", "1-1"),
    ("usb 3-1.4: USB disconnect, device number 12", "usb_disconnect", "3-1.4", "3-1.4"),
    ("usb 1-1: reset high-speed USB device number 2 using xhci-hcd", "usb_reset", "1-1", "1-1"),
    ("usb 2-1: reset SuperSpeed Gen 1 USB device number 2 using xhci_hcd", "usb_reset", "2-1", "2-1"),
    ("usb 1-1.2: reset full-speed USB device number 4 using ehci-platform", "usb_reset", "1-1.2", "1-1.2"),
    ("usb 1-1: device descriptor read/64, error -71", "usb_error", "1-1", "1-1"),
    ("usb 1-1: device not accepting address 6, error -71", "usb_error", "1-1", "1-1"),
    ("usb usb1-port1: unable to enumerate USB device", "usb_error", "1-1", "1-1"),
    ("usb 1-1-port2: cannot reset (err = -71)", "usb_error", "1-1.2", "1-1.2"),
    ("usb usb3-port1: over-current condition", "usb_overcurrent", "3-1", "3-1"),
    ("rk_hdmirx fdee0000.hdmirx-controller: hdmirx_wait_lock_and_get_timing signal not lock, tmds_clk_ratio:0",
     "hdmirx_signal_lost", "hdmirx", None),
    ("rk_hdmirx fdee0000.hdmirx-controller: hdmirx_delayed_work_audio: audio underflow",
     "hdmirx_audio_underflow", "hdmirx", None),
    ("rk_hdmirx fdee0000.hdmirx-controller: Err, timing is invalid", "hdmirx_invalid_timing", "hdmirx", None),
    ("soctherm: OC ALARM 0x00000001", "under_voltage", "soctherm", None),
    ("soctherm: OC ALARM 0x00000004", "over_current", "soctherm", None),
    ("CPU2: Core temperature above threshold, cpu clock throttled (total events = 1)",
     "thermal_throttle", "CPU2", None),
    ("CPU0: Package temperature above threshold, cpu clock throttled (total events = 7)",
     "thermal_throttle", "CPU0", None),
    ("thermal thermal_zone0: critical temperature reached (115 C), shutting down",
     "thermal_critical", "thermal_zone0", None),
    ("thermal thermal_zone1: soc-thermal: critical temperature reached", "thermal_critical", "thermal_zone1", None),
    ("mmc0: Timeout waiting for hardware interrupt.", "mmc_error", "mmc0", None),
    ("mmc1: error -110 whilst initialising SD card", "mmc_error", "mmc1", None),
    ("mmc0: card never left busy state", "mmc_error", "mmc0", None),
    ("mmcblk0: error -110 sending stop command, original cmd response 0x900, card status 0x400e00",
     "mmc_error", "mmcblk0", None),
    ("blk_update_request: I/O error, dev mmcblk0, sector 4196352 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0",
     "mmc_error", "mmcblk0", None),
    ("I/O error, dev sda, sector 2048 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2", "io_error", "sda", None),
    ("EXT4-fs error (device mmcblk0p2): ext4_find_entry:1658: inode #2: comm systemd: reading directory lblock 0",
     "filesystem_error", "mmcblk0p2", None),
    ("Out of memory: Killed process 1502 (belacoder) total-vm:1532456kB, anon-rss:812344kB, file-rss:0kB, "
     "shmem-rss:0kB, UID:0 pgtables:2048kB oom_score_adj:0", "oom_kill", "belacoder", None),
    ("Out of memory: Kill process 812 (node) score 301 or sacrifice child", "oom_kill", "node", None),
    ("Memory cgroup out of memory: Killed process 4242 (python3) total-vm:1kB", "oom_kill", "python3", None),
]


@pytest.mark.parametrize(("message", "kind", "device", "port"), RECORDED)
def test_recorded_lines(message, kind, device, port):
    assert kmsg.classify(message) == kmsg.KernelEvent(kind, device, port)


def test_every_kind_has_a_recorded_line():
    assert {k for _, k, _, _ in RECORDED} == set(kmsg.KINDS)


@pytest.mark.parametrize("message", [
    "",
    "usb 1-1: new high-speed USB device number 5 using xhci-hcd",
    "usb 1-1: New USB device found, idVendor=12d1, idProduct=14dc, bcdDevice= 1.02",
    "usb 1-1: SerialNumber: 0123456789ABCDEF",
    "cdc_ether 1-1:1.0 eth1: register 'cdc_ether' at usb-xhci-hcd.0.auto-1, CDC Ethernet Device, 0c:5b:8f:27:9a:64",
    "mmc0: new HS200 MMC card at address 0001",
    "mmcblk0: mmc0:0001 AJTD4R 14.6 GiB",
    "EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Quota mode: none.",
    "oom_reaper: reaped process 1502 (belacoder), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "thermal thermal_zone0: failed to read out thermal zone (-61)",
    "\x00\x01\x02 binary \xff junk",
    "usb usb1-port1: connect-debounce failed",
    "x" * 10000,
])
def test_ordinary_lines_and_garbage_are_not_events(message):
    assert kmsg.classify(message) is None


def test_oom_device_label_is_bounded_and_label_safe():
    name = "we!rd name\u00e9with-a-very-long-tail-xxxxxxxxxxxx"
    ev = kmsg.classify(f"Out of memory: Killed process 1 ({name}) total-vm:1kB")
    assert ev.kind == "oom_kill"
    assert len(ev.device) <= 32 and all(c.isalnum() or c in "_.:-" for c in ev.device)


@pytest.mark.parametrize(("entry", "expected"), [
    ({"MESSAGE": "usb 1-1: USB disconnect, device number 5"}, "usb 1-1: USB disconnect, device number 5"),
    ({"MESSAGE": list(b"usb 1-1: reset \xff")}, "usb 1-1: reset \ufffd"),
    ({"MESSAGE": [1, 2, 999]}, None),
    ({"MESSAGE": None}, None),
    ({}, None),
    ("not a dict", None),
])
def test_journal_message(entry, expected):
    assert kmsg.journal_message(entry) == expected


def test_port_path():
    assert kmsg.port_path("usb2", "3") == "2-3"
    assert kmsg.port_path("1-1", "4") == "1-1.4"
