"""A fake ``journalctl`` for the kernel-event reader tests: a script that behaves like
``journalctl -k [-f] -o json [--after-cursor=C | -n 0]`` over lines the test controls.

Environment of the script (set by ``FakeJournal``):
- replay.jsonl: the entries of this boot so far, printed by the non-follow call.
- follow.jsonl: the entries printed by ``-f`` after the cursor; lines appended while it
  runs are printed too (like tail -f).
- mode: ``ok``; ``exit-once`` (the first ``-f`` call exits 1 with an error on stderr);
  ``hint`` (no entries, journalctl's not-in-the-group warning on stderr); ``fail`` (exit 1).
- calls.log: one line of argv per call; pids: one PID per call.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SCRIPT = r'''#!{python}
import json, os, sys, time
d = {dir!r}
args = sys.argv[1:]
with open(os.path.join(d, "calls.log"), "a") as f:
    f.write(" ".join(args) + "\n")
with open(os.path.join(d, "pids"), "a") as f:
    f.write(str(os.getpid()) + "\n")
mode = open(os.path.join(d, "mode")).read().strip()
follow = "-f" in args
if mode == "fail":
    sys.stderr.write("Failed to open journal: Input/output error\n")
    sys.exit(1)
if mode == "hint":
    sys.stderr.write("Hint: You are currently not seeing messages from other users and the system.\n"
                     "      Users in groups 'adm', 'systemd-journal' can see all messages.\n")
    sys.exit(0)
out = sys.stdout
if not follow:
    with open(os.path.join(d, "replay.jsonl")) as f:
        out.write(f.read())
    sys.exit(0)
cursor = None
for a in args:
    if a.startswith("--after-cursor="):
        cursor = a.split("=", 1)[1]
follows = sum(1 for line in open(os.path.join(d, "calls.log")) if " -f " in " " + line + " ")
def cursor_of(line):
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry.get("__CURSOR") if isinstance(entry, dict) else None
path = os.path.join(d, "follow.jsonl")
pos = 0
# One journal, two files: a cursor from the replay means "from the start of follow.jsonl".
replayed = [cursor_of(x) for x in open(os.path.join(d, "replay.jsonl"))]
skipping = cursor is not None and cursor not in replayed
while True:
    with open(path) as f:
        f.seek(pos)
        chunk = f.read()
        pos = f.tell()
    for line in chunk.splitlines():
        if skipping:
            if cursor_of(line) == cursor:
                skipping = False
            continue
        out.write(line + "\n")
    out.flush()
    if mode == "exit-once" and follows == 1:
        sys.stderr.write("Failed to iterate through journal: Bad message\n")
        sys.exit(1)
    time.sleep(0.05)
'''


class FakeJournal:
    def __init__(self, directory: Path, mode: str = "ok"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journalctl"
        self.path.write_text(SCRIPT.format(python=sys.executable, dir=str(self.dir)))
        self.path.chmod(0o755)
        self.set_mode(mode)
        (self.dir / "replay.jsonl").write_text("")
        (self.dir / "follow.jsonl").write_text("")
        self._n = 0

    def set_mode(self, mode: str) -> None:
        (self.dir / "mode").write_text(mode)

    def entry(self, message: str | list[int]) -> str:
        self._n += 1
        return json.dumps({"__CURSOR": f"s=abc;i={self._n}",
                           "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + self._n),
                           "_TRANSPORT": "kernel", "PRIORITY": "6", "MESSAGE": message}) + "\n"

    def replay(self, *messages) -> None:
        with open(self.dir / "replay.jsonl", "a") as f:
            for m in messages:
                f.write(self.entry(m))

    def follow(self, *messages, raw: str = "") -> None:
        with open(self.dir / "follow.jsonl", "a") as f:
            for m in messages:
                f.write(self.entry(m))
            f.write(raw)

    def calls(self) -> list[str]:
        p = self.dir / "calls.log"
        return p.read_text().splitlines() if p.exists() else []

    def pids(self) -> list[int]:
        p = self.dir / "pids"
        return [int(x) for x in p.read_text().split()] if p.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
