"""Run `metrics-collector` as a child process using this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELABOX_METRICS_")}
    env["PYTHONPATH"] = str(APP) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    if extra:
        env.update(extra)
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "belabox_metrics", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*args), env=cli_env(env), capture_output=True, text=True,
                          timeout=timeout, input=input)
