"""residency: the process-wide memory settings `run` makes, checked in a fresh interpreter
(they are per process, and this one is pytest's)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import cli_env

CHECK = """
import ctypes, sqlite3, threading
from belabox_metrics.agent import residency
residency.limit()
db = sqlite3.connect(":memory:")
print(db.execute("PRAGMA soft_heap_limit").fetchone()[0])
# With one arena, a new thread's allocations come from the main arena: malloc_stats() would
# list "Arena 1" if the thread had got its own.
t = threading.Thread(target=lambda: [bytes(4096) for _ in range(100)])
t.start(); t.join()
residency.trim()
ctypes.CDLL(None).malloc_stats()
"""


def test_limit_bounds_sqlite_and_malloc_arenas():
    res = subprocess.run([sys.executable, "-c", CHECK], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[0]) == 512 * 1024
    assert "Arena 0:" in res.stderr and "Arena 1:" not in res.stderr
