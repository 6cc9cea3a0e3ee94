"""How the agent reads what the unit's credential lines hand it (token.py meets the unit file)."""

from __future__ import annotations

import os
import re

from belabox_metrics import config
from belabox_metrics.platform import token_file as token
from tests.image.conftest import REPO

UNIT = REPO / "overlays/common/usr/lib/systemd/system/metrics-collector.service"


def credentials_dir(tmp_path, **files):
    """A $CREDENTIALS_DIRECTORY as systemd fills it: a missing file becomes its SetCredential= value."""
    unit = UNIT.read_text()
    fallbacks = dict(re.findall(r"^SetCredential=([\w-]+):(.*)$", unit, re.M))
    loads = dict(re.findall(r"^LoadCredential=([\w-]+):(\S+)$", unit, re.M))
    assert set(loads) == set(fallbacks) == {"api-token", "api-token-state"}
    assert set(fallbacks.values()) == {r"\n"}
    d = tmp_path / "creds"
    d.mkdir()
    for name in loads:
        (d / name).write_text(files.get(name.replace("-", "_"), "\n"))
        os.chmod(d / name, 0o400)
    return str(d)


def cfg_with_file(tmp_path, text=None):
    path = tmp_path / "api-token"
    if text is not None:
        path.write_text(text)
        os.chmod(path, 0o600)
    return config.loads(f"remote:\n  auth_token_file: {path}\n", environ={})


def test_token_from_etc(tmp_path):
    env = {"CREDENTIALS_DIRECTORY": credentials_dir(tmp_path, api_token="from-etc\n")}
    assert token.load_token(cfg_with_file(tmp_path), environ=env).token == "from-etc"


def test_token_from_the_state_folder_when_etc_has_none(tmp_path):
    env = {"CREDENTIALS_DIRECTORY": credentials_dir(tmp_path, api_token_state="from-state\n")}
    state = token.load_token(cfg_with_file(tmp_path), environ=env)
    assert state.token == "from-state" and state.source.endswith("/api-token-state")


def test_no_token_anywhere_is_reported_not_invented(tmp_path):
    env = {"CREDENTIALS_DIRECTORY": credentials_dir(tmp_path)}
    state = token.load_token(cfg_with_file(tmp_path), environ=env)
    assert state.token is None and state.problem
