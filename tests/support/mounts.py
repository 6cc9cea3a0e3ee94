"""Small real filesystems for storage fault tests: a size-limited tmpfs, a loop-mounted ext4
that the kernel can be told to turn read-only (ext4's trigger_fs_error, as a failing SD card
does with errors=remount-ro). Needs root; a failure to mount fails the test with the reason.

    with tmpfs(path, size="1m"):              # unmounted on exit, also after a failure
        ...
    with ext4(tmp_path / "card.img", path) as fs:
        fs.fail()                             # the kernel remounts it read-only
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}", pytrace=False)


def umount(path: str | os.PathLike, lazy: bool = False) -> None:
    subprocess.run(["umount", *(["-l"] if lazy else []), str(path)], capture_output=True, timeout=60)


def mounted(path: str | os.PathLike) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], timeout=30).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", ro: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755{',ro' if ro else ''}", "tmpfs", str(path))
    try:
        yield path
    finally:
        # Lazy: a process we started may still hold a file there; it is killed by its own fixture.
        umount(path, lazy=True)


class Ext4:
    def __init__(self, image: Path, path: Path):
        self.image, self.path = image, path
        self.device = ""

    def mount(self, size_mb: int = 16) -> Ext4:
        self.path.mkdir(parents=True, exist_ok=True)
        _run("truncate", "-s", f"{size_mb}M", str(self.image))
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path))
        src = subprocess.run(["findmnt", "-no", "SOURCE", str(self.path)], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        self.device = os.path.basename(src)
        return self

    def fail(self) -> None:
        """What a failing card does: an ext4 error, after which the kernel remounts read-only."""
        trigger = Path("/sys/fs/ext4") / self.device / "trigger_fs_error"
        if not trigger.exists():
            pytest.fail(f"{trigger} is missing: this kernel cannot simulate an ext4 error", pytrace=False)
        trigger.write_text("chaos test: simulated card failure\n")

    def unmount(self) -> None:
        # Lazy: the agent under test holds files here until it notices; the loop device is
        # freed when the last of them closes.
        umount(self.path, lazy=True)


@contextlib.contextmanager
def ext4(image: Path, path: Path, size_mb: int = 16) -> Iterator[Ext4]:
    fs = Ext4(image, path).mount(size_mb)
    try:
        yield fs
    finally:
        while mounted(path):
            umount(path, lazy=True)
