"""The .deb on an arm64 Debian rootfs under qemu-user emulation: --version and collect --once.

binfmt_misc is mounted and qemu-aarch64 registered by the fixture, with the real
interpreter path and the F flag (feasibility §7: Debian's own P-flag line registers
but then fails to run anything), and undone afterwards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image import rootfs
from tests.image.conftest import run

# Building the arm64 root under emulation takes 4-5 minutes on a fresh machine: the long mode.
pytestmark = pytest.mark.long

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = "/usr/bin/qemu-aarch64-static"
ENTRY = "qemu-aarch64"
RULE = (r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
        r":\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
        f":{QEMU}:F")


@pytest.fixture(scope="module")
def binfmt_aarch64():
    if not Path(QEMU).is_file():
        pytest.fail(f"{QEMU} is missing: install qemu-user-static (scripts/test does)", pytrace=False)
    rootfs.require_root()
    mounted = registered = False
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT])
        mounted = True
    try:
        if not (BINFMT / ENTRY).exists():
            (BINFMT / "register").write_text(RULE)
            registered = True
        assert (BINFMT / ENTRY).read_text().startswith("enabled"), (BINFMT / ENTRY).read_text()
        yield
    finally:
        if registered:
            (BINFMT / ENTRY).write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)


@pytest.fixture(scope="module")
def arm64_root(binfmt_aarch64, tmp_path_factory):
    try:
        tarball = rootfs.rootfs_tarball("arm64", "essential", rootfs.ARM64_PACKAGES,
                                        dpkg_opts=rootfs.ARM64_DPKG_OPTS)
    except rootfs.RootfsError as e:
        pytest.fail(str(e), pytrace=False)
    dest = rootfs.extract(tarball, tmp_path_factory.mktemp("arm64") / "root")
    yield dest
    rootfs.remove_tree(dest)


def nspawn(root: Path, *argv: str, binds=(), timeout=300) -> subprocess.CompletedProcess:
    cmd = ["systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit",
           *[f"--bind-ro={src}:{dst}" for src, dst in binds], *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_deb_runs_on_arm64_under_emulation(arm64_root, layer):
    root = arm64_root
    assert nspawn(root, "uname", "-m").stdout.strip() == "aarch64"
    assert nspawn(root, "dpkg", "--print-architecture").stdout.strip() == "arm64"

    # Not /tmp: nspawn mounts a fresh tmpfs there.
    shutil.copy(layer.deb, root / "var/tmp" / layer.deb.name)
    inst = nspawn(root, "dpkg", "-i", f"/var/tmp/{layer.deb.name}")
    assert inst.returncode == 0, inst.stdout + inst.stderr
    status = nspawn(root, "dpkg-query", "-W", "-f=${Status}", "belabox-metrics").stdout
    assert status == "install ok installed"

    version = nspawn(root, "metrics-collector", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"metrics-collector {layer.version}"

    collect = nspawn(root, "metrics-collector", "collect", "--once")
    assert collect.returncode == 0, (collect.stdout + collect.stderr)[-2000:]
    samples = [line for line in collect.stdout.splitlines()
               if re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? -?[0-9.eE+-]+( \d+)?$", line)]
    assert len(samples) >= 10, collect.stdout[-2000:]
    assert any(s.startswith("node_") for s in samples)
    assert "Traceback" not in collect.stderr
