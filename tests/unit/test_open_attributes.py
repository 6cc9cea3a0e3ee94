"""OpenAttributes: fds kept open, fresh values, and never a stale fd for a new device."""

from __future__ import annotations

import os
import shutil

import pytest

from belabox_metrics.platform.files import OpenAttributes


def test_values_are_reread_and_replaced_devices_are_reopened(tmp_path):
    dev = tmp_path / "wwan0"
    (dev / "statistics").mkdir(parents=True)
    (dev / "statistics/rx_bytes").write_text("100\n")
    files = OpenAttributes()
    assert files.check(str(dev))
    assert files.read_int(str(dev), "statistics/rx_bytes") == 100
    with open(dev / "statistics/rx_bytes", "r+") as fh:  # the kernel updates in place
        fh.write("250\n")
    assert files.read_int(str(dev), "statistics/rx_bytes") == 250

    # Unplugged: the directory is gone, check() says so and drops the fds.
    shutil.rmtree(dev)
    assert not files.check(str(dev))
    # Replugged under the same name: a new directory, a new inode, the new device's values.
    (dev / "statistics").mkdir(parents=True)
    (dev / "statistics/rx_bytes").write_text("7\n")
    assert files.check(str(dev))
    assert files.read_int(str(dev), "statistics/rx_bytes") == 7
    files.close()


def test_missing_attribute_raises_and_optional_readers_return_none(tmp_path):
    files = OpenAttributes()
    files.check(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        files.read(str(tmp_path), "speed")
    assert files.read_optional(str(tmp_path), "speed") is None
    (tmp_path / "speed").write_text("-1\n")
    assert files.read_int(str(tmp_path), "speed") == -1
    (tmp_path / "duplex").write_text("full\n")
    assert files.read_optional(str(tmp_path), "duplex") == "full"


def test_fd_limit_and_retain(tmp_path):
    for n in range(5):
        (tmp_path / f"d{n}").mkdir()
        (tmp_path / f"d{n}/temp").write_text(f"{n}\n")
    before = len(os.listdir("/proc/self/fd"))
    files = OpenAttributes(limit=3)
    dirs = [str(tmp_path / f"d{n}") for n in range(5)]
    for d in dirs:
        files.check(d)
        files.read(d, "temp")
    assert len(os.listdir("/proc/self/fd")) - before == 3  # past the limit: open, read, close
    assert [files.read_int(d, "temp") for d in dirs] == [0, 1, 2, 3, 4]
    files.retain(set(dirs[:1]))
    assert len(os.listdir("/proc/self/fd")) - before == 1
    files.close()
    assert len(os.listdir("/proc/self/fd")) == before
