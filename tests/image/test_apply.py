"""image/apply: a rootfs folder, and a raw partitioned .img edited without loop mounts."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import APPLY, run
from tests.image.test_firstboot import snapshot

UNIT = "usr/lib/systemd/system/metrics-collector.service"
WANTS = "etc/systemd/system/multi-user.target.wants"


def apply(*args, check=True) -> subprocess.CompletedProcess:
    return run([APPLY, *args], check=check, timeout=300)


def metrics_ids(passwd_text: str) -> tuple[int, int]:
    line = next(x for x in passwd_text.splitlines() if x.startswith("metrics:"))
    return int(line.split(":")[2]), int(line.split(":")[3])


def meta(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


# --- folders ------------------------------------------------------------------------------

def test_apply_to_a_rootfs_folder(fresh_root):
    root = fresh_root()
    res = apply(root)
    uid, gid = metrics_ids((root / "etc/passwd").read_text())
    assert meta(root / "etc/belabox-metrics") == (0, gid, 0o750)
    assert meta(root / "etc/belabox-metrics/config.yaml") == (0, gid, 0o640)
    assert meta(root / "var/lib/belabox-metrics") == (uid, gid, 0o750)
    assert meta(root / UNIT) == (0, 0, 0o644)
    assert meta(root / "usr/bin/metrics-collector") == (0, 0, 0o755)
    assert meta(root / "usr/libexec/belabox-metrics/firstboot") == (0, 0, 0o755)
    for unit in ("metrics-collector.service", "metrics-collector-firstboot.service",
                 "metrics-collector-provision.service"):
        assert os.readlink(root / WANTS / unit).endswith(f"/systemd/system/{unit}")
    assert (root / "usr/lib/python3/dist-packages/belabox_metrics/commands/cli.py").is_file()
    # The token is first boot's job: an image must not carry one shared by every device.
    assert not (root / "etc/belabox-metrics/api-token").exists()
    assert "done:" in res.stderr


def test_applying_twice_changes_nothing_and_keeps_an_edited_config(fresh_root):
    root = fresh_root()
    apply(root)
    config = root / "etc/belabox-metrics/config.yaml"
    config.write_text(config.read_text().replace('url: ""', 'url: "https://vm.example.org/api/v1/import"'))
    before = snapshot(root)
    res = apply(root)
    assert snapshot(root) == before
    assert "keeping the existing /etc/belabox-metrics/config.yaml" in res.stderr
    assert "vm.example.org" in config.read_text()


def test_board_overlay_is_added(fresh_root):
    root = fresh_root()
    apply(root, "--board", "jetson-nano")
    conf = root / "usr/lib/tmpfiles.d/belabox-metrics-jetson-nano.conf"
    assert meta(conf) == (0, 0, 0o644)
    assert "ina3221x" in conf.read_text()


def test_unknown_board_is_one_clear_line(fresh_root):
    res = apply(fresh_root(), "--board", "raspberry-pi", check=False)
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0
    assert "no board overlay overlays/raspberry-pi" in res.stderr and "jetson-nano" in res.stderr


@pytest.mark.parametrize("target", ["/", "/."])
def test_refuses_the_hosts_root(target):
    res = apply(target, check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == f"apply: error: {os.path.realpath(target)} is the host's root filesystem; " \
                                 "give the folder of an image's root filesystem"


def test_refuses_a_root_with_proc_mounted(fresh_root):
    root = fresh_root()
    run(["mount", "-t", "proc", "proc", root / "proc"])
    try:
        res = apply(root, check=False)
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)
    assert res.returncode != 0
    assert "has /proc mounted, so it looks like a running system" in res.stderr
    assert not (root / UNIT).exists()


def test_refuses_a_folder_that_is_no_rootfs(tmp_path):
    res = apply(tmp_path, check=False)
    assert res.returncode != 0
    assert "does not look like a root filesystem" in res.stderr


# --- raw images ------------------------------------------------------------------------------

SECTOR = 512
BOOT_START, BOOT_SIZE = 2048, 65536          # 32 MiB FAT
ROOT_START, ROOT_SIZE = 67584, 1433600       # 700 MiB ext4
DATA_START, DATA_SIZE = 1501184, 65536       # 32 MiB ext4


def make_disk(tmp_path: Path, rootdir: Path, with_decoy: bool = False) -> Path:
    """GPT disk: boot (vfat), rootfs (ext4 from rootdir, label bbroot), optional decoy ext4."""
    disk = tmp_path / "disk.img"
    run(["truncate", "-s", f"{(DATA_START + DATA_SIZE + 2048) * SECTOR}", disk])
    table = ["label: gpt", "unit: sectors", "",
             f"start={BOOT_START}, size={BOOT_SIZE}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=boot",
             f"start={ROOT_START}, size={ROOT_SIZE}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs"]
    if with_decoy:
        table.append(f"start={DATA_START}, size={DATA_SIZE}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data")
    run(["sfdisk", "-q", disk], input="\n".join(table) + "\n")
    boot = tmp_path / "boot.vfat"
    run(["mkfs.vfat", "-n", "BOOT", "-C", boot, str(BOOT_SIZE // 2)])
    parts = [(boot, BOOT_START)]
    root = tmp_path / "root.ext4"
    run(["mke2fs", "-q", "-t", "ext4", "-d", rootdir, "-L", "bbroot", root, f"{ROOT_SIZE // 2}k"], timeout=300)
    parts.append((root, ROOT_START))
    if with_decoy:
        payload = tmp_path / "decoy"
        (payload / "etc").mkdir(parents=True)
        (payload / "usr").mkdir()
        (payload / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        decoy = tmp_path / "data.ext4"
        run(["mke2fs", "-q", "-t", "ext4", "-d", payload, "-L", "data", decoy, f"{DATA_SIZE // 2}k"])
        parts.append((decoy, DATA_START))
    for img, start in parts:
        run(["dd", f"if={img}", f"of={disk}", f"bs={SECTOR}", f"seek={start}", "conv=notrunc,sparse",
             "status=none"], timeout=300)
        img.unlink()
    return disk


def debugfs(spec: str, request: str) -> str:
    res = run(["debugfs", "-R", request, spec])
    return res.stdout


def image_meta(spec: str, path: str) -> tuple[str, int, int]:
    """(octal mode, uid, gid) of one path inside the image, from debugfs stat."""
    out = debugfs(spec, f"stat {path}")
    m = re.search(r"Mode:\s+(\d+).*?User:\s+(\d+)\s+Group:\s+(\d+)", out, re.S)
    assert m, f"{path} not in image:\n{out}"
    kind = re.search(r"Type: (\w+)", out).group(1)
    return f"{kind}:{m.group(1)}", int(m.group(2)), int(m.group(3))


@pytest.fixture
def disk(tmp_path, fresh_root):
    return make_disk(tmp_path, fresh_root())


@pytest.mark.long  # a full image write or a 1M backlog: `scripts/test --long` (CI runs it too)
def test_apply_to_a_raw_image_without_mounting_it(disk):
    res = apply(disk, "--board", "rk3588-rock5b")
    assert "debugfs, no mount" in res.stderr and "verified" in res.stderr
    assert re.search(r"\d+/\d+", res.stderr), "no progress shown"
    assert run(["losetup", "-j", disk]).stdout == ""
    spec = f"{disk}?offset={ROOT_START * SECTOR}"
    uid, gid = metrics_ids(debugfs(spec, "cat /etc/passwd"))
    assert f"metrics:x:{gid}:" in debugfs(spec, "cat /etc/group")
    assert "metrics:" in debugfs(spec, "cat /etc/shadow")
    assert image_meta(spec, "/etc/belabox-metrics") == ("directory:0750", 0, gid)
    assert image_meta(spec, "/etc/belabox-metrics/config.yaml") == ("regular:0640", 0, gid)
    assert image_meta(spec, "/var/lib/belabox-metrics") == ("directory:0750", uid, gid)
    assert image_meta(spec, f"/{UNIT}") == ("regular:0644", 0, 0)
    assert image_meta(spec, "/usr/libexec/belabox-metrics/firstboot") == ("regular:0755", 0, 0)
    assert image_meta(spec, "/usr/bin/metrics-collector") == ("regular:0755", 0, 0)
    assert image_meta(spec, "/usr/lib/systemd/system/metrics-collector.service.d/50-rk3588-rock5b.conf") \
        == ("regular:0644", 0, 0)
    link = debugfs(spec, f"stat /{WANTS}/metrics-collector.service")
    assert 'Fast link dest: "/usr/lib/systemd/system/metrics-collector.service"' in link
    # Existing system directories keep their metadata.
    assert image_meta(spec, "/etc") == ("directory:0755", 0, 0)
    assert image_meta(spec, "/etc/shadow")[0] == "regular:0640"
    fsck = subprocess.run(["e2fsck", "-fn", spec], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # The unit file in the image is the overlay's, byte for byte.
    unit_text = (Path(APPLY).parents[1] / "overlays/common" / UNIT).read_text()
    assert debugfs(spec, f"cat /{UNIT}") == unit_text

    seed = disk.with_name("seed.yaml")
    seed.write_text("token: image-seed\ndevice_id: imaged-1\n")
    again = apply(disk, "--seed", seed)
    assert "keeping the existing /etc/belabox-metrics/config.yaml" in again.stderr
    assert metrics_ids(debugfs(spec, "cat /etc/passwd")) == (uid, gid)
    # The seed went to the FAT boot partition (mtools, no mount), not into the root.
    assert run(["mtype", "-i", f"{disk}@@{BOOT_START * SECTOR}", "::/belabox-metrics.yaml"]).stdout == seed.read_text()


@pytest.mark.long  # a full image write or a 1M backlog: `scripts/test --long` (CI runs it too)
def test_root_partition_by_label_or_number(tmp_path, fresh_root):
    disk = make_disk(tmp_path, fresh_root(), with_decoy=True)
    res = apply(disk, check=False)
    assert res.returncode != 0
    assert "several root candidates (partitions 2 3 )" in res.stderr
    by_label = apply(disk, "--root-label", "bbroot")
    assert "partition 2" in by_label.stderr
    by_number = apply(disk, "--partition", "2")
    assert "partition 2" in by_number.stderr
    # The GPT partition name works too, and a missing one is a clear error.
    assert "partition 2" in apply(disk, "--root-label", "rootfs").stderr
    missing = apply(disk, "--root-label", "nope", check=False)
    assert missing.returncode != 0 and "no partition or filesystem labelled 'nope'" in missing.stderr
    decoy = f"{disk}?offset={DATA_START * SECTOR}"
    assert "metrics" not in debugfs(decoy, "cat /etc/passwd")


def test_refuses_an_image_attached_to_a_loop_device(disk):
    loop = run(["losetup", "--find", "--show", "--read-only", disk]).stdout.strip()
    try:
        res = apply(disk, check=False)
    finally:
        run(["losetup", "-d", loop])
    assert res.returncode != 0
    assert f"is attached to {loop}" in res.stderr


@pytest.mark.long  # a full image write or a 1M backlog: `scripts/test --long` (CI runs it too)
def test_apply_to_a_bare_filesystem_image(tmp_path, fresh_root):
    img = tmp_path / "root.ext4"
    run(["mke2fs", "-q", "-t", "ext4", "-d", fresh_root(), img, "700M"], timeout=300)
    res = apply(img)
    assert "the whole image" in res.stderr
    assert image_meta(str(img), f"/{UNIT}") == ("regular:0644", 0, 0)


def test_apply_through_a_loop_mount(disk):
    res = apply(disk, "--loop")
    assert "copying" in res.stderr and "debugfs" not in res.stderr
    assert run(["losetup", "-j", disk]).stdout == "", "loop device left attached"
    assert str(disk) not in Path("/proc/self/mounts").read_text()
    spec = f"{disk}?offset={ROOT_START * SECTOR}"
    uid, gid = metrics_ids(debugfs(spec, "cat /etc/passwd"))
    assert image_meta(spec, "/etc/belabox-metrics/config.yaml") == ("regular:0640", 0, gid)
    assert image_meta(spec, "/var/lib/belabox-metrics") == ("directory:0750", uid, gid)
    assert subprocess.run(["e2fsck", "-fn", spec], capture_output=True).returncode == 0


# --- run-time checks, --seed, --help ---------------------------------------------------------

def test_refuses_a_root_without_python3_one_line_per_missing_piece(fresh_root):
    root = fresh_root()
    for p in (root / "usr/bin").glob("python3*"):
        p.unlink()
    shutil.rmtree(root / "usr/lib/python3/dist-packages/sdnotify")
    res = apply(root, check=False)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert lines == [f"apply: error: {root}: no python3 in usr/bin (the agent needs python3 >= 3.10)",
                     f"apply: error: {root}: no Python module sdnotify in usr/lib/python3/dist-packages "
                     "(Debian package python3-sdnotify)"], res.stderr
    assert not (root / UNIT).exists(), "nothing may be changed"


def test_refuses_an_old_systemd(fresh_root):
    root = fresh_root()
    libs = list((root / "usr/lib").glob("**/systemd/libsystemd-shared-*.so"))
    assert libs
    for p in libs:
        p.rename(p.with_name("libsystemd-shared-247.so"))
    res = apply(root, check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == f"apply: error: {root}: systemd 247 is older than 250 " \
                                 "(LoadCredential= with SetCredential= fallbacks)"


def test_seed_goes_to_a_folders_boot_firmware(fresh_root, tmp_path):
    root = fresh_root()
    (root / "boot/firmware").mkdir(parents=True, exist_ok=True)
    seed = tmp_path / "seed.yaml"
    seed.write_text("token: apply-seed\ndevice_id: applied-1\n")
    res = apply(root, "--seed", seed)
    assert (root / "boot/firmware/belabox-metrics.yaml").read_text() == seed.read_text()
    assert "apply-seed" not in res.stderr
    seed.write_text("token: [\n")
    res = apply(root, "--seed", seed, check=False)
    assert res.returncode != 0 and "seed refused: belabox-metrics.yaml: YAML syntax error" in res.stderr


def test_help_prints_the_usage_and_does_nothing():
    res = subprocess.run([str(APPLY), "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("Apply the metrics-collector layer")
    assert "--seed FILE" in res.stdout and "python3 >= 3.10" in res.stdout
