"""Write small procfs/sysfs/rootfs trees for collector tests (proc(5) formats)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scripts.reconstruct_hardware.stream import PLANTED_SECRETS, stat_line

REPO = Path(__file__).resolve().parents[2]
# A stream running over a wired link and a modem beside two HiLink sticks sharing an address
# (scripts/reconstruct_hardware edges.duplicate_ipv4). Its rootfs is STREAM_TREE / "root".
STREAM_TREE = REPO / "hardware" / "edge" / "duplicate-ipv4"
BOARD_TREES = {b: REPO / "hardware" / b for b in ("rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano")}

__all__ = ["PLANTED_SECRETS", "stat_line", "STREAM_TREE", "BOARD_TREES"]


def write_process(procfs: Path, pid: int, comm: str, argv: list[str], utime: int = 0, stime: int = 0,
                  starttime: int = 1000, rss_kb: int = 10240) -> Path:
    d = procfs / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "stat").write_text(stat_line(pid, comm, utime, stime, starttime))
    (d / "status").write_text(f"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\n"
                              f"VmRSS:\t{rss_kb:8d} kB\nThreads:\t4\n")
    return d


def write_proc_stat(procfs: Path, btime: int = 1_764_000_000) -> None:
    procfs.mkdir(parents=True, exist_ok=True)
    (procfs / "stat").write_text("cpu  100 0 50 1000 0 0 0 0 0 0\nctxt 12345\n"
                                 f"btime {btime}\nprocesses 4242\nprocs_running 1\n")


def write_belaui(rootfs: Path, setup: dict | None = None, config: dict | None = None) -> Path:
    d = rootfs / "opt" / "belaUI"
    d.mkdir(parents=True, exist_ok=True)
    if setup is not None:
        (d / "setup.json").write_text(json.dumps(setup))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    return d


def write_netdev(sysfs: Path, name: str, physical: bool = True) -> Path:
    d = sysfs / "class" / "net" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "uevent").write_text(f"INTERFACE={name}\nIFINDEX=2\n")
    (d / "operstate").write_text("up\n")
    if physical:
        (d / "device").mkdir(exist_ok=True)
    return d


def copy_stream_tree(dest: Path) -> Path:
    """A writable copy of the stream tree (tests that change PIDs work on it)."""
    shutil.copytree(STREAM_TREE, dest, symlinks=True)
    return dest
