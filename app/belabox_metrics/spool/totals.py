"""Running totals of the spool, so stats() is a copy under a small lock, never a scan."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from belabox_metrics.spool.rows import Change, Row


def share(length: int, n: int, done: int) -> int:
    """A row's bytes still pending: its size in proportion to the samples not yet done."""
    return length * (n - done) // n if n else 0


class Totals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches = self.samples = self.bytes = 0
        self.parked_batches = self.parked_samples = 0
        self.oldest: int | None = None
        self.newest: int | None = None
        self.dropped: dict[str, int] = {}
        self.parked_by_reason: dict[str, int] = {}
        self.parked_bytes = 0
        self.oldest_parked: int | None = None

    def add_rows(self, rows: Iterable[Row]) -> None:
        with self.lock:
            for r in rows:
                if r.parked:
                    self.parked_batches += 1
                    self.parked_samples += r.n - r.done
                else:
                    self.batches += 1
                    self.samples += r.n - r.done
                    self.bytes += share(r.length, r.n, r.done)

    def apply(self, changes: Iterable[Change]) -> bool:
        """Account for progress and deletions; True when a row went (the ends may have moved)."""
        gone_any = False
        with self.lock:
            for c in changes:
                gone = c.new_done >= c.n
                gone_any = gone_any or gone
                if c.parked:
                    self.parked_samples -= c.new_done - c.old_done
                    self.parked_batches -= gone
                else:
                    self.samples -= c.new_done - c.old_done
                    self.bytes -= share(c.length, c.n, c.old_done) - share(c.length, c.n, c.new_done)
                    self.batches -= gone
        return gone_any

    def move(self, moved: Iterable[tuple[int, int, int, int]], to_parked: bool) -> None:
        """Rows (id, n, done, length) parked (or unparked)."""
        sign = 1 if to_parked else -1
        with self.lock:
            for _, n, done, length in moved:
                self.parked_batches += sign
                self.parked_samples += sign * (n - done)
                self.batches -= sign
                self.samples -= sign * (n - done)
                self.bytes -= sign * share(length, n, done)

    def count(self, drops: dict[str, int]) -> None:
        with self.lock:
            for r, n in drops.items():
                self.dropped[r] = self.dropped.get(r, 0) + n

    def set_ends(self, oldest: int | None, newest: int | None) -> None:
        with self.lock:
            self.oldest, self.newest = oldest, newest

    def snapshot(self) -> tuple:
        with self.lock:
            return (self.batches, self.samples, self.bytes, self.oldest, self.newest,
                    dict(self.dropped), self.parked_batches, self.parked_samples)

    def set_parked_detail(self, by_reason: dict[str, int], nbytes: int, oldest: int | None) -> None:
        with self.lock:
            self.parked_by_reason, self.parked_bytes, self.oldest_parked = dict(by_reason), nbytes, oldest

    def parked_detail(self) -> tuple[dict[str, int], int, int | None]:
        with self.lock:
            return dict(self.parked_by_reason), self.parked_bytes, self.oldest_parked
