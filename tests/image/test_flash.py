"""scripts/flash: refusals, and the real write + read-back verify on a file posing as a disk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import REPO, run

FLASH = REPO / "scripts" / "flash"
MB = 1024 * 1024


def flash(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLASH), *map(str, args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def image(tmp_path) -> Path:
    img = tmp_path / "belabox.img"
    img.write_bytes(os.urandom(3 * MB + 4096))
    return img


def fake_disk(tmp_path, name="sdz", removable="1", sectors=16 * 2048, parts=()):
    """A sysfs tree describing one disk, and a regular file standing in for its device node."""
    sysfs = tmp_path / "sys"
    entry = sysfs / "block" / name
    entry.mkdir(parents=True)
    (entry / "removable").write_text(removable + "\n")
    (entry / "size").write_text(f"{sectors}\n")
    (entry / "device").mkdir()
    (entry / "device/model").write_text("SD Card Reader  \n")
    for p in parts:
        (entry / p).mkdir()
        (entry / p / "partition").write_text("1\n")
        (sysfs / "class/block" / p).mkdir(parents=True)
    dev = tmp_path / "dev" / name
    dev.parent.mkdir(exist_ok=True)
    dev.write_bytes(b"\0" * (sectors * 512))
    return sysfs, dev


def one_error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("flash: error: "), res.stderr
    return lines[0]


def test_refuses_a_plain_file_as_device(tmp_path, image):
    target = tmp_path / "not-a-disk.img"
    target.write_bytes(b"\0" * (8 * MB))
    line = one_error_line(flash(image, target, "--yes"))
    assert "is not a disk known to /sys/block" in line
    assert target.read_bytes() == b"\0" * (8 * MB)


def test_writes_and_verifies_on_a_removable_disk(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path)
    tail = dev.read_bytes()[image.stat().st_size:]
    res = flash(image, dev, "--yes", "--sysfs-root", sysfs)
    assert res.returncode == 0, res.stderr
    written = dev.read_bytes()
    assert written[:image.stat().st_size] == image.read_bytes()
    assert written[image.stat().st_size:] == tail, "bytes past the image must stay as they were"
    assert "verified: sha256 " in res.stderr
    assert "SD Card Reader" in res.stderr
    # Progress from dd status=progress (or pv when installed).
    assert "bytes" in res.stderr and "copied" in res.stderr or "pv" in res.stderr


def test_refuses_a_fixed_disk(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path, removable="0")
    line = one_error_line(flash(image, dev, "--yes", "--sysfs-root", sysfs))
    assert "not a removable or USB disk (removable=0)" in line
    assert dev.read_bytes() == b"\0" * dev.stat().st_size


def test_accepts_a_usb_disk_that_says_it_is_fixed(tmp_path, image):
    # USB SSDs report removable=0; their sysfs path runs through the USB bus.
    sysfs, dev = fake_disk(tmp_path, removable="0")
    real = sysfs / "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdz"
    real.parent.mkdir(parents=True)
    (sysfs / "block/sdz").rename(real)
    (sysfs / "block/sdz").symlink_to(real)
    res = flash(image, dev, "--yes", "--sysfs-root", sysfs)
    assert res.returncode == 0, res.stderr


def test_refuses_a_disk_smaller_than_the_image(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path, sectors=2048)
    assert "smaller than" in one_error_line(flash(image, dev, "--yes", "--sysfs-root", sysfs))


def test_refuses_a_partition(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path, parts=("sdz1",))
    part = dev.with_name("sdz1")
    part.write_bytes(b"\0" * MB)
    assert "is a partition; give the whole disk" in one_error_line(flash(image, part, "--yes", "--sysfs-root", sysfs))


def test_refuses_a_mounted_disk(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # A tmpfs whose source is the device path: /proc/self/mounts lists it as mounted.
    run(["mount", "-t", "tmpfs", "-o", "size=1m", str(dev), mnt])
    try:
        line = one_error_line(flash(image, dev, "--yes", "--sysfs-root", sysfs))
    finally:
        run(["umount", mnt])
    assert "is in use" in line and "mounted or used as swap" in line
    assert dev.read_bytes() == b"\0" * dev.stat().st_size


def test_asks_before_writing_and_will_not_ask_a_non_terminal(tmp_path, image):
    sysfs, dev = fake_disk(tmp_path)
    line = one_error_line(flash(image, dev, "--sysfs-root", sysfs))
    assert "pass --yes" in line



def card_image(tmp_path) -> Path:
    """A small partitioned image: a FAT boot partition, then a Linux one."""
    img = tmp_path / "card.img"
    run(["truncate", "-s", str(12 * MB), img])
    run(["sfdisk", "-q", img],
        input="label: dos\nunit: sectors\n\nstart=2048, size=8192, type=c\nstart=10240, type=83\n")
    boot = tmp_path / "boot.vfat"
    run(["mkfs.vfat", "-n", "BOOT", "-C", boot, "4096"])
    run(["dd", f"if={boot}", f"of={img}", "bs=512", "seek=2048", "conv=notrunc", "status=none"])
    return img


SEED = "token: flash-seed-token\ndevice_id: flashed-1\nremote:\n  url: https://vm.example/api/v1/import\n"


def test_seed_is_written_to_the_boot_partition_after_the_verify(tmp_path):
    img = card_image(tmp_path)
    sysfs, dev = fake_disk(tmp_path, sectors=16 * 2048)
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    res = flash(img, dev, "--yes", "--sysfs-root", sysfs, "--seed", seed)
    assert res.returncode == 0, res.stderr
    assert res.stderr.index("verified: sha256") < res.stderr.index("wrote belabox-metrics.yaml to the boot partition")
    got = run(["mtype", "-i", f"{dev}@@{2048 * 512}", "::/belabox-metrics.yaml"]).stdout
    assert got == SEED
    assert "flash-seed-token" not in res.stderr


def test_a_bad_seed_is_refused_before_the_card_is_written(tmp_path):
    img = card_image(tmp_path)
    sysfs, dev = fake_disk(tmp_path, sectors=16 * 2048)
    seed = tmp_path / "seed.yaml"
    seed.write_text("token: t\nremote:\n  urll: https://x.example/\n")
    line = one_error_line(flash(img, dev, "--yes", "--sysfs-root", sysfs, "--seed", seed))
    assert "seed refused: belabox-metrics.yaml: remote.urll: unknown key" in line
    assert dev.read_bytes() == b"\0" * dev.stat().st_size


def test_help_prints_the_usage_and_does_nothing():
    res = flash("--help")
    assert res.returncode == 0 and res.stdout.splitlines()[0].startswith("Write a raw disk image")
    assert "scripts/flash IMAGE DEVICE" in res.stdout and "--seed FILE" in res.stdout
