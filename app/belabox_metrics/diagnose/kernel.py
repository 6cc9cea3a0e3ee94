"""Kernel events for ``diagnose``: USB disconnects and resets, under-voltage, HDMI input loss,
storage errors, OOM kills, with their times.

Counts come from the running agent's ``belabox_kernel_events_total`` (this boot, every
event); the lines come from replaying this boot's kernel journal (``journalctl -k``) or, for
a recorded board tree, its ``kernel-journal.jsonl``, classified by platform/kmsg.classify
(collectors/kernel_events.recent_kernel_events). The pure half is ``summarise``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from belabox_metrics.health.registry import rfc3339
from belabox_metrics.samples import Sample

REPLAY_WAIT = 3.0


def counts_from_metrics(samples: Iterable[Sample]) -> dict[str, int] | None:
    """Events per kind from the agent's counters, or None when it publishes none."""
    out: dict[str, int] = {}
    seen = False
    for s in samples:
        if s.name == "belabox_kernel_events_total":
            seen = True
            kind = s.label("kind") or "unknown"
            out[kind] = out.get(kind, 0) + int(s.value)
    return out if seen else None


def summarise(events: Iterable[Mapping[str, Any]], counts: Mapping[str, int] | None,
              problems: Iterable[str] = (), source: str = "") -> dict[str, Any]:
    """The report's ``kernel_events`` entry: counts per kind, the event lines (oldest first,
    each with an RFC 3339 time) and any problem reading the journal."""
    recent = []
    for e in events:
        us = e.get("time_us")
        recent.append({"time": rfc3339(us / 1e6) if isinstance(us, (int, float)) else None,
                       "kind": e.get("kind"), "device": e.get("device"), "modem": e.get("modem") or None,
                       "message": e.get("message")})
    if counts is None:
        by_kind: dict[str, int] = {}
        for e in recent:
            by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + 1
        counts, counted = by_kind, "the lines below"  # the replay keeps kernel_event_lines of them
    else:
        counted = "the running agent (this boot)"
    return {"source": source, "counts": dict(sorted(counts.items())), "counted_from": counted,
            "recent": recent, "problems": list(problems)}


def kernel_facts(cfg, roots: tuple[str, str, str], samples: list[Sample], running: bool,
                 journalctl: tuple[str, ...] = ("journalctl",)) -> dict[str, Any]:
    if not cfg.belabox.kernel_events:
        return {"disabled": "belabox.kernel_events is false"}
    from belabox_metrics.collectors import CollectorContext
    from belabox_metrics.collectors.kernel_events import recent_kernel_events
    from belabox_metrics.platform import recorded
    procfs, sysfs, rootfs = roots
    live = recorded.is_live_procfs(procfs)
    source = "journalctl -k (this boot)" if live else recorded.beside(procfs, recorded.KERNEL_JOURNAL)
    try:
        events, problems = recent_kernel_events(CollectorContext(config=cfg, procfs=procfs, sysfs=sysfs,
                                                                 rootfs=rootfs), journalctl, wait=REPLAY_WAIT)
    except Exception as e:  # the rest of the report matters more than this row
        events, problems = [], [f"cannot read kernel events: {e}"]
    counts = counts_from_metrics(samples) if running else None
    return summarise(events, counts, problems, source)
