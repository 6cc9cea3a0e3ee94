"""BELABOX's streaming processes in <procfs>/<pid>: belaUI, belacoder and srtla_send.

belaUI runs as ``node ./belaUI.js`` (BELABOX) or as a compiled ``belaUI`` binary (CeraLive);
it spawns belacoder and srtla_send in restart loops rather than as units
(belabox-image.md §1.4), so a PID that keeps changing is a stream that keeps failing.
File formats: proc(5) ``comm`` (first 15 bytes of the name), ``cmdline`` (NUL-separated argv,
empty for zombies), ``stat`` (field 2 is ``(comm)`` and may hold spaces and parentheses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from belabox_metrics.platform.files import list_dir, read_bytes, read_optional

PROCESSES = ("belaUI", "belacoder", "srtla_send")
# Interpreters belaUI.js runs under: Debian names node "nodejs"; CeraLive's dev builds use bun.
_INTERPRETERS = frozenset({"node", "nodejs", "bun"})
_NAMES = frozenset(PROCESSES)


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this module uses, in clock ticks."""

    utime: int
    stime: int
    starttime: int
    state: str = "R"


def parse_stat(text: str) -> ProcStat:
    """Fields 14, 15 and 22 of proc(5) ``stat``; ValueError when the line is cut short."""
    end = text.rfind(")")
    if end < 0:
        raise ValueError("no ')' closing the comm field")
    rest = text[end + 1:].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3].
    if len(rest) < 20:
        raise ValueError(f"{len(rest) + 2} fields, need at least 22")
    return ProcStat(utime=int(rest[11]), stime=int(rest[12]), starttime=int(rest[19]), state=rest[0])


def parse_vmrss_bytes(status: str) -> int | None:
    """``VmRSS`` of proc(5) ``status`` in bytes (the file says kB, meaning KiB); None for
    kernel threads and zombies, which have no such line."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def parse_btime(stat: str) -> int | None:
    """Boot time in seconds since the epoch from <procfs>/stat (``btime`` line)."""
    for line in stat.splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def identify(comm: str, argv: list[str]) -> str | None:
    """Which BELABOX process this is, or None. ``comm`` decides for native binaries; an
    interpreter counts as belaUI only when one of its arguments is belaUI.js."""
    if comm in _NAMES:
        return comm
    if comm in _INTERPRETERS:
        for arg in argv[1:]:
            if os.path.basename(arg) == "belaUI.js":
                return "belaUI"
        return None
    # A renamed thread leader still carries its executable in argv[0].
    if argv:
        base = os.path.basename(argv[0])
        if base in _NAMES:
            return base
    return None


@dataclass(frozen=True)
class Found:
    name: str
    pid: int
    stat: ProcStat
    rss_bytes: int | None


def scan(procfs: str) -> dict[str, Found]:
    """The BELABOX processes now running, one per name. When a name matches several
    processes (a restart caught between fork and exit), the oldest is the one reported."""
    found: dict[str, Found] = {}
    for entry in list_dir(procfs):
        if not entry.isdigit():
            continue
        base = os.path.join(procfs, entry)
        comm = read_optional(os.path.join(base, "comm"))
        if comm is None:
            continue  # exited since the listing
        argv: list[str] = []
        if comm not in _NAMES:
            # cmdline only where comm cannot decide: reading every process's argv is
            # most of the cost of a scan.
            if comm not in _INTERPRETERS and not _maybe_renamed(comm):
                continue
            try:
                raw = read_bytes(os.path.join(base, "cmdline"))
            except OSError:
                continue
            argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        name = identify(comm, argv)
        if name is None:
            continue
        try:
            st = parse_stat(read_bytes(os.path.join(base, "stat")).decode("utf-8", "replace"))
        except (OSError, ValueError):
            continue
        if st.state in ("Z", "X"):
            continue  # exited, not yet reaped by belaUI: not running
        prev = found.get(name)
        if prev is not None and (prev.stat.starttime, prev.pid) <= (st.starttime, int(entry)):
            continue
        status = read_optional(os.path.join(base, "status")) or ""
        found[name] = Found(name, int(entry), st, parse_vmrss_bytes(status))
    return found


def _maybe_renamed(comm: str) -> bool:
    """comm is cut at 15 bytes, and GStreamer or node may rename the main thread; only
    such names are worth an argv read."""
    return comm.startswith(("belaUI", "belacoder", "srtla", "gst", "MainThread"))


class RestartTracker:
    """Counts restarts: a process seen with an identity (PID and start time, so a reused
    PID is not mistaken for the old process) different from the last one seen. A process
    that is gone keeps its last identity, so down-then-up with a new PID is one restart."""

    def __init__(self, names: tuple[str, ...] = PROCESSES):
        self._last: dict[str, tuple[int, int]] = {}
        self.restarts: dict[str, int] = dict.fromkeys(names, 0)

    def observe(self, name: str, found: Found | None) -> None:
        if found is None:
            return
        identity = (found.pid, found.stat.starttime)
        last = self._last.get(name)
        if last is not None and last != identity:
            self.restarts[name] = self.restarts.get(name, 0) + 1
        self._last[name] = identity
