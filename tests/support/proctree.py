"""Write small procfs/sysfs/rootfs trees for collector tests (proc(5) formats)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STREAM_TREE = REPO / "hardware" / "belabox-stream"

# Secrets planted in the stream tree's config.json and process command lines; no output,
# log or bundle may ever contain them.
PLANTED_SECRETS = (
    "$2b$10$PLANTEDpasswordHASHxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "$6$PLANTEDsshSALT$PLANTEDsshHASHxxxxxxxxxxxxxxxxxxxxxxx",
    "live_PLANTED_streamkey_9f8e7d6c",
    "relay.planted-secret.example",
    "PLANTED_remote_key_1a2b3c4d5e6f",
)


def stat_line(pid: int, comm: str, utime: int = 0, stime: int = 0, starttime: int = 1000,
              state: str = "S", ppid: int = 1, rss_pages: int = 2500) -> str:
    """A 52-field /proc/<pid>/stat line (fields 14, 15, 22 and 24 set from the arguments)."""
    fields = [str(pid), f"({comm})", state, str(ppid), str(pid), str(pid), "0", "-1", "4194560",
              "1200", "0", "3", "0", str(utime), str(stime), "0", "0", "20", "0", "4", "0",
              str(starttime), "123456789", str(rss_pages)]
    fields += ["18446744073709551615"] + ["0"] * (52 - len(fields) - 1)
    return " ".join(fields) + "\n"


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
    """A writable copy of hardware/belabox-stream (tests that change PIDs work on it)."""
    shutil.copytree(STREAM_TREE, dest, symlinks=True)
    return dest
