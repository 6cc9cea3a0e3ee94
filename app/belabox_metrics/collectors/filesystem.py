"""Collector for mounted filesystems' size and inode use (node_exporter's ``filesystem``).

Mounts come from <procfs>/1/mountinfo (Documentation/filesystems/proc.rst, "3.5
/proc/<pid>/mountinfo"): PID 1's view, because the agent's own mount namespace is
read-only under systemd's ProtectSystem=strict and would mark every mount read-only.
Sizes come from statvfs() on the mount point joined to ``rootfs``. A statvfs that hangs
(a dead NFS server, a wedged USB stick) holds the collector until the runner gives up on
it; that mount is then skipped, with node_filesystem_device_error=1, for a growing number
of cycles, as node_exporter's "stuck mounts" are.
"""

from __future__ import annotations

import os
import re
import time

from belabox_metrics.collectors import Collector
from belabox_metrics.platform.files import OpenAttributes
from belabox_metrics.samples import Sample

# node_exporter 1.5's defaults (collector/filesystem_linux.go).
MOUNT_POINTS_EXCLUDE = re.compile(
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)")
FS_TYPES_EXCLUDE = re.compile(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660"
    r"|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$")
_OCTAL = re.compile(r"\\([0-7]{3})")
MAX_SKIP_CYCLES = 32


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mountinfo(text: str) -> list[tuple[str, str, str, bool]]:
    """[(device, mountpoint, fstype, read_only)] in file order; ``read_only`` is the
    per-mount ``ro`` option, as node_exporter reads it."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        try:
            sep = parts.index("-", 6)
        except ValueError:
            continue
        if len(parts) < sep + 3:
            continue
        options = parts[5].split(",")
        out.append((unescape(parts[sep + 2]), unescape(parts[4]), parts[sep + 1], "ro" in options))
    return out


def wanted(mountpoint: str, fstype: str) -> bool:
    return not MOUNT_POINTS_EXCLUDE.match(mountpoint) and not FS_TYPES_EXCLUDE.match(fstype)


class FilesystemCollector(Collector):
    name = "filesystem"

    def __init__(self, ctx, monotonic=time.monotonic, statvfs=os.statvfs):
        super().__init__(ctx)
        self._pid_dirs = (os.path.join(ctx.procfs, "1"), os.path.join(ctx.procfs, "self"))
        self._files = OpenAttributes(2)
        self._rootfs = ctx.rootfs
        cc = ctx.config.collectors
        self._slow_after = (cc.get(self.name).timeout or cc.default_timeout) / 2
        self._stuck: dict[str, tuple[int, int]] = {}  # mountpoint -> (cycles left, times stuck)
        self._monotonic = monotonic
        self._statvfs = statvfs
        self.problems: list[str] = []

    def _read_mounts(self) -> str:
        first, fallback = self._pid_dirs
        try:
            self._files.check(first)
            return self._files.read(first, "mountinfo").decode("utf-8", "replace")
        except (FileNotFoundError, PermissionError):
            self._files.check(fallback)  # hidepid=2 hides PID 1
            return self._files.read(fallback, "mountinfo").decode("utf-8", "replace")

    def collect(self) -> list[Sample]:
        self.problems = []
        out = []
        seen = set()
        for device, mountpoint, fstype, ro in parse_mountinfo(self._read_mounts()):
            if not wanted(mountpoint, fstype):
                continue
            labels = (("device", device), ("fstype", fstype), ("mountpoint", mountpoint))
            if labels in seen:
                continue
            seen.add(labels)
            out.extend(self._mount(labels, mountpoint, ro))
        return out

    def _mount(self, labels, mountpoint: str, ro: bool) -> list[Sample]:
        stuck = self._stuck.get(mountpoint)
        if stuck is not None:
            left, times = stuck
            if left > 0:
                self._stuck[mountpoint] = (left - 1, times)
                self.problems.append(f"{mountpoint}: statvfs was slow, skipped")
                return [Sample("node_filesystem_device_error", labels, 1.0)]
        t0 = self._monotonic()
        try:
            st = self._statvfs(os.path.join(self._rootfs, mountpoint.lstrip("/")))
        except OSError as e:
            self.problems.append(f"{mountpoint}: {e.strerror}")
            return [Sample("node_filesystem_device_error", labels, 1.0)]
        finally:
            elapsed = self._monotonic() - t0
            if elapsed > self._slow_after:
                times = (stuck[1] if stuck else 0) + 1
                self._stuck[mountpoint] = (min(2 ** (times - 1), MAX_SKIP_CYCLES), times)
            elif stuck is not None:
                del self._stuck[mountpoint]
        # f_bsize, as node_exporter uses; f_frsize equals it on every Linux filesystem in use here.
        bs = st.f_bsize
        return [
            Sample("node_filesystem_size_bytes", labels, float(st.f_blocks * bs)),
            Sample("node_filesystem_free_bytes", labels, float(st.f_bfree * bs)),
            Sample("node_filesystem_avail_bytes", labels, float(st.f_bavail * bs)),
            Sample("node_filesystem_files", labels, float(st.f_files)),
            Sample("node_filesystem_files_free", labels, float(st.f_ffree)),
            Sample("node_filesystem_readonly", labels, 1.0 if ro else 0.0),
            Sample("node_filesystem_device_error", labels, 0.0),
        ]

    def close(self) -> None:
        self._files.close()
