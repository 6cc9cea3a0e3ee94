"""Debian root filesystems for the image tests: built once with mmdebstrap, cached as tarballs.

The cache key is the suite, architecture, variant, package list and mirror, so a changed
list builds a new tarball and a second run in the same session (or the next one) reuses
the old. The mirror is the one this machine's apt uses (the only archive the network
reaches here). Build and extraction need root, as do the chroot and nspawn steps.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
CACHE = Path(os.environ.get("BELABOX_IMAGE_CACHE", REPO / "var" / "cache" / "image"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"

# What the layer needs on a device: the .deb's Depends plus systemd to boot it.
PYTHON_DEPS = ("python3", "python3-yaml", "python3-psutil", "python3-requests", "python3-pyudev",
               "python3-jsonschema", "python3-sdnotify")
# procps: /bin/kill for the unit's ExecReload=.
AMD64_PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", *PYTHON_DEPS)
ARM64_PACKAGES = ("procps", *PYTHON_DEPS)


class RootfsError(RuntimeError):
    pass


def debian_mirror() -> str:
    """The Debian archive URL from /etc/apt/sources.list and sources.list.d (both formats)."""
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            texts.append((p.name, p.read_text()))
        except OSError:
            continue
    for name, text in texts:
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                suites = fields.get("Suites", "").split()
                for uri in fields.get("URIs", "").split():
                    if SUITE in suites and uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == SUITE and m.group(1).rstrip("/").endswith("/debian"):
                    return m.group(1).rstrip("/")
    return FALLBACK_MIRROR


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def require_root() -> None:
    if os.geteuid() != 0:
        raise RootfsError("the image tests build, chroot into and boot root filesystems: run them as root")


# Under emulation ca-certificates' postinst (an openssl run per certificate) takes a third of
# the arm64 build; the arm64 test makes no TLS connection, so the bundle is left out there.
ARM64_DPKG_OPTS = ("path-exclude=/usr/share/ca-certificates/mozilla/*",)


def rootfs_tarball(arch: str, variant: str, packages: tuple[str, ...], timeout: float = 900,
                   dpkg_opts: tuple[str, ...] = ()) -> Path:
    """A cached mmdebstrap tarball; built on first use (arm64 needs binfmt registered first)."""
    require_root()
    mirror = debian_mirror()
    key = hashlib.sha256(json.dumps([SUITE, arch, variant, sorted(packages), mirror, list(dpkg_opts)])
                         .encode()).hexdigest()[:16]
    tarball = CACHE / f"rootfs-{SUITE}-{arch}-{variant}-{key}.tar"
    with _locked(CACHE / f".{tarball.name}.lock"):
        if tarball.exists():
            return tarball
        partial = CACHE / f"partial-{os.getpid()}-{tarball.name}"
        argv = ["mmdebstrap", "--quiet", f"--arch={arch}", f"--variant={variant}",
                f"--include={','.join(packages)}", *[f"--dpkgopt={o}" for o in dpkg_opts],
                SUITE, str(partial), mirror]
        started = time.monotonic()
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise RootfsError(f"mmdebstrap {arch} did not finish in {timeout:g}s") from None
        if res.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join((res.stderr or res.stdout).splitlines()[-15:])
            raise RootfsError(f"mmdebstrap {arch} failed (rc {res.returncode}):\n{tail}")
        partial.rename(tarball)
        print(f"built {tarball.name} in {time.monotonic() - started:.0f}s")
    return tarball


def extract(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xpf", str(tarball)], check=True)
    _TARBALL_OF[dest] = tarball
    return dest


_TARBALL_OF: dict[Path, Path] = {}


def tarball_of(extracted: Path) -> Path:
    return _TARBALL_OF[extracted]


def overlay(lower: Path, dest: Path) -> bool:
    """Mount a copy-on-write view of ``lower`` at ``dest``; False when overlayfs is unavailable.
    The writable layer lives next to ``dest`` in ``<dest>.cow``."""
    cow = dest.with_name(dest.name + ".cow")
    (cow / "upper").mkdir(parents=True, exist_ok=True)
    (cow / "work").mkdir(exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                          f"lowerdir={lower},upperdir={cow}/upper,workdir={cow}/work", str(dest)],
                         capture_output=True, text=True)
    return res.returncode == 0


def remove_tree(path: Path) -> None:
    """rmtree that refuses to leave a mount behind (a failed test may have left one)."""
    if not path.exists():
        return
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = [m for m in mounts if m == str(path) or m.startswith(str(path) + "/")]
    for m in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
