"""The overlay trees: headers, the firstboot copy, the default config, sysusers and tmpfiles."""

from __future__ import annotations

import re
import stat
import subprocess

import yaml

from tests.image.conftest import REPO, run
from tests.support.cli import run_cli

OVERLAYS = REPO / "overlays"
COMMON = OVERLAYS / "common"
BOARDS = ("rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano")
CONFIG = COMMON / "etc/belabox-metrics/config.yaml"

# Every key of the deployment guide's config example.
GUIDE_KEYS = [
    "device_id", "collection_interval", "upload_interval",
    "remote.url", "remote.auth_token_file", "remote.timeout", "remote.batch_size", "remote.chunk_size",
    "remote.retry.enabled", "remote.retry.max_attempts", "remote.retry.initial_backoff",
    "remote.retry.max_backoff", "remote.retry.backoff_multiplier", "remote.retry.jitter_percent",
    "storage.path", "storage.wal_checkpoint_interval", "storage.wal_checkpoint_size_mb",
    "health.listen_addr",
    "monitoring.clock_skew_check_interval", "monitoring.clock_skew_warn_threshold_ms",
    "monitoring.clock_skew_url",
    "logging.level", "logging.format", "network.max_interfaces", "disk.allowed_devices",
]


def overlay_files():
    return sorted(p for p in OVERLAYS.rglob("*") if p.is_file())


def test_every_board_has_an_overlay():
    assert {p.name for p in OVERLAYS.iterdir() if p.is_dir()} == {"common", *BOARDS}
    for board in BOARDS:
        assert any(p.is_file() for p in (OVERLAYS / board).rglob("*")), f"overlays/{board} is empty"


def test_overlay_files_start_with_spdx_and_a_purpose_line():
    files = overlay_files()
    assert len(files) >= 10
    for p in files:
        lines = p.read_text().splitlines()
        if lines[0].startswith("#!"):
            lines = lines[1:]
        assert re.fullmatch(r"# SPDX-License-Identifier: \S+", lines[0]), f"{p}: first line is not SPDX"
        assert re.fullmatch(r"# \S.{10,}", lines[1]), f"{p}: no one-line purpose comment after SPDX"


def test_vendor_files_live_under_usr_lib_and_etc_holds_only_the_config():
    for p in overlay_files():
        rel = p.relative_to(OVERLAYS).parts[1:]
        if rel[0] == "etc":
            assert rel == ("etc", "belabox-metrics", "config.yaml"), p
        else:
            assert rel[0] == "usr" and rel[1] in ("lib", "libexec"), p


def test_firstboot_has_one_source_in_git():
    """image/build copies the overlay's firstboot; no second copy may drift from it."""
    script = COMMON / "usr/libexec/belabox-metrics/firstboot"
    assert script.stat().st_mode & stat.S_IXUSR
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert [p for p in tracked if p.endswith("/firstboot") or p == "firstboot"] == \
        ["overlays/common/usr/libexec/belabox-metrics/firstboot"]


def test_default_config_passes_check_config():
    res = run_cli("check-config", "--config", str(CONFIG), "--json")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_default_config_has_every_guide_key_and_the_image_defaults():
    raw = yaml.safe_load(CONFIG.read_text())
    for dotted in GUIDE_KEYS:
        node = raw
        for key in dotted.split("."):
            assert isinstance(node, dict) and key in node, f"config.yaml lacks {dotted}"
            node = node[key]
    assert raw["device_id"] == "auto"
    assert raw["remote"]["url"] == ""
    assert raw["remote"]["auth_token_file"] == "/etc/belabox-metrics/api-token"
    assert raw["health"]["listen_addr"].startswith("127.0.0.1:")
    # Every key is explained: a comment line directly above it or on its line.
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*([a-z_]+):(.*)$", line)
        if not m or m.group(1) == "retry":
            continue
        above = lines[i - 1].strip() if i else ""
        trailing = "#" in m.group(2)
        section = m.group(2).strip() == ""
        assert section or trailing or above.startswith("#") or _in_commented_block(lines, i), \
            f"config.yaml line {i + 1} ({line.strip()}) has no comment"


def _in_commented_block(lines, i):
    """Keys in a group under one comment (e.g. the retry settings) count as explained."""
    j = i - 1
    while j >= 0 and re.match(r"\s*[a-z_]+:", lines[j]):
        j -= 1
    return j >= 0 and lines[j].strip().startswith("#")


def test_tmpfiles_lines_have_no_trailing_comments():
    # Trap (feasibility §5): text after the last column is an argument, not a comment.
    for p in OVERLAYS.rglob("tmpfiles.d/*.conf"):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                assert "#" not in line, f"{p}:{n}: '#' inside a tmpfiles line"
                assert len(line.split()) == 6, f"{p}:{n}: expected 6 columns (type path mode user group arg)"


def _base_root(tmp_path):
    """A scratch root with a Debian-like base passwd/group (sysusers needs one)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nsystemd-journal:x:101:\n")
    for rel in ("usr/lib/sysusers.d/belabox-metrics.conf", "usr/lib/tmpfiles.d/belabox-metrics.conf"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((COMMON / rel).read_bytes())
    return root


def test_sysusers_creates_the_metrics_system_user_without_shell_or_home(tmp_path):
    root = _base_root(tmp_path)
    res = run(["systemd-sysusers", f"--root={root}", "belabox-metrics.conf"])
    assert "Failed" not in res.stderr and "ignoring" not in res.stderr, res.stderr
    entry = [line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("metrics:")]
    assert len(entry) == 1
    name, _, uid, gid, _, home, shell = entry[0].split(":")
    assert 0 < int(uid) < 1000 and uid == gid
    assert home == "/" and shell.endswith("nologin")
    assert f"metrics:x:{gid}:" in (root / "etc/group").read_text()


def test_tmpfiles_create_the_guides_owners_and_modes(tmp_path):
    root = _base_root(tmp_path)
    run(["systemd-sysusers", f"--root={root}", "belabox-metrics.conf"])
    uid = int(next(line for line in (root / "etc/passwd").read_text().splitlines()
                   if line.startswith("metrics:")).split(":")[2])
    (root / "etc/belabox-metrics").mkdir()
    (root / "etc/belabox-metrics/config.yaml").write_text("device_id: auto\n")
    (root / "etc/belabox-metrics/api-token").write_text("x\n")
    res = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "belabox-metrics.conf"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""

    def meta(rel):
        st = (root / rel).stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert meta("etc/belabox-metrics") == (0, uid, 0o750)
    assert meta("etc/belabox-metrics/config.yaml") == (0, uid, 0o640)
    assert meta("etc/belabox-metrics/api-token") == (0, uid, 0o600)
    assert meta("var/lib/belabox-metrics") == (uid, uid, 0o750)


def test_preset_enables_the_units():
    text = (COMMON / "usr/lib/systemd/system-preset/80-belabox-metrics.preset").read_text()
    rules = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert sorted(rules) == [["enable", "metrics-collector-firstboot.service"],
                             ["enable", "metrics-collector-provision.service"],
                             ["enable", "metrics-collector.service"]]
