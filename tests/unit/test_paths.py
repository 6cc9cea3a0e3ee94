"""Data directory resolution: order of candidates, read-only and volatile detection, fallback.

The first half drives the logic with an injected writability probe and a written
mountinfo. The second half uses real mounts made by the test (tests run as root, and root
ignores mode bits, so "read-only" has to be a read-only mount): a read-only tmpfs, a
read-only bind mount, an overlay over tmpfs like overlayroot, and a loop-mounted ext4.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from belabox_metrics import config
from belabox_metrics.spool.location import (
    DataPathError,
    mount_of,
    parse_mountinfo,
    probe_existing,
    probe_writable,
    resolve_data_dir,
    volatility,
)

MOUNTINFO_DISK = """\
22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=400000k,mode=755
30 22 179:3 / /data rw,noatime shared:9 - ext4 /dev/mmcblk0p3 rw
"""

# overlayroot (belabox-image.md §5.1): / is an overlay whose upper layer is a tmpfs.
MOUNTINFO_OVERLAYROOT = """\
22 1 0:30 / / rw,relatime shared:1 - overlay overlayroot rw,lowerdir=/media/root-ro,\
upperdir=/media/root-rw/overlay,workdir=/media/root-rw/overlay-workdir/_
23 22 179:2 / /media/root-ro ro,relatime shared:2 - ext4 /dev/mmcblk0p2 ro
24 22 0:29 / /media/root-rw rw,relatime shared:3 - tmpfs tmpfs-root rw
30 22 179:3 / /data rw,noatime shared:9 - ext4 /dev/mmcblk0p3 rw
"""


def fake_procfs(tmp_path: Path, mountinfo: str) -> str:
    d = tmp_path / "proc" / "self"
    d.mkdir(parents=True)
    (d / "mountinfo").write_text(mountinfo)
    return str(tmp_path / "proc")


def cfg(path: str = "/var/lib/belabox-metrics/metrics.db", fallback: str = "") -> config.Config:
    return config.Config(storage=config.StorageConfig(path=path, fallback_path=fallback))


def probe_from(problems: dict[str, str]):
    calls: list[str] = []

    def probe(d: str) -> str | None:
        calls.append(d)
        return problems.get(d)
    probe.calls = calls  # type: ignore[attr-defined]
    return probe


# --- logic ----------------------------------------------------------------------------------------

def test_state_directory_first_entry_wins(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    dp = resolve_data_dir(cfg(), {"STATE_DIRECTORY": "/var/lib/belabox-metrics:/var/lib/other"},
                          procfs=procfs, probe=probe_from({}))
    assert (dp.dir, dp.db_path, dp.persistent, dp.reason) == (
        "/var/lib/belabox-metrics", "/var/lib/belabox-metrics/metrics.db", True, "$STATE_DIRECTORY")


def test_storage_path_folder_without_systemd(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    dp = resolve_data_dir(cfg(), {}, procfs=procfs, probe=probe_from({}))
    assert (dp.dir, dp.persistent, dp.reason) == ("/var/lib/belabox-metrics", True, "storage.path")


def test_explicit_storage_path_beats_state_directory(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    dp = resolve_data_dir(cfg("/data/spool/m.db"), {"STATE_DIRECTORY": "/var/lib/belabox-metrics"},
                          procfs=procfs, probe=probe_from({}))
    assert (dp.dir, dp.db_path, dp.reason) == ("/data/spool", "/data/spool/m.db", "storage.path")


def test_read_only_state_dir_falls_back_to_fallback_path(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    probe = probe_from({"/var/lib/belabox-metrics": "/var/lib/belabox-metrics is on a read-only file system"})
    dp = resolve_data_dir(cfg(fallback="/data/belabox-metrics"), {"STATE_DIRECTORY": "/var/lib/belabox-metrics"},
                          procfs=procfs, probe=probe)
    assert (dp.dir, dp.persistent, dp.reason) == ("/data/belabox-metrics", True, "storage.fallback_path")
    assert probe.calls == ["/var/lib/belabox-metrics", "/data/belabox-metrics"]  # the same folder once
    assert dp.tried == (("/var/lib/belabox-metrics", "/var/lib/belabox-metrics is on a read-only file system"),)


def test_overlayroot_is_writable_but_not_persistent(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_OVERLAYROOT)
    dp = resolve_data_dir(cfg(fallback="/data/belabox-metrics"), {}, procfs=procfs, probe=probe_from({}))
    assert (dp.dir, dp.persistent) == ("/data/belabox-metrics", True)
    assert "overlay whose changes live in RAM" in dp.tried[0][1]


def test_nothing_persistent_goes_volatile_with_reason(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_OVERLAYROOT)
    vol = str(tmp_path / "run")
    dp = resolve_data_dir(cfg(), {}, procfs=procfs, volatile_root=vol, probe=probe_from({}))
    assert (dp.dir, dp.db_path, dp.persistent) == (vol, vol + "/metrics.db", False)
    assert "/var/lib/belabox-metrics" not in dp.dir and "RAM" in dp.reason


def test_runtime_directory_preferred_for_volatile(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    probe = probe_from({"/var/lib/belabox-metrics": "/var/lib/belabox-metrics is missing and so is its parent"})
    dp = resolve_data_dir(cfg(), {"RUNTIME_DIRECTORY": "/run/belabox-metrics"}, procfs=procfs,
                          volatile_root="/elsewhere", probe=probe)
    assert (dp.dir, dp.persistent) == ("/run/belabox-metrics", False)
    assert dp.reason == "/var/lib/belabox-metrics is missing and so is its parent"


def test_nothing_writable_is_one_clear_line(tmp_path):
    procfs = fake_procfs(tmp_path, MOUNTINFO_DISK)
    probe = probe_from({"/var/lib/belabox-metrics": "A is read-only", "/run/x": "B is read-only"})
    with pytest.raises(DataPathError) as e:
        resolve_data_dir(cfg(), {}, procfs=procfs, volatile_root="/run/x", probe=probe)
    assert str(e.value) == "no writable data directory: A is read-only; B is read-only"


def test_parse_mountinfo_and_mount_of():
    mounts = parse_mountinfo(MOUNTINFO_DISK + "garbage line\n"
                             "40 30 179:3 /x /data/my\\040dir rw - ext4 /dev/sdb1 rw\n"
                             "41 30 0:50 / /data rw - tmpfs tmpfs rw\n")
    assert [m.mount_point for m in mounts] == ["/", "/run", "/data", "/data/my dir", "/data"]
    assert mount_of("/data/my dir/a", mounts).source == "/dev/sdb1"
    assert mount_of("/data/belabox", mounts).fstype == "tmpfs"  # the topmost of two at /data
    assert mount_of("/database", mounts).mount_point == "/"
    assert volatility("/run/belabox-metrics", mounts) == "/run is tmpfs"


# --- real mounts (every storage.path points into tmp_path: never probe the host's /var/lib) ---

@pytest.fixture
def mounts():
    made: list[str] = []

    def mount(*args: str) -> None:
        target = args[-1]
        r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"mount {' '.join(args)} failed (tests need root): {r.stderr.strip()}"
        made.append(target)

    yield mount
    for target in reversed(made):
        subprocess.run(["umount", target], capture_output=True, timeout=30)


def test_read_only_tmpfs_detected(tmp_path, mounts):
    ro = tmp_path / "state"
    ro.mkdir()
    mounts("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro))
    assert probe_writable(str(ro)) == f"{ro} is on a read-only file system"
    vol = tmp_path / "run"
    dp = resolve_data_dir(cfg(str(ro / "metrics.db")), {"STATE_DIRECTORY": str(ro)}, volatile_root=str(vol))
    assert dp.dir == str(vol) and not dp.persistent and os.path.isdir(vol)
    assert "read-only" in dp.reason


def test_read_only_bind_mount_detected(tmp_path, mounts):
    d = tmp_path / "data"
    d.mkdir()
    mounts("--bind", str(d), str(d))
    mounts("-o", "remount,ro,bind", str(d))
    assert "read-only" in probe_writable(str(d))
    assert "read-only" in probe_writable(str(d / "belabox-metrics"))  # cannot create the folder either


def test_overlay_over_tmpfs_detected_as_volatile(tmp_path, mounts):
    ram, merged, lower = tmp_path / "ram", tmp_path / "merged", tmp_path / "lower"
    for p in (ram, merged, lower):
        p.mkdir()
    mounts("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(ram))
    (ram / "upper").mkdir()
    (ram / "work").mkdir()
    mounts("-t", "overlay", "overlay", "-o",
           f"lowerdir={lower},upperdir={ram}/upper,workdir={ram}/work", str(merged))
    state = merged / "var-lib-belabox-metrics"
    assert probe_writable(str(state)) is None  # writable ...
    vol = tmp_path / "run"
    dp = resolve_data_dir(cfg(str(state / "metrics.db")), {"STATE_DIRECTORY": str(state)},
                          volatile_root=str(vol))
    assert not dp.persistent and dp.dir == str(vol)  # ... but lost on reboot
    assert f"{merged} is an overlay whose changes live on tmpfs" in dp.reason


def test_persistent_ext4_accepted_and_folder_created(tmp_path, mounts):
    img, mnt = tmp_path / "data.img", tmp_path / "data"
    mnt.mkdir()
    with open(img, "wb") as fh:
        fh.truncate(8 << 20)
    r = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mounts("-o", "loop", str(img), str(mnt))
    missing = tmp_path / "no/such"
    dp = resolve_data_dir(cfg(str(missing / "metrics.db"), fallback=str(mnt / "belabox-metrics")),
                          {"STATE_DIRECTORY": str(missing)}, volatile_root=str(tmp_path / "run"))
    assert (dp.dir, dp.persistent) == (str(mnt / "belabox-metrics"), True)
    assert os.path.isdir(mnt / "belabox-metrics")
    assert dp.tried == ((str(missing), f"{missing} is missing and so is its parent"),)
    assert os.listdir(mnt / "belabox-metrics") == []  # the probe file is gone


def test_probe_existing_creates_nothing(tmp_path):
    missing = tmp_path / "belabox-metrics"
    assert probe_existing(str(missing)) == f"{missing} is missing" and not missing.exists()
    missing.mkdir()
    assert probe_existing(str(missing)) is None and os.listdir(missing) == []
