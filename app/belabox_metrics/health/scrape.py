"""Parsing the Prometheus text exposition format (the agent's ``/metrics``) back into samples.

Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
Pure: the caller fetches the text. Comment, HELP and TYPE lines are skipped; a line that
does not parse is skipped and counted, so one odd line never hides the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from belabox_metrics.samples import Sample, make_labels

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Parsed:
    samples: list[Sample]
    bad_lines: int


def parse_exposition(text: str) -> Parsed:
    """Samples with the optional timestamp (ms) kept; values as floats (``NaN``, ``+Inf`` too)."""
    out: list[Sample] = []
    bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(_parse_line(line))
        except ValueError:
            bad += 1
    return Parsed(out, bad)


def _parse_line(line: str) -> Sample:
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, rest = _parse_labels(line, brace + 1)
    else:
        if space == -1:
            raise ValueError(line)
        name, rest, labels = line[:space], line[space:], {}
    parts = rest.split()
    if not name or not parts or len(parts) > 2:
        raise ValueError(line)
    value = _parse_value(parts[0])
    ts = int(parts[1]) if len(parts) == 2 else 0
    return Sample(name, make_labels(labels), value, ts)


def _parse_value(text: str) -> float:
    low = text.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    return float(text)


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], str]:
    labels: dict[str, str] = {}
    n = len(line)
    while True:
        while pos < n and line[pos] in " ,":
            pos += 1
        if pos < n and line[pos] == "}":
            return labels, line[pos + 1:]
        eq = line.find("=", pos)
        if eq == -1 or eq + 1 >= n or line[eq + 1] != '"':
            raise ValueError(line)
        key = line[pos:eq].strip()
        pos = eq + 2
        buf = []
        while pos < n and line[pos] != '"':
            if line[pos] == "\\" and pos + 1 < n:
                buf.append(_ESCAPES.get(line[pos + 1], "\\" + line[pos + 1]))
                pos += 2
            else:
                buf.append(line[pos])
                pos += 1
        if pos >= n:
            raise ValueError(line)
        labels[key] = "".join(buf)
        pos += 1


def by_name(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.name, []).append(s)
    return out
