"""Batches held in memory before they reach flash.

Every write to the spool file costs a filesystem journal commit on the SD card, whatever its
size. A batch the server acknowledges while it is still held here is never written at all: with
the uplink up the card sees (almost) nothing. A batch still held ``storage.commit_interval`` after
it was collected is written (spool.store), so a power cut loses at most that interval, as before.

Each held batch has the id it will keep if it is written (RowWriter.reserve_id), so an upload
in flight acknowledges it the same way in memory or on disk.

A held batch that the uploader parks (its clock cannot be trusted yet) stays held, marked, and
is written parked at its normal commit: parking it at once cost a write every upload cycle, which
was most of the flash a box without a clock wrote with its uplink down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from belabox_metrics.samples import Batch, Sample
from belabox_metrics.spool.reader import Slice

# The compressed size of a held batch is unknown until it is encoded; this is what a sample
# costs on disk at the defaults (spool.codec), used only for pending_bytes and rate budgets.
EST_BYTES_PER_SAMPLE = 6


@dataclass
class Entry:
    id: int
    batch: Batch
    at: float  # monotonic time it was appended
    done: int = 0
    park: tuple[str, int] | None = None  # (reason, since wall ms): parked, written as such

    @property
    def remaining(self) -> int:
        return len(self.batch.samples) - self.done


class Held:
    """Thread-safe: the loop appends and commits, the uploader takes and acknowledges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, Entry] = {}  # insertion order = id order = collection order
        self._samples = 0

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.id] = entry
            self._samples += entry.remaining

    def __contains__(self, batch_id: int) -> bool:
        with self._lock:
            return batch_id in self._entries

    def totals(self) -> tuple[int, int, int | None, int | None]:
        """(batches, remaining samples, oldest wall_ms, newest wall_ms) of the pending ones:
        parked batches are counted by parked_totals()."""
        with self._lock:
            live = [e for e in self._entries.values() if e.park is None]
        if not live:
            return 0, 0, None, None
        walls = [e.batch.wall_ms for e in live]
        return len(live), sum(e.remaining for e in live), min(walls), max(walls)

    def parked_totals(self) -> tuple[int, int, dict[str, int], int | None]:
        """(batches, remaining samples, samples by reason, oldest wall_ms) of the parked ones."""
        with self._lock:
            parked = [e for e in self._entries.values() if e.park is not None]
        by_reason: dict[str, int] = {}
        for e in parked:
            by_reason[e.park[0]] = by_reason.get(e.park[0], 0) + e.remaining
        return (len(parked), sum(e.remaining for e in parked), by_reason,
                min((e.batch.wall_ms for e in parked), default=None))

    def parked(self) -> list[tuple[int, str, int, int]]:
        """(batch_id, boot_id, wall_ms, samples) of each parked batch held here, oldest first."""
        with self._lock:
            return [(e.id, e.batch.boot_id, e.batch.wall_ms, e.remaining)
                    for e in self._entries.values() if e.park is not None]

    def mark(self, ids: Iterable[int], park: tuple[str, int] | None) -> set[int]:
        """Park (``park`` = (reason, since wall ms)) or unpark the batches held here; returns
        the ids that are held (the others are on disk)."""
        with self._lock:
            found = set()
            for i in ids:
                e = self._entries.get(i)
                if e is not None:
                    found.add(i)
                    if park is None or e.park is None:  # parked stays parked since the first time
                        e.park = park
            return found

    def oldest_at(self) -> float | None:
        with self._lock:
            first = next(iter(self._entries.values()), None)
            return None if first is None else first.at

    def due(self, now: float, hold_s: float, early_samples: int) -> list[Entry]:
        """Take out what must be written now: everything held once the oldest has waited
        ``hold_s``, and the oldest while more than ``early_samples`` wait (a slow uplink must not
        turn memory into the spool). Everything, not only what is due: once the window rolls,
        one batch would come due every collection, and each would cost the card a write (the
        benchmark's uplink-down flash figure did not move with commit_interval because of it)."""
        with self._lock:
            first = next(iter(self._entries.values()), None)
            if first is not None and now - first.at >= hold_s:
                out, self._entries, self._samples = list(self._entries.values()), {}, 0
                return out
            out = []
            while self._samples > early_samples and self._entries:
                e = self._entries.pop(next(iter(self._entries)))
                self._samples -= e.remaining
                out.append(e)
            return out

    def take_all(self) -> list[Entry]:
        with self._lock:
            out, self._entries, self._samples = list(self._entries.values()), {}, 0
            return out

    def put_back(self, entries: Sequence[Entry], max_samples: int) -> int:
        """A write failed: keep its batches, oldest dropped beyond ``max_samples``; returns the
        samples that had to go."""
        with self._lock:
            merged = {e.id: e for e in entries}
            merged.update(self._entries)
            self._entries = dict(sorted(merged.items()))
            self._samples = sum(e.remaining for e in self._entries.values())
            lost = 0
            while self._samples > max_samples and len(self._entries) > 1:
                gone = self._entries.pop(next(iter(self._entries)))
                self._samples -= gone.remaining
                lost += gone.remaining
            return lost

    def slices(self, newest_first: bool, max_samples: int, newer_than_ms: int | None = None,
               exclude_ids: Iterable[int] = ()) -> list[Slice]:
        """What is held, as the Slices the uploader sends, within ``max_samples``."""
        skip = set(exclude_ids)
        with self._lock:
            entries = list(self._entries.values())
        if newest_first:
            entries.reverse()
        out: list[Slice] = []
        room = max_samples
        for e in entries:
            if room <= 0:
                break
            if e.id in skip or e.park is not None:
                continue
            if newer_than_ms is not None and e.batch.wall_ms <= newer_than_ms:
                if newest_first:
                    break
                continue
            start = e.done
            end = min(len(e.batch.samples), start + room)
            if end <= start:
                continue
            b = e.batch
            # Resolved like the reader's rows: a ts_ms of 0 means the batch's collection time.
            samples = tuple(s if s.ts_ms else Sample(s.name, s.labels, s.value, b.wall_ms)
                            for s in b.samples[start:end])
            out.append(Slice(e.id, start, end, samples, b.wall_ms, b.boot_id, b.boottime_ns,
                             b.clock_synced, (end - start) * EST_BYTES_PER_SAMPLE))
            room -= end - start
        return out

    def advance(self, slices: Sequence[Slice]) -> tuple[int, list[Slice]]:
        """Move held batches' progress past these slices (acknowledged or given up); a batch
        done is forgotten, never written. Returns (samples moved, the slices not held here)."""
        moved = 0
        rest = []
        with self._lock:
            for s in slices:
                e = self._entries.get(s.batch_id)
                if e is None:
                    rest.append(s)
                    continue
                if s.start <= e.done < s.end:
                    new = min(s.end, len(e.batch.samples))
                    moved += new - e.done
                    self._samples -= new - e.done
                    e.done = new
                    if e.done >= len(e.batch.samples):
                        del self._entries[e.id]
        return moved, rest
