"""Process-wide memory settings of `run`: two limits set once before any thread starts, and
``trim()``, which the agent calls every few seconds.

The agent must stay well under 40 MB resident however large the backlog is
(tests/bench/bench_run_memory.py). Two process-wide defaults cost more than they give here:

- glibc gives every thread that calls malloc an arena of its own (up to 8 per core). The
  agent has a dozen threads, but the GIL lets only one run Python at a time, so the arenas
  buy no parallelism; their free lists hold memory no other thread can reuse.
- SQLite caches up to 2 MB of pages per connection. The spool is read once, oldest first,
  and written at the end: a cached page is rarely read again, so the cache mostly pins
  memory that a large backlog fills completely.

All of it is a hint: on a libc without mallopt, or if SQLite refuses, nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import sqlite3

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # <malloc.h>
MALLOC_ARENAS = 1
# SQLite's whole heap in this process, page cache included; SQLite recycles cache pages
# rather than grow past it (a soft limit: nothing fails). The spool's working set (schema,
# statements, the WAL index of an exclusive connection) is well below it.
SQLITE_SOFT_HEAP_BYTES = 512 << 10


def limit() -> None:
    """Apply both settings; call before starting threads (arenas already made stay)."""
    try:
        if not ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS):
            log.debug("mallopt(M_ARENA_MAX) refused")
    except (OSError, AttributeError):
        log.debug("no mallopt in this libc: malloc arenas left as they are")
    try:
        db = sqlite3.connect(":memory:")
        try:  # the limit is the process's, whichever connection sets it
            db.execute(f"PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_BYTES}")
        finally:
            db.close()
    except sqlite3.Error as e:
        log.debug("sqlite soft_heap_limit not set: %s", e)


_malloc_trim = None


def trim() -> None:
    """Give free heap memory back to the kernel, also from the middle of the heap (glibc's
    free() only returns its top); a no-op on a libc without malloc_trim."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
