"""A file-backed ext4 on its own loop device, so the block layer's write count is one agent's.

    with LoopFs(workdir / "ours.img", workdir / "ours-mnt", options="noatime") as fs:
        before = fs.sectors_written()
        ...
        mb = (fs.sectors_written() - before) * 512 / 1e6

Sectors come from ``/sys/block/loopN/stat`` field 7 (sectors written, 512 bytes each, see the
kernel's Documentation/block/stat.rst): everything the filesystem sent to the device, its
journal and metadata included. mkfs initialises the inode tables and journal up front
(``lazy_itable_init=0,lazy_journal_init=0``); otherwise the kernel's ext4lazyinit thread
would zero them in the background after mount, and that would count as the agent's writes.
Needs root (losetup, mount). Everything set up is torn down by ``close``, also after errors.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SECTOR = 512
IMAGE_MB = 256
# mke2fs gives a filesystem this small 1 KiB blocks ("small" in mke2fs.conf); a card's data
# partition of gigabytes gets 4 KiB. Every journal block and every partly rewritten data block is
# a whole filesystem block, so small writes cost up to four times more bytes at 4 KiB: the
# card's block size is the honest one.
BLOCK_SIZE = 4096


class LoopFsError(RuntimeError):
    pass


def parse_block_stat(text: str) -> int:
    """Sectors written: field 7 of a /sys/block/<dev>/stat line."""
    fields = text.split()
    if len(fields) < 7:
        raise LoopFsError(f"unexpected block stat line: {text.strip()!r}")
    return int(fields[6])


def _run(*argv: str) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise LoopFsError(f"{argv[0]} not found (util-linux / e2fsprogs)") from None
    if r.returncode != 0:
        raise LoopFsError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


class LoopFs:
    def __init__(self, image: str | os.PathLike, mountpoint: str | os.PathLike, options: str = "",
                 size_mb: int = IMAGE_MB, sysfs: str = "/sys", block_size: int = BLOCK_SIZE):
        self.image = Path(image)
        self.mountpoint = Path(mountpoint)
        self.options = options  # "" = the kernel's defaults, as on a device's fstab "defaults"
        self.size_mb = size_mb
        self.sysfs = sysfs
        self.block_size = block_size
        self.device = ""
        self.mounted = False

    @property
    def label(self) -> str:
        return self.options or "defaults"

    def open(self) -> LoopFs:
        if os.geteuid() != 0:
            raise LoopFsError("loop devices need root (losetup, mount)")
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as fh:
            fh.truncate(self.size_mb * 1024 * 1024)
        try:
            self.device = _run("losetup", "--find", "--show", str(self.image)).strip()
            _run("mkfs.ext4", "-q", "-F", "-b", str(self.block_size), "-E",
                 "lazy_itable_init=0,lazy_journal_init=0", self.device)
            self.mountpoint.mkdir(parents=True, exist_ok=True)
            argv = ["mount", "-t", "ext4"] + (["-o", self.options] if self.options else [])
            _run(*argv, self.device, str(self.mountpoint))
            self.mounted = True
        except BaseException:
            self.close()
            raise
        return self

    def sectors_written(self) -> int:
        name = os.path.basename(self.device)
        with open(os.path.join(self.sysfs, "block", name, "stat"), encoding="ascii") as fh:
            return parse_block_stat(fh.read())

    def close(self) -> None:
        """Unmount and detach; each step is tried even when an earlier one failed."""
        errors = []
        if self.mounted:
            try:
                _run("umount", str(self.mountpoint))
                self.mounted = False
            except LoopFsError as e:
                try:  # a process we failed to stop still holds a file: detach it lazily
                    _run("umount", "-l", str(self.mountpoint))
                    self.mounted = False
                except LoopFsError:
                    errors.append(str(e))
        if self.device:
            try:
                _run("losetup", "-d", self.device)
                self.device = ""
            except LoopFsError as e:
                errors.append(str(e))
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass
        if errors:
            raise LoopFsError("; ".join(errors))

    def __enter__(self) -> LoopFs:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
