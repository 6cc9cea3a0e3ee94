"""The .deb with dpkg in a Debian 12 rootfs (chroot): install, upgrade keeping config edits, purge."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from tests.image.conftest import build_layer

PKG = "belabox-metrics"
CONFIG = "etc/belabox-metrics/config.yaml"
WANTS = "etc/systemd/system/multi-user.target.wants"


def chroot(root, *argv, check=True) -> subprocess.CompletedProcess:
    res = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                        "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    if check:
        assert res.returncode == 0, f"{' '.join(argv)}: rc {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def dpkg_install(root, deb):
    shutil.copy(deb, root / "tmp" / deb.name)
    res = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
    (root / "tmp" / deb.name).unlink()
    return res


def status(root) -> str:
    return chroot(root, "dpkg-query", "-W", "-f=${Status} ${Version}", PKG, check=False).stdout


@pytest.fixture
def chroot_root(fresh_root):
    """A rootfs prepared like an image builder's chroot: /proc mounted (systemd-tmpfiles needs it)."""
    root = fresh_root()
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)


def test_install_upgrade_purge(chroot_root, layer, tmp_path):
    root = chroot_root
    newer = build_layer(tmp_path / "newer", version=f"{layer.version}.1")

    # Install: user, folders and enablement from sysusers/tmpfiles/deb-systemd-helper.
    dpkg_install(root, layer.deb)
    assert status(root) == f"install ok installed {layer.version}"
    assert chroot(root, "dpkg", "--audit").stdout == ""
    passwd = (root / "etc/passwd").read_text()
    gid = int(next(x for x in passwd.splitlines() if x.startswith("metrics:")).split(":")[3])
    st = (root / CONFIG).stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
    st = (root / "var/lib/belabox-metrics").stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o750)
    assert (root / WANTS / "metrics-collector.service").is_symlink()
    assert (root / WANTS / "metrics-collector-firstboot.service").is_symlink()
    # py3compile ran: byte code exists for the shipped modules.
    assert list((root / "usr/lib/python3/dist-packages/belabox_metrics/commands/__pycache__").glob("cli.*.pyc"))
    version = chroot(root, "metrics-collector", "--version").stdout.strip()
    assert version == f"metrics-collector {layer.version}"
    check = chroot(root, "metrics-collector", "check-config", "--config", f"/{CONFIG}")
    assert "device_id: auto" in check.stdout

    # An operator's edit, then an upgrade: the conffile edit is kept, no prompt (stdin is closed).
    config = root / CONFIG
    edited = config.read_text().replace("collection_interval: 30s", "collection_interval: 15s")
    config.write_text(edited)
    dpkg_install(root, newer.deb)
    assert status(root) == f"install ok installed {newer.version}"
    assert config.read_text() == edited
    changelog = chroot(root, "zcat", f"/usr/share/doc/{PKG}/changelog.gz").stdout
    assert changelog.startswith(f"{PKG} ({newer.version})")
    assert chroot(root, "metrics-collector", "--version").returncode == 0
    (root / "etc/belabox-metrics/api-token").write_text("made-by-first-boot\n")
    (root / "var/lib/belabox-metrics/metrics.db").write_text("spool")

    # Remove keeps the conffile; purge leaves nothing of ours behind.
    chroot(root, "dpkg", "-r", PKG)
    assert status(root).startswith("deinstall ok config-files")
    assert config.exists()
    assert not (root / "usr/lib/python3/dist-packages/belabox_metrics").exists()
    chroot(root, "dpkg", "-P", PKG)
    assert status(root) == ""
    for gone in ("etc/belabox-metrics", "var/lib/belabox-metrics", "usr/lib/python3/dist-packages/belabox_metrics",
                 "usr/libexec/belabox-metrics", "usr/bin/metrics-collector",
                 f"{WANTS}/metrics-collector.service", f"{WANTS}/metrics-collector-firstboot.service",
                 "var/lib/systemd/deb-systemd-helper-enabled/metrics-collector.service.dsh-also"):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), f"/{gone} left after purge"
    leftovers = chroot(root, "find", "/etc", "/usr", "/var", "-name", "*belabox*", "-o",
                       "-name", "metrics-collector*").stdout.split()
    assert leftovers == []
    # The user stays (Debian practice: files it owned may survive elsewhere).
    assert "metrics:" in (root / "etc/passwd").read_text()
