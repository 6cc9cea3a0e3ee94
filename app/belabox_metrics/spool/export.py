"""Encoders for ``queue export``: VictoriaMetrics import JSON lines and Prometheus text; pure.

JSON lines are exactly what ``/api/v1/import`` takes (https://docs.victoriametrics.com/#json-line-format),
so an export re-imports with ``curl --data-binary @file http://vm:8428/api/v1/import``.
The Prometheus text carries millisecond timestamps (``/api/v1/import/prometheus`` takes it).
Labels: the sample's own, then the configured extra labels, then ``device_id``, as the
uploader sends them (a sample's own ``device_id`` never wins).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping

from belabox_metrics.samples import Sample

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def series_labels(s: Sample, device_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    labels = {k: v for k, v in s.labels if k not in ("__name__", "device_id")}
    for k, v in extra.items():
        if k not in ("__name__", "device_id"):
            labels[k] = v
    labels["device_id"] = device_id
    return labels


def jsonl_lines(samples: Iterable[Sample], device_id: str, extra: Mapping[str, str] | None = None,
                chunk: int = 1000) -> Iterator[str]:
    """One line per series and per ``chunk`` samples, in first-seen order. Non-finite values
    are skipped: JSON has no NaN and VictoriaMetrics drops such lines anyway."""
    extra = extra or {}
    groups: dict[tuple, tuple[list, list]] = {}
    for s in samples:
        if not math.isfinite(s.value):
            continue
        vals, tss = groups.setdefault(s.series_key, ([], []))
        vals.append(s.value)
        tss.append(s.ts_ms)
    for (name, labels), (vals, tss) in groups.items():
        metric = _dumps({"__name__": name, **series_labels(Sample(name, labels, 0.0), device_id, extra)})
        for i in range(0, len(vals), chunk):
            yield (f'{{"metric":{metric},"values":{_dumps(vals[i:i + chunk])},'
                   f'"timestamps":{_dumps(tss[i:i + chunk])}}}\n')


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def prometheus_lines(samples: Iterable[Sample], device_id: str,
                     extra: Mapping[str, str] | None = None) -> Iterator[str]:
    extra = extra or {}
    for s in samples:
        labels = series_labels(s, device_id, extra)
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        yield f"{s.name}{{{body}}} {_value(s.value)} {s.ts_ms}\n"
