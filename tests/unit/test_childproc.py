"""childproc: `run`'s config child starts before the CLI imports the project, and is the one used."""

from __future__ import annotations

import subprocess
import sys

from belabox_metrics import childproc
from tests.support.cli import cli_env


def test_take_returns_the_child_prestart_started_and_an_unasked_child_ends_quietly():
    childproc.prestart(childproc.CONFIG_VALIDATOR)
    early = childproc._started[childproc.CONFIG_VALIDATOR]
    assert childproc.take(childproc.CONFIG_VALIDATOR) is early
    # Never asked (the command line was refused): end of file on stdin ends it, with no answer.
    out, err = early.communicate(timeout=30)
    assert (early.returncode, out) == (0, ""), err
    again = childproc.take(childproc.CONFIG_VALIDATOR)  # nothing prestarted now: a new one
    assert again is not early
    again.communicate(timeout=30)


def test_run_starts_the_config_child_before_importing_the_project(tmp_path):
    # The child needs 0.2 s; started after the CLI's imports (config, yaml: 60 ms), start to
    # READY paid for those on top of it.
    cfg = tmp_path / "config.yaml"
    cfg.write_text("upload_interval: never\n")
    code = ("import sys\n"
            "events = []\n"
            "def hook(ev, args):\n"
            "    if ev == 'subprocess.Popen' or (ev == 'import' and args[0] == 'belabox_metrics.config'):\n"
            "        events.append(ev)\n"
            "sys.addaudithook(hook)\n"
            "from belabox_metrics.commands import cli\n"
            f"code = cli.main(['run', '--config', {str(cfg)!r}])\n"
            "print(code, events[:2])\n")
    res = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # 78: the child's verdict came back through the early child; Popen came first.
    assert res.stdout.split(None, 1) == ["78", "['subprocess.Popen', 'import']\n"]
    assert "upload_interval: must be a duration" in res.stderr
