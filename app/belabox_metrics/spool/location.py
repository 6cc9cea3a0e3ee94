"""Where the spool lives: a persistent, writable data directory, or a volatile one as last resort.

Candidates in order: an explicitly configured ``storage.path``, systemd's
``$STATE_DIRECTORY`` (first entry), the default ``storage.path`` folder, then
``storage.fallback_path`` (``/data/belabox-metrics`` on CeraLive-style images). A
candidate must be writable (probed by creating and removing a file; a read-only mount is
seen through statvfs) and persistent: on an overlayroot image ``/var/lib`` is writable but
lives in RAM (belabox-image.md §5.1). When none qualifies the spool goes to
``$RUNTIME_DIRECTORY`` or ``/run/belabox-metrics`` with ``persistent=False``, so the agent
keeps collecting with health degraded instead of refusing to run.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from belabox_metrics import config as configmod

VOLATILE_ROOT = "/run/belabox-metrics"
VOLATILE_FSTYPES = frozenset({"tmpfs", "ramfs", "devtmpfs"})


class DataPathError(OSError):
    """No usable directory at all, not even a volatile one; one line listing what was tried
    (an OSError, so the agent's start-up reports it as "cannot start" and exits 1)."""


@dataclass(frozen=True)
class DataPath:
    dir: str
    db_path: str
    persistent: bool
    reason: str  # how this directory was chosen, or why nothing persistent was usable
    tried: tuple[tuple[str, str], ...] = field(default=())  # (directory, problem) of rejected ones


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str
    source: str
    options: str  # per-mount options (ro, nosuid ...)
    super_options: str  # filesystem options (upperdir= for overlay)


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (proc(5)).
    out, i = [], 0
    while i < len(field_):
        digits = field_[i + 1:i + 4]
        if field_[i] == "\\" and len(digits) == 3 and digits.isdigit():
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Mounts from ``/proc/<pid>/mountinfo`` text, in file order; malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if not sep or len(a) < 6 or len(b) < 2:
            continue
        mounts.append(Mount(_unescape(a[4]), b[0], _unescape(b[1]), a[5], b[2] if len(b) > 2 else ""))
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount ``path`` lives on: the longest matching mount point, the topmost of equals."""
    best: Mount | None = None
    for m in mounts:
        mp = m.mount_point
        if (mp == "/" or path == mp or path.startswith(mp + "/")) and (
                best is None or len(mp) >= len(best.mount_point)):
            best = m
    return best


def volatility(path: str, mounts: list[Mount]) -> str | None:
    """Why data under ``path`` would not survive a reboot, or None when it would (or is unknown)."""
    m = mount_of(os.path.realpath(path), mounts)
    if m is None:
        return None
    if m.fstype in VOLATILE_FSTYPES:
        return f"{m.mount_point} is {m.fstype}"
    if m.fstype == "overlay":
        opts = dict(o.partition("=")[::2] for o in m.super_options.split(","))
        upper = opts.get("upperdir", "")
        if upper.startswith("/media/root-rw"):  # overlayroot's tmpfs upper layer
            return f"{m.mount_point} is an overlay whose changes live in RAM ({upper})"
        under = mount_of(upper, [x for x in mounts if x is not m]) if upper else None
        if under is not None and under.fstype in VOLATILE_FSTYPES:
            return f"{m.mount_point} is an overlay whose changes live on {under.fstype}"
    return None


def probe_writable(directory: str, create: bool = True) -> str | None:
    """None when files can be created in ``directory`` (made if its parent exists, unless
    ``create`` is False), else why not."""
    try:
        if create:
            os.mkdir(directory, 0o750)
        elif not os.path.lexists(directory):
            return f"{directory} is missing"
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno == errno.ENOENT:
            return f"{directory} is missing and so is its parent"
        if e.errno == errno.EROFS:
            return f"{directory} is missing and its parent is on a read-only file system"
        return f"{directory} cannot be created ({e.strerror})"
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only file system"
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{directory} is not writable ({e.strerror})"
    return None


def probe_existing(directory: str) -> str | None:
    """probe_writable without creating anything: for diagnostics that must not change the box."""
    return probe_writable(directory, create=False)


def _candidates(cfg: Any, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    default_dir = os.path.dirname(configmod.StorageConfig().path)
    path_dir = os.path.dirname(os.path.abspath(cfg.storage.path))
    out = []
    if path_dir != default_dir:
        out.append((path_dir, "storage.path"))
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        out.append((state, "$STATE_DIRECTORY"))
    if path_dir == default_dir:
        out.append((path_dir, "storage.path"))
    if cfg.storage.fallback_path:
        out.append((os.path.abspath(cfg.storage.fallback_path), "storage.fallback_path"))
    seen, unique = set(), []
    for d, why in out:
        if d not in seen:
            seen.add(d)
            unique.append((d, why))
    return unique


def resolve_data_dir(cfg: Any, environ: Mapping[str, str] | None = None, *,
                     volatile_root: str = VOLATILE_ROOT, procfs: str | None = None,
                     probe: Callable[[str], str | None] = probe_writable) -> DataPath:
    """Choose the spool's directory; see the module docstring for the order. Raises DataPathError
    only when even the volatile fallback cannot be written."""
    env = os.environ if environ is None else environ
    db_name = os.path.basename(cfg.storage.path) or "metrics.db"
    mounts = _read_mounts(procfs or cfg.host.procfs)
    tried: list[tuple[str, str]] = []
    for directory, source in _candidates(cfg, env):
        problem = probe(directory) or volatility(directory, mounts)
        if problem is None:
            return DataPath(directory, os.path.join(directory, db_name), True, source, tuple(tried))
        tried.append((directory, problem))
    why = "; ".join(p for _, p in tried) or "no data directory configured"
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    for directory in dict.fromkeys(d for d in (runtime, volatile_root) if d):
        problem = probe(directory)
        if problem is None:
            return DataPath(directory, os.path.join(directory, db_name), False, why, tuple(tried))
        tried.append((directory, problem))
    raise DataPathError("no writable data directory: " + "; ".join(p for _, p in tried))


def _read_mounts(procfs: str) -> list[Mount]:
    try:
        with open(os.path.join(procfs, "self/mountinfo"), encoding="utf-8", errors="replace") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        return []  # persistence unknown: assume the disk is what it looks like
