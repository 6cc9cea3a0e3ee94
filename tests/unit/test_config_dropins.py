"""Config drop-ins: config.d/*.yaml over config.yaml, in name order, with the file that set each key."""

from __future__ import annotations

import json

from belabox_metrics import config
from belabox_metrics.config import child as config_child
from belabox_metrics.config.dropins import Layer, dropin_dirs, merge, merge_layers, order_dropins
from tests.support.cli import run_cli

BASE = """\
device_id: from-base
remote:
  url: https://base.example/api/v1/import
  extra_labels: {fleet: base, site: hq}
  retry: {max_attempts: 3}
disk:
  allowed_devices: "^sd[a-z]+$"
"""


def test_maps_merge_lists_and_scalars_replace():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge(base, {"a": {"c": [3]}, "d": {"e": 1}}) == {"a": {"b": 1, "c": [3]}, "d": {"e": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}, "merge must not change its input"


def test_later_layers_win_and_provenance_follows_the_value():
    merged, sources = merge_layers([
        Layer("config.yaml", {"remote": {"url": "u1", "extra_labels": {"fleet": "a", "site": "b"}}}),
        Layer("10.yaml", {"remote": {"extra_labels": {"fleet": "c"}}}),
        Layer("20.yaml", {"remote": {"url": "u2"}}),
    ])
    assert merged == {"remote": {"url": "u2", "extra_labels": {"fleet": "c", "site": "b"}}}
    assert sources == {"remote.url": "20.yaml", "remote.extra_labels.fleet": "10.yaml",
                       "remote.extra_labels.site": "config.yaml"}
    # A value that replaces a whole mapping takes over the provenance of what was below it.
    _, sources = merge_layers([Layer("a", {"x": {"y": 1}}), Layer("b", {"x": 5})])
    assert sources == {"x": "b"}


def test_order_is_by_name_and_an_earlier_folder_masks_the_same_name():
    paths = order_dropins([("/etc/c.d", ["50-provision.yaml", "90-local.yaml", ".hidden.yaml", "notes.txt"]),
                           ("/var/c.d", ["10-state.yaml", "50-provision.yaml"])])
    assert paths == ["/var/c.d/10-state.yaml", "/etc/c.d/50-provision.yaml", "/etc/c.d/90-local.yaml"]


def test_dropin_folders():
    default = "/etc/belabox-metrics/config.yaml"
    assert dropin_dirs(None, default, {}) == ["/etc/belabox-metrics/config.d", "/var/lib/belabox-metrics/config.d"]
    assert dropin_dirs("/tmp/x/c.yaml", default, {"STATE_DIRECTORY": "/s:/t"}, "/data/bm") == \
        ["/tmp/x/config.d", "/s/config.d", "/data/bm/config.d"]
    # A config named elsewhere does not pick up the box's state folder unless systemd names it.
    assert dropin_dirs("/tmp/x/c.yaml", default, {}) == ["/tmp/x/config.d"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_dropins_from_every_folder_merge_and_the_environment_still_wins(tmp_path, monkeypatch):
    main = write(tmp_path / "etc/config.yaml", BASE + "storage:\n  fallback_path: " + str(tmp_path / "data") + "\n")
    write(tmp_path / "etc/config.d/50-provision.yaml",
          "device_id: box-7\nremote:\n  extra_labels: {fleet: north}\n")
    write(tmp_path / "state/config.d/60-state.yaml", "disk:\n  allowed_devices: '^mmcblk[0-9]+$'\n")
    write(tmp_path / "data/config.d/70-data.yaml", "remote:\n  retry: {max_attempts: 7}\n")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    cfg = config.load(str(main), environ={"BELABOX_METRICS_DEVICE_ID": "from-env"})
    assert cfg.device_id == "from-env"
    assert dict(cfg.remote.extra_labels) == {"fleet": "north", "site": "hq"}
    assert cfg.remote.url == "https://base.example/api/v1/import"
    assert cfg.disk.allowed_devices == "^mmcblk[0-9]+$"
    assert cfg.remote.retry.max_attempts == 7
    # The agent validates in a child process: it must see the same drop-ins.
    assert config_child.load(str(main), environ={}).remote.retry.max_attempts == 7


def test_check_config_names_the_file_of_each_key(tmp_path):
    main = write(tmp_path / "config.yaml", BASE)
    dropin = write(tmp_path / "config.d/50-provision.yaml", "device_id: box-7\nremote:\n  extra_labels: {fleet: n}\n")
    res = run_cli("check-config", "--config", str(main), "--json", "--sources",
                  env={"BELABOX_METRICS_REMOTE_TIMEOUT": "5s"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["device_id"] == "box-7" and out["remote"]["timeout"] == "5s"
    assert out["sources"]["device_id"] == str(dropin)
    assert out["sources"]["remote.extra_labels.fleet"] == str(dropin)
    assert out["sources"]["remote.extra_labels.site"] == str(main)
    assert out["sources"]["remote.url"] == str(main)
    assert out["sources"]["remote.timeout"] == "environment (BELABOX_METRICS_REMOTE_TIMEOUT)"
    assert "collection_interval" not in out["sources"], "a built-in default was attributed to a file"
    text = run_cli("check-config", "--config", str(main))
    assert text.returncode == 0, text.stderr
    assert f"#   device_id: {dropin}" in text.stdout
    assert f"#   remote.url: {main}" in text.stdout


def test_a_malformed_dropin_is_a_config_error_naming_it(tmp_path):
    main = write(tmp_path / "config.yaml", BASE)
    bad = write(tmp_path / "config.d/50-provision.yaml", "remote: [unclosed\n")
    res = run_cli("check-config", "--config", str(main))
    assert res.returncode == 78
    assert res.stderr.strip().splitlines() == [f"{bad}: YAML syntax error at line 2, column 1: "
                                               "expected ',' or ']', but got '<stream end>'"], res.stderr
    bad.write_text("remote:\n  urll: https://x.example/\n")
    res = run_cli("check-config", "--config", str(main))
    assert res.returncode == 78
    assert res.stderr.strip() == f"{bad}: remote.urll: unknown key (did you mean 'url'?)", res.stderr
    bad.write_text("- a list\n")
    res = run_cli("check-config", "--config", str(main))
    assert res.returncode == 78 and str(bad) in res.stderr and "must be a mapping" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_dropin_that_only_makes_sense_with_the_base_is_accepted(tmp_path):
    # initial_backoff 40s alone exceeds the default max_backoff 30s; with the base's 60s it is fine.
    main = write(tmp_path / "config.yaml", "remote:\n  retry: {max_backoff: 60s}\n")
    write(tmp_path / "config.d/10-retry.yaml", "remote:\n  retry: {initial_backoff: 40s}\n")
    assert config.load(str(main), environ={}).remote.retry.initial_backoff == 40.0


def test_without_dropins_messages_are_unchanged(tmp_path):
    main = write(tmp_path / "config.yaml", "remote:\n  urll: x\n")
    res = run_cli("check-config", "--config", str(main))
    assert res.returncode == 78 and res.stderr.startswith("config.yaml: remote.urll: unknown key"), res.stderr
