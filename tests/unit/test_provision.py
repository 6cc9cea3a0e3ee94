"""The provisioning seed on the boot partition: imported once, token moved off the card, note left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from belabox_metrics import config
from belabox_metrics.commands import provision
from belabox_metrics.commands.provision import NOTE_NAME, SEED_NAME, Places, SeedError, import_seed, parse_seed
from belabox_metrics.spool.location import parse_mountinfo
from tests.support.cli import run_cli

TOKEN = "s3cr3t-T0ken_value"
SEED = f"""\
token: {TOKEN}
device_id: box-17
remote:
  url: https://vm.example/api/v1/import
  extra_labels: {{fleet: north}}
"""


def no_check(settings):
    pass


def test_parse_seed_splits_token_and_settings():
    seed = parse_seed(SEED, no_check)
    assert seed.token == TOKEN
    assert seed.settings == {"device_id": "box-17",
                             "remote": {"url": "https://vm.example/api/v1/import", "extra_labels": {"fleet": "north"}}}
    assert parse_seed("device_id: x\n", no_check).token is None


@pytest.mark.parametrize("text, reason", [
    ("token: [a\n", "YAML syntax error"),
    ("- token\n", "must be a mapping"),
    ("token: 12\n", "token: must be a non-empty string"),
    ("token: two words\n", "token: must be one word"),
    ("{}\n", "holds neither a token nor settings"),
])
def test_malformed_seeds_are_one_line_without_the_token(text, reason):
    with pytest.raises(SeedError) as e:
        parse_seed(text, no_check)
    assert reason in str(e.value) and "\n" not in str(e.value)
    assert "two words" not in str(e.value), "the token's value must never be echoed"


def test_the_agents_validator_refuses_a_bad_key():
    with pytest.raises(SeedError) as e:
        parse_seed(f"token: {TOKEN}\nremote:\n  urll: https://x/\n",
                   lambda s: config.validate(s, SEED_NAME, {}))
    assert str(e.value) == f"{SEED_NAME}: remote.urll: unknown key (did you mean 'url'?)"
    assert TOKEN not in str(e.value)


def test_boot_search_list_comes_from_the_profile_and_fat_labels():
    assert provision.boot_search({"boot_partition": {"dirs": ["/boot/x"], "labels": ["L"]}}) == (("/boot/x",), ("L",))
    assert provision.boot_search(None)[0] == provision.DEFAULT_BOOT_DIRS
    mounts = parse_mountinfo(
        "30 1 179:1 / /media/card rw - vfat /dev/mmcblk1p1 rw\n"
        "31 1 179:2 / /data rw - ext4 /dev/mmcblk1p2 rw\n"
        "32 1 8:1 / /media/stick rw - vfat /dev/sda1 rw\n")
    labels = {"/dev/mmcblk1p1": "BOOT", "/dev/mmcblk1p2": "BOOT", "/dev/sda1": "PHOTOS"}
    assert provision.fat_mounts_with_label(mounts, ("BOOT",), labels.get) == ["/media/card"]


@pytest.fixture
def box(tmp_path):
    boot, conf, state = tmp_path / "boot", tmp_path / "etc", tmp_path / "state"
    for d in (boot, conf, state):
        d.mkdir()
    (conf / "config.yaml").write_text("remote:\n  url: ''\n  auth_token_file: " + str(conf / "api-token") + "\n")
    return Places((str(tmp_path / "missing"), str(boot)), str(conf), str(state), str(conf / "config.yaml"))


def test_import_writes_token_and_dropin_removes_the_seed_and_leaves_a_note(box):
    boot, conf = box.boot_dirs[1], box.conf_dir
    seed = os.path.join(boot, "BELABOX-METRICS.YAML")  # FAT: any case
    with open(seed, "w") as fh:
        fh.write(SEED)
    out = import_seed(box, "2026-01-02T03:04:05Z")
    assert out.status == "imported" and out.token_changed and out.settings_changed, out
    token = os.path.join(conf, "api-token")
    assert Path(token).read_text() == TOKEN + "\n"
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    dropin = os.path.join(conf, "config.d", "50-provision.yaml")
    assert stat.S_IMODE(os.stat(dropin).st_mode) == 0o640
    assert not os.path.exists(seed)
    note = Path(os.path.join(boot, NOTE_NAME)).read_text()
    assert "2026-01-02T03:04:05Z" in note and "device_id, remote.url, remote.extra_labels.fleet" in note
    assert provision.fingerprint(TOKEN) in note and TOKEN not in note and TOKEN not in out.message
    # The agent loads what was imported.
    cfg = config.load(box.config_path, environ={})
    assert (cfg.device_id, cfg.remote.url, dict(cfg.remote.extra_labels)) == \
        ("box-17", "https://vm.example/api/v1/import", {"fleet": "north"})

    # Idempotent: the same seed again changes no file (and so would not restart the collector).
    mtimes = {p: os.stat(p).st_mtime_ns for p in (token, dropin)}
    with open(seed, "w") as fh:
        fh.write(SEED)
    again = import_seed(box, "2026-01-03T00:00:00Z")
    assert again.status == "unchanged" and not again.token_changed and not again.settings_changed
    assert {p: os.stat(p).st_mtime_ns for p in (token, dropin)} == mtimes
    assert import_seed(box, "x").status == "none"

    # Rotation: a new token only; the settings stay.
    with open(os.path.join(boot, SEED_NAME), "w") as fh:
        fh.write("token: rotated-token\n")
    rot = import_seed(box, "2026-02-01T00:00:00Z")
    assert rot.token_changed and not rot.settings_changed
    assert Path(token).read_text() == "rotated-token\n" and os.path.exists(dropin)


def test_a_malformed_seed_is_refused_kept_and_explained(box):
    boot = box.boot_dirs[1]
    seed = os.path.join(boot, SEED_NAME)
    with open(seed, "w") as fh:
        fh.write(f"token: {TOKEN}\nremote:\n  url: not-a-url\n")
    out = import_seed(box, "2026-01-02T03:04:05Z")
    assert out.status == "refused"
    assert out.message == f"{SEED_NAME}: remote.url: must be an http:// or https:// URL, got 'not-a-url'"
    assert os.path.exists(seed), "a refused seed stays for the operator to fix"
    assert not os.path.exists(os.path.join(box.conf_dir, "api-token"))
    assert not os.path.exists(os.path.join(box.conf_dir, "config.d"))
    note = Path(os.path.join(boot, NOTE_NAME)).read_text()
    assert "REFUSED" in note and "must be an http:// or https:// URL" in note and TOKEN not in note


def test_read_only_conf_dir_puts_everything_in_the_state_dir(box, monkeypatch):
    with open(os.path.join(box.boot_dirs[1], SEED_NAME), "w") as fh:
        fh.write(SEED)
    monkeypatch.setattr(provision, "writable", lambda d: d != box.conf_dir)
    out = import_seed(box, "t")
    assert out.status == "imported"
    assert os.path.exists(os.path.join(box.state_dir, "api-token"))
    assert os.path.exists(os.path.join(box.state_dir, "config.d", "50-provision.yaml"))


def test_a_running_collector_is_restarted_for_a_token_and_reloaded_for_settings():
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return type("R", (), {"stdout": "active\n"})()

    assert provision.poke_collector(provision.Outcome("imported", token_changed=True), fake_run) == "try-restart"
    assert calls[-1] == ["systemctl", "--no-block", "try-restart", "metrics-collector.service"]
    assert provision.poke_collector(provision.Outcome("imported", settings_changed=True), fake_run) == \
        "try-reload-or-restart"
    calls.clear()
    assert provision.poke_collector(provision.Outcome("unchanged"), fake_run) is None and calls == []
    inactive = lambda argv, **kw: type("R", (), {"stdout": "inactive\n"})()  # noqa: E731 - at boot
    assert provision.poke_collector(provision.Outcome("imported", token_changed=True), inactive) is None


def test_command_imports_and_refuses_with_one_line(box):
    boot = box.boot_dirs[1]
    args = ["provision-import", "--config", box.config_path, "--boot-dir", boot, "--conf-dir", box.conf_dir,
            "--state-dir", box.state_dir, "--no-restart"]
    res = run_cli(*args)
    assert res.returncode == 0 and "no seed in" in res.stderr, res.stderr
    with open(os.path.join(boot, SEED_NAME), "w") as fh:
        fh.write("token: [\n")
    res = run_cli(*args)
    assert res.returncode == 78 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("provision-import: refused ") and "YAML syntax error" in res.stderr
    with open(os.path.join(boot, SEED_NAME), "w") as fh:
        fh.write(SEED)
    res = run_cli(*args)
    assert res.returncode == 0 and res.stderr.startswith("provision-import: imported "), res.stderr
    assert TOKEN not in res.stderr and TOKEN not in res.stdout
    assert run_cli("provision-import", "--help").returncode == 0


def test_the_search_list_is_the_detected_boards_profile_data(tmp_path, monkeypatch):
    hardware_dir = Path(__file__).resolve().parents[2] / "hardware"
    monkeypatch.setenv("BELABOX_METRICS_HARDWARE_DIR", str(hardware_dir))
    dt = tmp_path / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "compatible").write_bytes(b"radxa,rock-5b\0rockchip,rk3588\0")
    (tmp_path / "proc/self").mkdir()
    (tmp_path / "proc/self/mountinfo").write_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")
    expected = yaml.safe_load((hardware_dir / "rk3588-rock5b/profile.yaml").read_text())["boot_partition"]["dirs"]
    assert provision.default_boot_dirs(str(tmp_path / "proc"), str(tmp_path / "sys")) == tuple(expected)
