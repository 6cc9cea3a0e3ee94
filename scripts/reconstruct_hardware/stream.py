"""A running BELABOX stream added to a tree: belaUI, belacoder and srtla_send in procfs,
belaUI's files in the rootfs, the interfaces' addresses and this boot's kernel journal.

Facts (belabox-image.md §1.4-1.6, BELABOX/belaUI belaUI.js): belaUI runs from /opt/belaUI
as ``nodejs ./belaUI.js`` (CeraLive: a compiled ``belaUI``); it starts ``srtla_send 9000
<relay> <port> /tmp/srtla_ips`` and ``belacoder <pipeline> 127.0.0.1 9000 -d <delay> -b
/tmp/belacoder_br -l <latency> -s <streamid>``; the bitrate file holds the minimum and maximum
bitrate in bit/s; pipeline ids are sha1("<hw dir>/<file>"). Files a live kernel answers
through netlink or the journal are stored beside the tree the way a capture records them:
``ip-addr.json`` (``ip -j addr show``) and ``kernel-journal.jsonl`` (``journalctl -k -o json``).
The secrets in config.json and on the command lines are planted: no output may contain them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.reconstruct_hardware.tree import Tree

PLANTED_SECRETS = (
    "$2b$10$PLANTEDpasswordHASHxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",  # password_hash (bcrypt)
    "$6$PLANTEDsshSALT$PLANTEDsshHASHxxxxxxxxxxxxxxxxxxxxxxx",  # ssh_pass_hash
    "live_PLANTED_streamkey_9f8e7d6c",  # srt_streamid
    "relay.planted-secret.example",  # srtla_addr
    "PLANTED_remote_key_1a2b3c4d5e6f",  # remote_key (BELABOX cloud)
)
PASSWORD_HASH, SSH_HASH, STREAM_KEY, RELAY, REMOTE_KEY = PLANTED_SECRETS
BOOT_ID = "5f0c8d1e2a3b4c5d6e7f8091a2b3c4d5"
CLK_TCK = 100


def stat_line(pid: int, comm: str, utime: int = 0, stime: int = 0, starttime: int = 1000,
              state: str = "S", ppid: int = 1, rss_pages: int = 2500) -> str:
    """A 52-field /proc/<pid>/stat line (proc(5)); fields 14, 15, 22 and 24 from the arguments."""
    fields = [str(pid), f"({comm})", state, str(ppid), str(pid), str(pid), "0", "-1", "4194560",
              "1200", "0", "3", "0", str(utime), str(stime), "0", "0", "20", "0", "4", "0",
              str(starttime), "123456789", str(rss_pages)]
    fields += ["18446744073709551615"] + ["0"] * (52 - len(fields) - 1)
    return " ".join(fields) + "\n"


def write_process(t: Tree, pid: int, comm: str, argv: list[str], utime: int, stime: int, starttime: int,
                  rss_kb: int, ppid: int = 1) -> None:
    d = f"proc/{pid}"
    t.write(f"{d}/comm", comm + "\n")
    t.write(f"{d}/cmdline", b"".join(a.encode() + b"\0" for a in argv))
    t.write(f"{d}/stat", stat_line(pid, comm, utime, stime, starttime, ppid=ppid, rss_pages=rss_kb // 4))
    t.write(f"{d}/status", f"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t{ppid}\n"
                           f"VmRSS:\t{rss_kb:8d} kB\nThreads:\t4\n")


@dataclass
class Proc:
    pid: int
    started_s: float  # seconds after boot
    cpu_ticks: tuple[int, int]  # utime, stime
    rss_kb: int


@dataclass
class Stream:
    hw: str  # setup.json "hw": rk3588 or jetson
    ipv4: dict[str, list[str]]  # every interface's IPv4 addresses, as `ip -j addr` lists them
    bonded: list[str]  # /tmp/srtla_ips
    pipeline: str  # "<hw dir>/<file>" of the selected pipeline
    pipelines: tuple[str, ...]
    belaui: Proc
    srtla: Proc
    belacoder: Proc
    compiled_belaui: bool = False  # CeraLive's bun-compiled binary instead of node
    max_br_kbps: int = 6000
    latency_ms: int = 2000
    audio: tuple[str, str] = ("HDMI", "opus")
    kernel: list[tuple[float, str]] = field(default_factory=list)  # (seconds after boot, message)


def write(t: Tree, s: Stream) -> None:
    belaui_argv = ["/opt/belaUI/belaUI"] if s.compiled_belaui else ["/usr/bin/nodejs", "./belaUI.js"]
    for proc, comm, argv in (
        (s.belaui, "belaUI" if s.compiled_belaui else "node", belaui_argv),
        (s.srtla, "srtla_send", ["/usr/bin/srtla_send", "9000", RELAY, "5000", "/tmp/srtla_ips"]),
        (s.belacoder, "belacoder", ["/usr/bin/belacoder", "/tmp/belacoder_pipeline", "127.0.0.1", "9000",
                                    "-d", "0", "-b", "/tmp/belacoder_br", "-l", str(s.latency_ms), "-s",
                                    STREAM_KEY]),
    ):
        ppid = 1 if proc is s.belaui else s.belaui.pid
        write_process(t, proc.pid, comm, argv, *proc.cpu_ticks, int(proc.started_s * CLK_TCK), proc.rss_kb, ppid)
    setup = {"hw": s.hw, "bitrate_file": "/tmp/belacoder_br", "ips_file": "/tmp/srtla_ips", "ssh_user": "user",
             "apt_update_enabled": True, "has_gsm_autoconfig": True}
    config = {"password_hash": PASSWORD_HASH, "ssh_pass_hash": SSH_HASH, "remote_key": REMOTE_KEY,
              "max_br": s.max_br_kbps, "delay": 0, "pipeline": hashlib.sha1(s.pipeline.encode()).hexdigest(),
              "srt_latency": s.latency_ms, "srt_streamid": STREAM_KEY, "srtla_addr": RELAY, "srtla_port": 5000,
              "bitrate_overlay": False, "asrc": s.audio[0], "acodec": s.audio[1]}
    t.write("root/opt/belaUI/setup.json", json.dumps(setup, indent=2) + "\n")
    t.write("root/opt/belaUI/config.json", json.dumps(config))  # belaUI writes it on one line
    t.write("root/tmp/belacoder_br", f"300000\n{s.max_br_kbps * 1000}\n")
    t.write("root/tmp/srtla_ips", "".join(f"{ip}\n" for ip in s.bonded))
    for p in s.pipelines:
        t.write(f"root/usr/share/belacoder/pipelines/{p}",
                "v4l2src ! videoconvert ! venc name=venc_bps ! mpegtsmux name=mux ! appsink name=appsink\n")
    t.write("ip-addr.json", ip_json(s.ipv4))
    t.write("proc/net/if_inet6", "00000000000000000000000000000001 01 80 10 80       lo\n")
    t.write("kernel-journal.jsonl", journal(s.kernel))


def ip_json(ipv4: dict[str, list[str]]) -> str:
    """`ip -j addr show` for the IPv4 part (iproute2's field names)."""
    doc = []
    for n, (name, addrs) in enumerate(ipv4.items(), start=1):
        infos = [{"family": "inet", "local": a, "prefixlen": 8 if a.startswith("127.") else 24,
                  "scope": "host" if a.startswith("127.") else "global", "label": name} for a in addrs]
        doc.append({"ifindex": n, "ifname": name, "flags": ["UP", "LOWER_UP"], "operstate": "UP",
                    "addr_info": infos})
    return json.dumps(doc, indent=1) + "\n"


def journal(kernel: list[tuple[float, str]], btime: int = 1_700_000_000) -> str:
    """`journalctl -k -o json` lines for this boot's kernel messages."""
    out = []
    for i, (after_boot, message) in enumerate(kernel, start=1):
        out.append(json.dumps({
            "__CURSOR": f"s=0a1b2c3d;i={i:x};b={BOOT_ID};m={int(after_boot * 1e6):x}",
            "__REALTIME_TIMESTAMP": str(int((btime + after_boot) * 1e6)),
            "__MONOTONIC_TIMESTAMP": str(int(after_boot * 1e6)), "_BOOT_ID": BOOT_ID,
            "_TRANSPORT": "kernel", "SYSLOG_IDENTIFIER": "kernel", "SYSLOG_FACILITY": "0", "PRIORITY": "6",
            "MESSAGE": message}))
    return "".join(line + "\n" for line in out)


def writer(s: Stream) -> Callable[[Tree], None]:
    """For Board.extra."""
    return lambda t: write(t, s)


# --- the boards' streams ------------------------------------------------------------------------

_BOOT_NOISE = [
    (0.0, "Booting Linux on physical CPU 0x0000000000 [0x412fd050]"),
    (2.1, "usb 1-1: new high-speed USB device number 2 using xhci-hcd"),
    (6.4, "EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Quota mode: none."),
]


def _orangepi5plus() -> Stream:
    # A vendor-kernel RK3588 with HDMI-in: the rk_hdmirx messages belaUI watches (§1.6), and the
    # wwan modem on 5-1 dropping off the bus once.
    return Stream(
        hw="rk3588",
        ipv4={"lo": ["127.0.0.1"], "enP3p49s0": ["192.168.1.50"], "wwan0": ["10.64.12.7"],
              "enx0c5b8f279a64": ["192.168.8.100"], "usb0": ["192.168.42.129"], "docker0": ["172.17.0.1"]},
        bonded=["10.64.12.7", "192.168.8.100", "192.168.42.129", "192.168.1.50"],
        pipeline="rk3588/h265_hdmi_1080p30",
        pipelines=("rk3588/h265_hdmi_1080p30", "rk3588/h264_hdmi_1080p30", "generic/h264_camlink_1080p"),
        belaui=Proc(812, 21.0, (152_300, 31_200), 68_432),
        srtla=Proc(14_500, 250_000.0, (42_100, 29_800), 3_120),
        belacoder=Proc(14_502, 250_002.1, (980_000, 120_000), 154_880),
        max_br_kbps=8000,
        kernel=[*_BOOT_NOISE,
                (250_100.2, "rk_hdmirx fdee0000.hdmirx-controller: hdmirx_wait_lock_and_get_timing signal not lock, "
                            "tmds_clk_ratio:0"),
                (250_100.9, "rk_hdmirx fdee0000.hdmirx-controller: hdmirx_wait_lock_and_get_timing signal not lock, "
                            "tmds_clk_ratio:0"),
                (251_870.4, "rk_hdmirx fdee0000.hdmirx-controller: hdmirx_delayed_work_audio: audio underflow"),
                (251_902.0, "rk_hdmirx fdee0000.hdmirx-controller: Err, timing is invalid"),
                (255_000.0, "usb 5-1: USB disconnect, device number 3"),
                (255_004.7, "usb 5-1: new high-speed USB device number 4 using xhci-hcd"),
                (255_101.3, "usb 3-1: reset high-speed USB device number 2 using xhci-hcd")],
    )


def _rock5b() -> Stream:
    # Mainline kernel (no vendor rk_hdmirx), CeraLive-style compiled belaUI; belacoder was
    # OOM-killed once and restarted, and the SD card timed out.
    return Stream(
        hw="rk3588",
        ipv4={"lo": ["127.0.0.1"], "enP3p49s0": ["192.168.1.77"], "wwan0": ["10.201.3.9"]},
        bonded=["10.201.3.9", "192.168.1.77"],
        pipeline="rk3588/h264_hdmi_1080p30",
        pipelines=("rk3588/h265_hdmi_1080p30", "rk3588/h264_hdmi_1080p30"),
        compiled_belaui=True,
        belaui=Proc(733, 18.0, (40_210, 9_870), 91_204),
        srtla=Proc(4_410, 7_000.0, (8_020, 6_110), 2_980),
        belacoder=Proc(5_120, 8_500.2, (31_400, 4_020), 163_112),
        max_br_kbps=6000, latency_ms=1500, audio=("HDMI", "aac"),
        kernel=[*_BOOT_NOISE,
                (7_950.0, "usb 6-1: reset high-speed USB device number 3 using xhci-hcd"),
                (7_951.5, "usb 6-1: reset high-speed USB device number 3 using xhci-hcd"),
                (8_499.0, "Out of memory: Killed process 4988 (belacoder) total-vm:1532456kB, anon-rss:812344kB, "
                          "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:2048kB oom_score_adj:0"),
                (8_700.8, "mmc1: Timeout waiting for hardware interrupt.")],
    )


def _jetson_nano() -> Stream:
    # belaUI's under-voltage alarm (soctherm OC ALARM bit 0, §1.6), and the modem on 1-2 dropping.
    return Stream(
        hw="jetson",
        ipv4={"lo": ["127.0.0.1"], "eth0": ["192.168.1.90"], "l4tbr0": ["192.168.55.1"], "wwan0": ["10.88.0.5"]},
        bonded=["10.88.0.5", "192.168.1.90"],
        pipeline="jetson/h265_camlink_1080p",
        pipelines=("jetson/h265_camlink_1080p", "jetson/h264_camlink_1080p", "generic/h264_camlink_1080p"),
        belaui=Proc(901, 24.0, (301_000, 64_000), 72_810),
        srtla=Proc(6_011, 40_000.0, (61_000, 44_000), 3_004),
        belacoder=Proc(6_013, 40_002.5, (1_402_000, 190_000), 201_344),
        max_br_kbps=5000, audio=("C4K", "aac"),
        kernel=[*_BOOT_NOISE,
                (41_000.1, "soctherm: OC ALARM 0x00000001"),
                (41_000.6, "soctherm: OC ALARM 0x00000001"),
                (48_221.9, "soctherm: OC ALARM 0x00000001"),
                (48_222.4, "usb 1-2: USB disconnect, device number 4")],
    )


def duplicate_ipv4() -> Stream:
    """Two Huawei HiLink sticks hand out the same 192.168.8.100 (§1.6): belaUI refuses both, and
    srtla bonds over the wired link and the wwan modem only."""
    return Stream(
        hw="rk3588",
        ipv4={"lo": ["127.0.0.1"], "eth0": ["192.168.1.50"], "eth1": ["192.168.8.100"], "eth2": ["192.168.8.100"],
              "wwan0": ["10.64.12.7"], "docker0": ["172.17.0.1"]},
        bonded=["192.168.1.50", "10.64.12.7"],
        pipeline="rk3588/h265_hdmi_1080p30",
        pipelines=("rk3588/h265_hdmi_1080p30", "rk3588/h264_hdmi_1080p30", "generic/h264_camlink_1080p"),
        belaui=Proc(812, 21.0, (15_230, 3_120), 68_432),
        srtla=Proc(1_450, 450.0, (4_210, 2_980), 3_120),
        belacoder=Proc(1_502, 452.1, (98_000, 12_000), 154_880),
    )


BOARD_STREAMS: dict[str, Callable[[], Stream]] = {
    "rk3588-orangepi5plus": _orangepi5plus, "rk3588-rock5b": _rock5b, "jetson-nano": _jetson_nano,
}
