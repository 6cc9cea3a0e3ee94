"""device_id: explicit value, or a stable hashed id from the board serial or machine-id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from belabox_metrics import config
from belabox_metrics.platform.device_id import DeviceIdError, derive_device_id

SERIAL = "9a7cd2b5c1f3e4a6"  # a RK3588-style serial-number
MACHINE_ID = "3f1c0e5a9b2d4c6e8f0a1b2c3d4e5f60"


def roots(tmp_path: Path, dt_proc: bytes | None = None, dt_sys: bytes | None = None,
          machine_id: str | None = None) -> tuple[str, str, str]:
    procfs, sysfs, rootfs = tmp_path / "proc", tmp_path / "sys", tmp_path / "root"
    for d in (procfs, sysfs, rootfs / "etc"):
        d.mkdir(parents=True)
    if dt_proc is not None:
        (procfs / "device-tree").mkdir()
        (procfs / "device-tree" / "serial-number").write_bytes(dt_proc)
    if dt_sys is not None:
        base = sysfs / "firmware/devicetree/base"
        base.mkdir(parents=True)
        (base / "serial-number").write_bytes(dt_sys)
    if machine_id is not None:
        (rootfs / "etc/machine-id").write_text(machine_id)
    return str(procfs), str(sysfs), str(rootfs)


def auto() -> config.Config:
    return config.Config(device_id="auto")


def test_explicit_device_id_wins(tmp_path):
    r = roots(tmp_path, dt_proc=SERIAL.encode() + b"\0", machine_id=MACHINE_ID + "\n")
    assert derive_device_id(config.Config(device_id="studio-7"), *r) == "studio-7"


def test_auto_uses_device_tree_serial_hashed_and_stable(tmp_path):
    r = roots(tmp_path, dt_proc=SERIAL.encode() + b"\0", machine_id=MACHINE_ID + "\n")
    first = derive_device_id(auto(), *r)
    assert re.fullmatch(r"bb-[0-9a-f]{12}", first)
    assert SERIAL not in first and SERIAL[:12] not in first
    assert derive_device_id(auto(), *r) == first
    # The same board read through sysfs instead of /proc gives the same id.
    r2 = roots(tmp_path / "b", dt_sys=SERIAL.encode() + b"\0")
    assert derive_device_id(auto(), *r2) == first


def test_different_boards_differ(tmp_path):
    a = derive_device_id(auto(), *roots(tmp_path / "a", dt_proc=b"1111222233334444\0"))
    b = derive_device_id(auto(), *roots(tmp_path / "b", dt_proc=b"1111222233334445\0"))
    assert a != b


@pytest.mark.parametrize("placeholder", [b"\0", b"0000000000000000\0", b"  \n", b"Default string\0"])
def test_placeholder_serial_falls_back_to_machine_id(tmp_path, placeholder):
    r = roots(tmp_path, dt_proc=placeholder, machine_id=MACHINE_ID + "\n")
    got = derive_device_id(auto(), *r)
    assert re.fullmatch(r"bb-[0-9a-f]{12}", got) and MACHINE_ID[:12] not in got
    assert got == derive_device_id(auto(), *roots(tmp_path / "m", machine_id=MACHINE_ID))


def test_machine_id_and_serial_of_equal_text_do_not_collide(tmp_path):
    s = derive_device_id(auto(), *roots(tmp_path / "s", dt_proc=MACHINE_ID.encode()))
    m = derive_device_id(auto(), *roots(tmp_path / "m", machine_id=MACHINE_ID))
    assert s != m


@pytest.mark.parametrize("mid", [None, "", "uninitialized\n", "0" * 32, "not-hex"])
def test_nothing_to_derive_from_is_a_config_error(tmp_path, mid):
    r = roots(tmp_path, machine_id=mid)
    with pytest.raises(DeviceIdError) as e:
        derive_device_id(auto(), *r)
    # A configuration problem like ConfigError (the command line turns both into exit 78), but
    # platform/ imports nothing of config/, so it is its own class with the same `problems`.
    assert e.value.problems == [str(e.value)]
    assert "set device_id" in str(e.value) and "\n" not in str(e.value)


def test_empty_device_id_means_auto(tmp_path):
    r = roots(tmp_path, machine_id=MACHINE_ID)
    assert derive_device_id(config.Config(device_id=""), *r) == derive_device_id(auto(), *r)
