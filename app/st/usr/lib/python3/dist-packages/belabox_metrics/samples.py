"""Sample and Batch, the units that flow from collectors to the spool and the uploader.

Naming rules follow the Prometheus data model
(https://prometheus.io/docs/concepts/data_model/): a metric name matches
``[a-zA-Z_:][a-zA-Z0-9_:]*`` and a label name ``[a-zA-Z_][a-zA-Z0-9_]*``; names
starting with ``__`` are reserved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# VictoriaMetrics rejects samples before 1970-01-02 and, without -futureRetention,
# silently ignores samples more than 2 days ahead of its clock (both answered 204).
MIN_TS_MS = 86_400_000
FUTURE_SLACK_MS = 2 * 86_400_000
# Long label values are a cardinality/wire hazard; VictoriaMetrics truncates at 4 KiB by default.
MAX_LABEL_VALUE_LEN = 1024

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series.

    ``ts_ms`` 0 means "the batch's collection time": collectors leave it at 0 and the
    agent stamps the whole batch once, which is also what lets the spool store
    timestamps as offsets and re-stamp a batch after a clock correction.
    """

    name: str
    labels: Labels
    value: float
    ts_ms: int = 0

    @property
    def series_key(self) -> tuple[str, Labels]:
        return (self.name, self.labels)

    def label(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return default


def make_labels(labels: Mapping[str, object] | None = None) -> Labels:
    """Canonical label tuple: sorted by name, values as str, ``None`` values dropped."""
    if not labels:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items() if v is not None))


def sample(name: str, value: float, labels: Mapping[str, object] | None = None, ts_ms: int = 0) -> Sample:
    """Build a Sample from a plain dict of labels."""
    return Sample(name, make_labels(labels), float(value), ts_ms)


@dataclass(frozen=True, slots=True)
class Batch:
    """The samples of one collection cycle plus the clock facts needed to fix their times later.

    ``boottime_ns`` is CLOCK_BOOTTIME at collection: unlike the wall clock it never steps,
    so ``wall_ms`` can be recomputed from it once a trustworthy offset is known.
    """

    samples: tuple[Sample, ...]
    wall_ms: int
    boot_id: str = ""
    boottime_ns: int = 0
    clock_synced: bool = True

    def __len__(self) -> int:
        return len(self.samples)

    def resolved(self) -> Iterable[Sample]:
        """Samples with ts 0 replaced by the batch time."""
        wall = self.wall_ms
        for s in self.samples:
            yield s if s.ts_ms else Sample(s.name, s.labels, s.value, wall)


def invalid_reason(s: Sample, now_ms: int, min_ts_ms: int = MIN_TS_MS) -> str | None:
    """Why VictoriaMetrics would silently drop or mangle this sample, or None when it is fine.

    The reasons are short stable words: they become the ``reason`` label of the
    dropped-samples counter.
    """
    if not METRIC_NAME_RE.match(s.name):
        return "bad_name"
    if not isinstance(s.value, float) or not math.isfinite(s.value):
        return "not_finite"
    for k, v in s.labels:
        if not LABEL_NAME_RE.match(k) or k.startswith("__"):
            return "bad_label"
        if len(v) > MAX_LABEL_VALUE_LEN or "\x00" in v:
            return "bad_label"
    if s.ts_ms < min_ts_ms:
        return "too_old"
    if s.ts_ms > now_ms + FUTURE_SLACK_MS:
        return "in_future"
    return None
