"""The agent's own counters and gauges (``metrics_collector_*``), shared by every thread.

Counters live in memory and restart at zero with the process, as Prometheus counters do;
what must survive a restart (dropped samples) is also kept by the spool itself.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from belabox_metrics.samples import Labels, Sample, make_labels


class SelfMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}

    def inc(self, name: str, amount: float = 1.0, labels: Mapping[str, object] | None = None) -> None:
        key = (name, make_labels(labels))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def set(self, name: str, value: float, labels: Mapping[str, object] | None = None) -> None:
        key = (name, make_labels(labels))
        with self._lock:
            self._gauges[key] = float(value)

    def value(self, name: str, labels: Mapping[str, object] | None = None) -> float:
        key = (name, make_labels(labels))
        with self._lock:
            return self._counters.get(key, self._gauges.get(key, 0.0))

    def total(self, name: str) -> float:
        """Sum over every label set of one counter (e.g. dropped samples of all reasons)."""
        with self._lock:
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def label_values(self, name: str, label: str) -> list[str]:
        """Values of ``label`` among the gauges named ``name`` (to zero ones that went away)."""
        with self._lock:
            keys = [labels for (n, labels) in self._gauges if n == name]
        return [v for labels in keys for k, v in labels if k == label]

    def samples(self) -> list[Sample]:
        with self._lock:
            items = list(self._counters.items()) + list(self._gauges.items())
        return [Sample(name, labels, value) for (name, labels), value in items]
