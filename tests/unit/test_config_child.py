"""config_child: the agent's config, validated in a child interpreter, is the config check-config sees."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from belabox_metrics import childproc, config
from belabox_metrics.config import child as config_child
from tests.support.cli import cli_env
from tests.unit.test_config import GUIDE_CONFIG


def test_the_guides_config_is_built_exactly_as_in_process(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GUIDE_CONFIG)
    env = {"BELABOX_METRICS_REMOTE_TIMEOUT": "5s", "BELABOX_METRICS_REMOTE_EXTRA_LABELS": "{site: berlin}",
           "HOME": "/elsewhere"}
    got = config_child.load(str(path), environ=env)
    assert got == config.load(str(path), environ=env)
    assert got.remote.timeout == 5.0 and dict(got.remote.extra_labels) == {"site": "berlin"}
    assert got.source == str(path) and got.device_id == "device-001"


def test_no_file_means_the_built_in_defaults_plus_the_environment():
    got = config_child.load(None, environ={"BELABOX_METRICS_UPLOAD_INTERVAL": "5m"})
    assert got.source == config.BUILTIN_SOURCE and got.upload_interval == 300.0
    assert got.storage == config.Config().storage


@pytest.mark.parametrize("text, environ", [
    ("collection_interval: x\nlogging:\n  level: loud\nremote:\n  batch_size: 0\n", {}),
    ("remote:\n  url: [unclosed\n", {}),
    ("", {}),
    ("device_id: x\n", {"BELABOX_METRICS_REMOTE_URLL": "http://x/", "BELABOX_METRICS_REMOTE_TIMEOUT": "1x"}),
])
def test_problems_are_the_same_lines_as_in_process(tmp_path, text, environ):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as in_process:
        config.load(str(path), environ=environ)
    with pytest.raises(config.ConfigError) as in_child:
        config_child.load(str(path), environ=environ)
    assert in_child.value.problems == in_process.value.problems
    assert all("\n" not in p for p in in_child.value.problems)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(config.ConfigError) as e:
        config_child.load(str(tmp_path / "nope.yaml"), environ={})
    assert e.value.problems == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_without_a_child_validation_happens_here_and_says_so(tmp_path, monkeypatch, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("upload_interval: 2m\n")
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    assert config_child.load(str(path), environ={}).upload_interval == 120.0
    assert "cannot start the validating child" in caplog.text
    monkeypatch.undo()
    caplog.clear()
    monkeypatch.setattr(childproc, "_CODE", "print('not an answer')  # {root} {module} {func}")
    assert config_child.load(str(path), environ={}).upload_interval == 120.0
    assert "the validating child failed (exit 0)" in caplog.text
    path.write_text("upload_interval: never\n")
    with pytest.raises(config.ConfigError, match="upload_interval: must be a duration"):
        config_child.load(str(path), environ={})


def test_the_caller_never_imports_jsonschema(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GUIDE_CONFIG)
    code = ("import sys\nfrom belabox_metrics.config import child as config_child\n"
            f"cfg = config_child.load({str(path)!r})\n"
            "print(cfg.device_id, 'jsonschema' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["device-001", "False"]


def test_the_child_validates_at_once_without_waiting_to_be_asked(tmp_path):
    # Its request came on stdin when the answer was asked for, so jsonschema's import (0.15 s)
    # came after the agent's imports instead of beside them: start to READY paid for both.
    path = tmp_path / "config.yaml"
    path.write_text("device_id: box-1\n")
    v = config_child.start(str(path), environ={"BELABOX_METRICS_UPLOAD_INTERVAL": "5m"})
    assert v.proc.wait(timeout=30) == 0  # done before result() is called
    got = v.result()
    assert got.device_id == "box-1" and got.upload_interval == 300.0
