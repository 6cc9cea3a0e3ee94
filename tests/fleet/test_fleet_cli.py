"""belabox-fleet commands: --help, one-line errors and exit codes, file modes, seeds, register,
and `list --json` fields read back from a real VictoriaMetrics (series written directly)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.fleet.stack import ok, run_fleet

COMMANDS = ("init", "enroll", "register", "revoke", "rotate", "list", "sync")
ROW_KEYS = {"device_id", "status", "registry", "last_seen", "dark_since", "uploader", "pending_samples",
            "parked_samples", "last_upload_success", "modems_up", "modems_present", "soc_temp_celsius",
            "agent_version", "labels"}


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_every_command_answers_help_without_acting(command, tmp_path):
    res = run_fleet(*([command] if command else []), "--help")
    assert res.returncode == 0 and "usage: belabox-fleet" in res.stdout, res.stderr
    assert list(tmp_path.iterdir()) == []


def _one_line(res, code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    return res.stderr


def _init(tmp_path, vm_url: str = "http://127.0.0.1:9") -> str:
    d = tmp_path / "fleet"
    ok("init", d, "--vm", vm_url, "--public-url", "https://metrics.example.com", "--listen", "127.0.0.1:9")
    return str(d)


def test_bad_input_is_one_line_and_the_right_exit_code(tmp_path):
    _one_line(run_fleet("enroll"), 2)
    _one_line(run_fleet("frobnicate"), 2)
    _one_line(run_fleet("init", tmp_path / "x", "--vm", "ftp://x", "--public-url", "https://a"), 2)
    _one_line(run_fleet("init", tmp_path / "x", "--vm", "http://a", "--public-url", "https://a", "--grace", "soon"), 2)
    _one_line(run_fleet("list", tmp_path / "nowhere"), 78)
    d = _init(tmp_path)
    _one_line(run_fleet("init", d, "--vm", "http://a", "--public-url", "https://a"), 1)  # already one
    _one_line(run_fleet("enroll", d, "bad id", "--seed-out", tmp_path / "s.yaml"), 2)
    _one_line(run_fleet("enroll", d, "box-1", "--label", "nolabel", "--seed-out", tmp_path / "s.yaml"), 2)
    _one_line(run_fleet("enroll", d, "box-1", "--seed-out", tmp_path / "no" / "s.yaml"), 2)
    _one_line(run_fleet("revoke", d, "ghost"), 1)
    # vmauth is not running here: the change is stored and said to apply when vmauth starts.
    res = run_fleet("enroll", d, "box-1", "--seed-out", tmp_path / "s.yaml")
    assert res.returncode == 0 and "not running" in res.stderr
    _one_line(run_fleet("enroll", d, "box-1", "--seed-out", tmp_path / "s2.yaml"), 1)  # exists
    _one_line(run_fleet("list", d), 1)  # VictoriaMetrics unreachable
    os.chmod(os.path.join(d, "devices.yaml"), 0o644)
    assert "chmod 600" in _one_line(run_fleet("list", d), 78)
    os.chmod(os.path.join(d, "devices.yaml"), 0o600)
    with open(os.path.join(d, "fleet.yaml"), "w") as fh:
        fh.write("version: 7\n")
    _one_line(run_fleet("list", d), 78)


def test_files_are_private_and_the_seed_holds_token_and_agent_keys(tmp_path):
    d = _init(tmp_path)
    seed_path = tmp_path / "belabox-metrics.yaml"
    res = run_fleet("enroll", d, "box-7", "--label", "site=lab", "--seed-out", seed_path)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in os.listdir(d):
        mode = stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))
    assert stat.S_IMODE(seed_path.stat().st_mode) == 0o600
    seed = yaml.safe_load(seed_path.read_text())
    assert seed["device_id"] == "box-7" and len(seed["token"]) >= 32
    assert seed["remote"] == {"url": "https://metrics.example.com/api/v1/import", "extra_labels": {"site": "lab"}}
    token = seed["token"]
    assert token not in res.stdout + res.stderr
    registry = Path(d, "devices.yaml").read_text()
    assert token not in registry and "sha256" in registry
    auth = yaml.safe_load(Path(d, "vmauth.yml").read_text())
    user = next(u for u in auth["users"] if u["name"] == "box-7#1")
    assert user["bearer_token"] == token
    assert user["url_map"] == [{"src_paths": ["/api/v1/import"],
                                "url_prefix": "http://127.0.0.1:9/?extra_label=device_id=box-7"}]


def test_register_takes_the_box_token_once(tmp_path):
    d = _init(tmp_path)
    tok = tmp_path / "box-token"
    tok.write_text("x" * 40 + "\n")
    assert run_fleet("register", d, "box-8", "--token-file", tok).returncode == 0
    assert "already in use by device 'box-8'" in _one_line(run_fleet("register", d, "box-9", "--token-file", tok), 1)
    tok.write_text("short\n")
    _one_line(run_fleet("register", d, "box-9", "--token-file", tok), 2)
    _one_line(run_fleet("register", d, "box-9", "--token-file", tmp_path / "missing"), 2)
    auth = yaml.safe_load(Path(d, "vmauth.yml").read_text())
    assert [u["bearer_token"] for u in auth["users"] if u["name"].startswith("box-8")] == ["x" * 40]


def _import(vm, rows: list[tuple[str, dict, float, float]]) -> None:
    body = "\n".join(json.dumps({"metric": {"__name__": n, **labels}, "values": [v], "timestamps": [int(t * 1000)]})
                     for n, labels, v, t in rows)
    requests.post(vm.import_url, data=body, timeout=10).raise_for_status()
    vm.force_flush()


def test_list_reads_every_field_and_puts_dark_boxes_first(vm, tmp_path):
    d = _init(tmp_path, vm.base)
    for did in ("live-1", "dark-1", "dark-2", "silent-1"):
        ok("enroll", d, did, "--seed-out", tmp_path / f"{did}.yaml")
    now = time.time()
    rows = []
    for did, t in (("live-1", now - 5), ("dark-1", now - 2 * 86400), ("dark-2", now - 3600)):
        dev = {"device_id": did}
        rows += [
            ("metrics_collector_samples_collected_total", {**dev, "collector": "cpu"}, 10, t),
            ("metrics_collector_spool_pending_samples", dev, 1200, t),
            ("metrics_collector_spool_parked_samples", dev, 7, t),
            ("metrics_collector_component_status", {**dev, "component": "uploader"}, 2 if did == "dark-1" else 0, t),
            ("metrics_collector_component_status", {**dev, "component": "storage"}, 1, t),
            ("metrics_collector_upload_last_success_timestamp_seconds", dev, t - 60, t),
            ("metrics_collector_build_info", {**dev, "version": "0.1.0"}, 1, t - 30),
            ("metrics_collector_build_info", {**dev, "version": "0.2.0"}, 1, t),
            ("belabox_soc_temp_celsius", dev, 61.5, t),
            ("belabox_modem_state", {**dev, "modem": "m1"}, 11, t),
            ("belabox_modem_state", {**dev, "modem": "m2"}, 8, t),
        ]
    _import(vm, rows)
    out = json.loads(ok("list", d, "--json").stdout)
    assert set(out) == {"generated_at", "devices"}
    got = out["devices"]
    assert all(set(r) == ROW_KEYS for r in got)
    assert [r["device_id"] for r in got] == ["dark-1", "dark-2", "silent-1", "live-1"]
    by = {r["device_id"]: r for r in got}
    assert by["dark-1"]["status"] == "dark" and by["dark-1"]["dark_since"] == pytest.approx(now - 2 * 86400, abs=1)
    assert by["dark-1"]["uploader"] == "error" and by["dark-1"]["pending_samples"] == 1200
    assert by["silent-1"]["status"] == "never" and by["silent-1"]["last_seen"] is None
    live = by["live-1"]
    assert live["status"] == "ok" and live["dark_since"] is None
    assert live["last_seen"] == pytest.approx(now - 5, abs=1)
    assert (live["uploader"], live["pending_samples"], live["parked_samples"]) == ("ok", 1200, 7)
    assert (live["modems_up"], live["modems_present"], live["soc_temp_celsius"]) == (1, 2, 61.5)
    assert live["agent_version"] == "0.2.0"
    assert live["last_upload_success"] == pytest.approx(now - 65, abs=1)
    table = ok("list", d).stdout.splitlines()
    assert table[0].split()[:2] == ["DEVICE", "STATUS"]
    assert table[1].startswith("dark-1") and "DARK" in table[1] and "1/2" in table[-1]


def test_a_rotated_out_token_is_retired_when_its_grace_ends(tmp_path):
    d = _init(tmp_path)
    ok("enroll", d, "box-g", "--seed-out", tmp_path / "g1.yaml")
    ok("rotate", d, "box-g", "--seed-out", tmp_path / "g2.yaml", "--grace", "1h")
    auth = yaml.safe_load(Path(d, "vmauth.yml").read_text())
    assert sorted(u["name"] for u in auth["users"] if u["name"].startswith("box-g")) == ["box-g#1", "box-g#2"]
    assert "retired" not in ok("sync", d).stdout  # vmauth is down: only the grace can retire, and it runs
    res = ok("rotate", d, "box-g", "--seed-out", tmp_path / "g3.yaml", "--grace", "0s")  # a hard cut-over
    assert "retired old token box-g#1" in res.stdout and "retired old token box-g#2" in res.stdout
    auth = yaml.safe_load(Path(d, "vmauth.yml").read_text())
    new = yaml.safe_load((tmp_path / "g3.yaml").read_text())["token"]
    assert [u["bearer_token"] for u in auth["users"] if u["name"].startswith("box-g")] == [new]
