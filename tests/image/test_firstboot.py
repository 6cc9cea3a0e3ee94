"""scripts/firstboot in a Debian rootfs (chroot): provisioning, idempotence, half-runs, read-only /etc."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import APPLY, run

FIRSTBOOT = "/usr/libexec/belabox-metrics/firstboot"
TOKEN = "etc/belabox-metrics/api-token"
STATE_TOKEN = "var/lib/belabox-metrics/api-token"
MARKER = "var/lib/belabox-metrics/.firstboot-done"
WANTS = "etc/systemd/system/multi-user.target.wants/metrics-collector.service"


def firstboot(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["chroot", str(root), FIRSTBOOT, *args], capture_output=True, text=True, timeout=60)
    # One tagged line per action, nothing else.
    for line in (res.stdout + res.stderr).splitlines():
        assert line.startswith(("[INFO] ", "[ERROR] ")), f"untagged output line: {line!r}"
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def files_only(root: Path, layer) -> Path:
    """The layer's files without sysusers/tmpfiles/enablement: what a plain copy leaves."""
    run(["tar", "-C", root, "-xpf", layer.tar])
    return root


def ids(root: Path, name: str = "metrics") -> tuple[int, int] | None:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2]), int(f[3])
    return None


def snapshot(root: Path) -> dict:
    """Everything first boot may touch: account files, our folders, the enablement links."""
    out = {}
    for rel in ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"):
        out[rel] = (root / rel).read_bytes()
    for top in ("etc/belabox-metrics", "var/lib/belabox-metrics", "etc/systemd/system"):
        for p in sorted([root / top, *(root / top).rglob("*")]):
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid)
            else:
                out[rel] = ("file", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def meta(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_provisions_once_and_a_second_run_changes_nothing(fresh_root, layer):
    root = files_only(fresh_root(), layer)
    assert ids(root) is None
    first = firstboot(root)
    uid, gid = ids(root)
    assert "created user metrics with systemd-sysusers" in first.stdout
    home, shell = (root / "etc/passwd").read_text().split(f"metrics:x:{uid}:{gid}:")[1].splitlines()[0].split(":")[1:]
    assert home == "/" and shell.endswith("nologin")
    token = (root / TOKEN).read_text()
    assert token.endswith("\n") and len(base64.b64decode(token.strip(), validate=True)) == 32
    assert meta(root / TOKEN) == (0, gid, 0o600)
    assert meta(root / "etc/belabox-metrics") == (0, gid, 0o750)
    assert meta(root / "var/lib/belabox-metrics") == (uid, gid, 0o750)
    assert (root / MARKER).is_file()
    assert os.readlink(root / WANTS).endswith("/metrics-collector.service")
    assert not list((root / "etc/belabox-metrics").glob(".api-token.*"))

    before = snapshot(root)
    second = firstboot(root)
    assert snapshot(root) == before
    assert "API token already provisioned" in second.stdout
    assert "created" not in second.stdout and "enabled metrics" not in second.stdout


def test_a_provisioned_token_is_kept(fresh_root, layer):
    root = fresh_root()
    run([APPLY, root])
    (root / TOKEN).write_text("operator-provisioned-token\n")
    os.chmod(root / TOKEN, 0o644)
    out = firstboot(root).stdout
    assert (root / TOKEN).read_text() == "operator-provisioned-token\n"
    assert meta(root / TOKEN) == (0, ids(root)[1], 0o600), "the guide's 0600 root:metrics is restored"
    assert "kept" in out
    assert not (root / STATE_TOKEN).exists()


def test_a_failed_half_run_is_finished_by_the_next_run(fresh_root, layer):
    root = fresh_root()
    run([APPLY, root])
    # An interrupted token write and a unit that cannot be enabled yet.
    (root / "etc/belabox-metrics/.api-token.Zx81Qa").write_text("partial")
    unit = root / "usr/lib/systemd/system/metrics-collector.service"
    saved = unit.read_bytes()
    (root / WANTS).unlink()
    unit.unlink()
    res = firstboot(root, check=False)
    assert res.returncode != 0
    assert "[ERROR]" in res.stderr
    assert not (root / MARKER).exists(), "the done-marker must be written last"
    token = (root / TOKEN).read_text()
    assert not (root / "etc/belabox-metrics/.api-token.Zx81Qa").exists()

    unit.write_bytes(saved)
    firstboot(root)
    assert (root / MARKER).is_file()
    assert (root / TOKEN).read_text() == token, "the token of the failed run is kept"
    assert os.path.islink(root / WANTS)


def test_useradd_is_the_fallback_without_sysusers_config(fresh_root, layer):
    root = files_only(fresh_root(), layer)
    (root / "usr/lib/sysusers.d/belabox-metrics.conf").unlink()
    out = firstboot(root).stdout
    assert "with useradd" in out
    uid, gid = ids(root)
    assert uid < 1000
    line = next(x for x in (root / "etc/passwd").read_text().splitlines() if x.startswith("metrics:"))
    assert line.split(":")[5] == "/" and line.split(":")[6].endswith("nologin")
    assert meta(root / TOKEN) == (0, gid, 0o600)


@pytest.fixture
def readonly_etc(fresh_root):
    root = fresh_root()
    run([APPLY, root])
    etc = root / "etc"
    run(["mount", "--bind", etc, etc])
    try:
        run(["mount", "-o", "remount,bind,ro", etc])
        yield root
    finally:
        subprocess.run(["umount", str(etc)], check=False)


def test_read_only_etc_puts_the_token_in_the_state_folder(readonly_etc):
    root = readonly_etc
    before = snapshot(root)
    out = firstboot(root).stdout
    gid = ids(root)[1]
    assert not (root / TOKEN).exists()
    assert meta(root / STATE_TOKEN) == (0, gid, 0o600)
    assert len(base64.b64decode((root / STATE_TOKEN).read_text().strip())) == 32
    assert f"created API token /{STATE_TOKEN.rsplit('/', 1)[0]}/api-token" in out
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k.startswith("etc/")} == \
           {k: v for k, v in before.items() if k.startswith("etc/")}
    # Again: the state token counts as provisioned.
    again = firstboot(root).stdout
    assert "already provisioned in /var/lib/belabox-metrics/api-token" in again


def test_first_boot_links_the_device_trees_board_drop_ins(fresh_root, layer):
    root = fresh_root()
    run([APPLY, root])
    dt = root / "tmp/fakeproc/device-tree"
    dt.mkdir(parents=True)
    (dt / "compatible").write_bytes(b"radxa,rock-5b\0rockchip,rk3588\0")
    res = firstboot(root, "--procfs", "/tmp/fakeproc")
    dropin = root / "etc/systemd/system/metrics-collector.service.d/50-rk3588-rock5b.conf"
    assert os.readlink(dropin) == "/usr/lib/belabox-metrics/boards/rk3588-rock5b/usr/lib/systemd/system/" \
                                  "metrics-collector.service.d/50-rk3588-rock5b.conf"
    assert (root / os.readlink(dropin).lstrip("/")).is_file()
    assert "board rk3588-rock5b: linked" in res.stdout
    assert not (root / "etc/tmpfiles.d/belabox-metrics-jetson-nano.conf").exists(), "another board's drop-in"
    (root / MARKER).unlink()
    again = firstboot(root, "--procfs", "/tmp/fakeproc")
    assert "board rk3588-rock5b: drop-ins already linked" in again.stdout
