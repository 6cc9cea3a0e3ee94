"""A fresh interpreter running one function of this package, started as early as a caller likes.

`run` validates its config in a child (config/child.py) so that jsonschema never stays resident.
The child needs 0.2 s or more to start and import; started before the CLI's own imports (config,
yaml, argparse: 80 ms), it works beside them instead of after them. So this leaf imports only the
standard library: the CLI can call ``prestart`` before importing anything of the project, and the
code that later asks for the child's answer ``take``s the process started for it.
"""

from __future__ import annotations

import os
import subprocess
import sys

# The function `run` validates its config in: a string, so that this leaf imports nothing above it.
CONFIG_VALIDATOR = "belabox_metrics.config.child:main"

# The package's parent folder goes first on the child's path, so the child runs this very code
# even when the agent was started from a source tree or a different working directory.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CODE = "import sys; sys.path.insert(0, {root!r}); from {module} import {func}; sys.exit({func}())"

_started: dict[str, subprocess.Popen] = {}


def spawn(target: str) -> subprocess.Popen:
    """Start ``module:function`` in a new interpreter with text pipes on stdin, stdout and stderr.
    Raises OSError (no interpreter, no memory for a process)."""
    if not sys.executable:
        raise OSError("no interpreter to start a child process with")
    module, func = target.split(":")
    return subprocess.Popen([sys.executable, "-c", _CODE.format(root=_ROOT, module=module, func=func)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def prestart(target: str) -> None:
    """Start ``target`` now for a ``take`` later. A failure is left for ``take`` to meet again and
    report; a child never taken reads end-of-file on stdin when this process exits, and ends."""
    if target not in _started:
        try:
            _started[target] = spawn(target)
        except OSError:
            pass


def take(target: str) -> subprocess.Popen:
    """The child ``prestart`` started for ``target``, or a new one."""
    proc = _started.pop(target, None)
    return proc if proc is not None else spawn(target)
