"""Config validation for `run` in a short-lived child process.

jsonschema, with what it imports, would stay resident in the agent for its whole life
(4 MB or more of a 40 MB budget) although validation happens only at start and on SIGHUP.
So the agent asks a child interpreter to validate exactly as ``check-config`` does
(``config.validated``) and gets back the validated mapping as JSON; turning that into a
Config (``config.build``) needs no jsonschema. The child reads the file itself and is
given the ``BELABOX_METRICS_*`` overrides explicitly, so it judges what the agent would.

If the child cannot do its job (no memory for another process, no interpreter at
``sys.executable``, a crash), validation falls back to this process: correct, only bigger.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping

from belabox_metrics import childproc
from belabox_metrics import config as configmod

log = logging.getLogger(__name__)

# An ARM board under the unit's CPUQuota needs several seconds to start an interpreter and
# import jsonschema. A SIGHUP reload blocks the loop meanwhile: this, plus the in-process
# fallback after it, must stay well inside WatchdogSec (60 s).
CHILD_TIMEOUT_S = 20.0


def load(path: str | None, environ: Mapping[str, str] | None = None) -> configmod.Config:
    """The Config of the file at ``path`` (None: built-in defaults) plus the environment's
    overrides, validated in a child process. Raises ConfigError, one line per problem."""
    return start(path, environ).result()


def start(path: str | None, environ: Mapping[str, str] | None = None) -> Validation:
    """Start validating in a child and return at once. The child may already be running: the CLI
    starts it for `run` before its own imports (childproc.prestart), and it imports jsonschema
    while it waits for this request. The agent's imports overlap all of that (on a multi-core
    board, start to READY is then the longer of the two, not the sum)."""
    return Validation(path, environ)


class Validation:
    """One validation under way in a child interpreter."""

    def __init__(self, path: str | None, environ: Mapping[str, str] | None) -> None:
        env = os.environ if environ is None else environ
        self.path = path
        self.request = {"path": path,
                        "environ": {k: v for k, v in env.items() if k.startswith(configmod.ENV_PREFIX)}}
        self.proc: subprocess.Popen | None = None
        self.failure: str | None = None  # why there is no child, logged when the result is asked for
        try:
            self.proc = childproc.take(childproc.CONFIG_VALIDATOR)
        except OSError as e:
            self.failure = f"cannot start the validating child: {e.strerror or e}"
            return
        # On stdin, not in argv, which every user can read: the overrides may hold secrets. One
        # line, written at once: the child validates while the agent does its own imports.
        try:
            self.proc.stdin.write(json.dumps(self.request) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died already: _answer reports its exit and last words
            pass

    def result(self) -> configmod.Config:
        source = configmod.BUILTIN_SOURCE if self.path is None else self.path
        answer = self._answer()
        if answer is None:
            log.warning("config: validating in this process instead (jsonschema stays in memory until restart)")
            return configmod.build(configmod.validated(self.path, self.request["environ"]), source)
        if answer.get("problems"):
            raise configmod.ConfigError([str(p) for p in answer["problems"]])
        return configmod.build(answer["data"], source)

    def _answer(self) -> dict | None:
        """The child's answer, or None (logged) when there is none to be had."""
        if self.proc is None:
            log.warning("config: %s", self.failure)
            return None
        try:
            stdout, stderr = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            log.warning("config: the validating child gave no answer within %.0fs", CHILD_TIMEOUT_S)
            return None
        except OSError as e:  # reading its answer failed
            self.proc.kill()
            self.proc.wait()
            log.warning("config: the validating child failed: %s", e.strerror or e)
            return None
        try:
            answer = json.loads(stdout)
            if not isinstance(answer, dict) or not isinstance(answer.get("data", answer.get("problems")),
                                                              (dict, list)):
                raise ValueError("no data and no problems")
        except ValueError:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            log.warning("config: the validating child failed (exit %s): %s", self.proc.returncode, last[:200])
            return None
        return answer


def main() -> int:
    """The child: one JSON request line on stdin, one JSON answer on stdout."""
    # Imported before the request is read: the child is often started before the agent knows
    # its arguments (childproc.prestart), and this import is most of the child's work.
    from belabox_metrics.config import schema  # noqa: F401
    raw = sys.stdin.readline()
    if not raw:
        return 0  # started early for a `run` that never asked (its arguments were refused)
    request = json.loads(raw)
    try:
        data = configmod.validated(request.get("path"), request.get("environ") or {})
    except configmod.ConfigError as e:
        json.dump({"problems": e.problems}, sys.stdout)
        return 0
    json.dump({"data": data}, sys.stdout)
    return 0
