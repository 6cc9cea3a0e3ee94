"""The Prometheus text exposition format (version 0.0.4) for a list of samples.

Spec: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format.
Output is sorted by name and labels so it can be diffed against a golden file; shared by
``collect --once`` and the health server's /metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from belabox_metrics.health.metric_help import help_text
from belabox_metrics.samples import Sample


def metric_type(name: str) -> str:
    """Counters by the naming convention (``_total``); everything else is a gauge."""
    return "counter" if name.endswith("_total") else "gauge"


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_series(s: Sample) -> str:
    if s.labels:
        inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in s.labels)
        return f"{s.name}{{{inner}}}"
    return s.name


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_samples(samples: Iterable[Sample], with_timestamps: bool = False, with_help: bool = False) -> str:
    """Text with one ``# TYPE`` line per metric name (and a ``# HELP`` line before it when
    ``with_help``: /metrics has them, the golden ``collect`` output does not). A series that
    occurs twice is written once (the last value wins), since Prometheus rejects duplicate
    series in one scrape."""
    latest: dict[tuple, Sample] = {}
    for s in samples:
        latest[(s.name, s.labels)] = s
    lines: list[str] = []
    current = None
    for key in sorted(latest):
        s = latest[key]
        if s.name != current:
            current = s.name
            if with_help:
                lines.append(f"# HELP {s.name} {escape_help(help_text(s.name))}")
            lines.append(f"# TYPE {s.name} {metric_type(s.name)}")
        line = f"{format_series(s)} {format_value(s.value)}"
        if with_timestamps and s.ts_ms:
            line += f" {s.ts_ms}"
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""
