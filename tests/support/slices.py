"""Spool slices built by hand, for tests of the pure wire code."""

from __future__ import annotations

from belabox_metrics.samples import Sample
from belabox_metrics.spool.store import Slice


def make_slice(batch_id: int, wall_ms: int, samples: list[Sample], start: int = 0,
               boot_id: str = "boot", synced: bool = True) -> Slice:
    """A slice of samples with ts 0 resolved to ``wall_ms``, as the spool hands them out."""
    resolved = tuple(s if s.ts_ms else Sample(s.name, s.labels, s.value, wall_ms) for s in samples)
    return Slice(batch_id, start, start + len(resolved), resolved, wall_ms, boot_id, 0, synced, 100 * len(resolved))
