"""The units under systemd-analyze: verify (stderr, not the exit code) and the security score."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.image.conftest import APPLY, REPO, run

UNIT_DIR = "usr/lib/systemd/system"
UNITS = ("metrics-collector.service", "metrics-collector-firstboot.service", "metrics-collector-provision.service")
MAX_EXPOSURE = 1.5  # design §9


def verify(root, *units) -> subprocess.CompletedProcess:
    # Its exit code ignores parse errors (feasibility §5): only an empty stderr is a pass.
    # --root: ExecStart=, ExecReload= and the targets must exist in the image, not on the host.
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                           *[f"/{UNIT_DIR}/{u}" for u in units]],
                          capture_output=True, text=True, timeout=60)


def test_units_verify_cleanly_in_the_applied_rootfs(applied_root):
    res = verify(applied_root, *UNITS)
    assert res.stderr == "", res.stderr
    assert res.returncode == 0


@pytest.mark.parametrize("board", ["rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano"])
def test_units_verify_with_each_board_overlay(fresh_root, board):
    root = fresh_root()
    run([APPLY, root, "--board", board])
    drop_ins = list(root.glob(f"{UNIT_DIR}/metrics-collector.service.d/*.conf"))
    res = verify(root, *UNITS)
    assert res.stderr == "", res.stderr
    if board.startswith("rk3588"):
        assert drop_ins, "the board's unit drop-in was not applied"


def test_verify_catches_a_broken_unit(applied_root, tmp_path):
    # The gate must be able to fail: a typo that systemd only warns about.
    root = tmp_path / "root"
    shutil.copytree(applied_root / "etc", root / "etc", symlinks=True)
    (root / "usr").symlink_to(applied_root / "usr")
    unit = root / "etc/systemd/system/metrics-collector.service"
    unit.write_text((applied_root / UNIT_DIR / UNITS[0]).read_text().replace("Type=notify", "Type=notfy"))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                          "/etc/systemd/system/metrics-collector.service"], capture_output=True, text=True)
    assert "notfy" in res.stderr


def exposure(unit_path) -> float:
    res = run(["systemd-analyze", "security", "--offline=true", unit_path])
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout[-500:]
    return float(m.group(1))


def test_collector_exposure_is_at_most_1_5():
    unit = REPO / "overlays/common" / UNIT_DIR / "metrics-collector.service"
    score = exposure(unit)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"
    # The same gate as an integer threshold (0-100 scale, feasibility §5).
    res = subprocess.run(["systemd-analyze", "security", "--offline=true",
                          f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-300:]


@pytest.mark.parametrize("board", [None, "rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano"])
def test_collector_exposure_with_its_drop_ins(fresh_root, board):
    # By unit name inside the applied root, so the drop-ins (common and board) count too.
    root = fresh_root()
    run([APPLY, root, *(["--board", board] if board else [])])
    res = run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "metrics-collector.service"])
    m = re.search(r"Overall exposure level for metrics-collector.service: (\d+\.\d+)", res.stdout)
    assert m and float(m.group(1)) <= MAX_EXPOSURE, res.stdout[-300:]


def test_exposure_gate_can_fail(tmp_path):
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/usr/bin/true\n")
    assert exposure(bare) > 5


def test_collector_unit_contract():
    text = (REPO / "overlays/common" / UNIT_DIR / "metrics-collector.service").read_text()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    expect = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "60s", "Restart": "on-failure",
        "User": "metrics", "Group": "metrics", "StateDirectory": "belabox-metrics",
        "StateDirectoryMode": "0750", "ConfigurationDirectory": "belabox-metrics",
        "RuntimeDirectory": "belabox-metrics", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "MemoryMax": "200M", "CPUQuota": "20%",
        "RestartPreventExitStatus": "78", "ExecReload": "/bin/kill -HUP $MAINPID",
        "SupplementaryGroups": "systemd-journal",
        "ExecStart": "/usr/bin/metrics-collector run --config /etc/belabox-metrics/config.yaml",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    }
    for key, value in expect.items():
        assert settings.get(key) == [value], f"{key}={settings.get(key)}"
    assert "api-token:/etc/belabox-metrics/api-token" in settings["LoadCredential"]
    assert settings["DeviceAllow"] and settings["SystemCallFilter"]


def test_firstboot_unit_contract():
    text = (REPO / "overlays/common" / UNIT_DIR / "metrics-collector-firstboot.service").read_text()
    assert "Type=oneshot" in text
    assert "Before=metrics-collector.service" in text
    assert "ConditionPathExists=!/var/lib/belabox-metrics/.firstboot-done" in text
    assert re.search(r"^ExecStart=/usr/libexec/belabox-metrics/firstboot\b", text, re.M)


def test_provision_unit_contract():
    """Every boot (no done-marker condition), before first boot and the collector; a refused
    seed (exit 78) is not a failed unit."""
    text = (REPO / "overlays/common" / UNIT_DIR / "metrics-collector-provision.service").read_text()
    assert "Condition" not in text
    assert "Before=metrics-collector-firstboot.service metrics-collector.service" in text
    assert "ExecStart=/usr/bin/metrics-collector provision-import" in text
    assert "SuccessExitStatus=78" in text and "Type=oneshot" in text
    collector = (REPO / "overlays/common" / UNIT_DIR / "metrics-collector.service").read_text()
    assert re.search(r"^Wants=.*metrics-collector-provision\.service", collector, re.M)
