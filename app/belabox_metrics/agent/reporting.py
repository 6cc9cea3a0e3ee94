"""What the agent tells about itself: storage health and spool gauges, systemd's STATUS line and
`/metrics`. Functions of the running Agent, kept apart so the loop class stays the loop."""

from __future__ import annotations

import time
from typing import Any

from belabox_metrics import __version__
from belabox_metrics.health import registry as health
from belabox_metrics.health.exposition import format_samples

# Parking reasons always published (0 when none), so a dashboard sees a series drop to 0.
PARK_REASONS = ("clock_unverified", "earlier_boot_unfixable")
PARKED = "metrics_collector_spool_parked_samples"
_STATUS_VALUE = {health.OK: 0, health.DEGRADED: 1, health.ERROR: 2}


def report_storage(agent: Any) -> None:
    st = agent.spool.stats()
    fault = agent.spool.guard.fault
    facts = health.StorageFacts(
        database_size_bytes=st.db_size_bytes, wal_size_bytes=st.wal_size_bytes,
        pending_count=st.pending_samples, wal_threshold_bytes=agent.cfg.storage.wal_checkpoint_size_mb << 20,
        path=st.path, persistent=agent.data_path.persistent, volatile_reason=agent.data_path.reason,
        quarantined=agent.spool.open_report.quarantined, dropped=dict(st.dropped),
        # A write fault stays until a commit succeeds (spool.guard), not until a quiet cycle.
        commit_error=fault.message if fault is not None else agent._commit_error,
        notice=agent.spool.guard.current_notice())
    agent.health.update("storage", *health.storage_health(facts))
    sm = agent.selfmetrics
    sm.set("metrics_collector_spool_pending_samples", st.pending_samples)
    sm.set("metrics_collector_spool_pending_bytes", st.pending_bytes)
    sm.set("metrics_collector_spool_database_bytes", st.db_size_bytes)
    sm.set("metrics_collector_spool_wal_bytes", st.wal_size_bytes)
    now = time.time()
    if st.oldest_wall_ms is not None:
        sm.set("metrics_collector_spool_oldest_pending_age_seconds", max(0.0, now - st.oldest_wall_ms / 1000))
    else:
        sm.set("metrics_collector_spool_oldest_pending_age_seconds", 0)
    by_reason = dict(st.parked_by_reason)
    for reason in sorted(set(PARK_REASONS) | set(by_reason) | set(sm.label_values(PARKED, "reason"))):
        sm.set(PARKED, by_reason.get(reason, 0), {"reason": reason})
    sm.set("metrics_collector_spool_parked_bytes", st.parked_bytes)
    oldest_parked = st.oldest_parked_wall_ms
    sm.set("metrics_collector_spool_oldest_parked_age_seconds",
           max(0.0, now - oldest_parked / 1000) if oldest_parked is not None else 0)
    # The same snapshot goes into the uploader's health, so /health and /metrics agree.
    if agent.uploader is not None:
        agent.uploader.report(st)
    report_components(agent)


def report_components(agent: Any) -> None:
    """metrics_collector_component_status{component} (0 ok, 1 degraded, 2 error) and build_info,
    which the fleet tool reads instead of polling /health."""
    sm = agent.selfmetrics
    for name, comp in agent.health.components().items():
        sm.set("metrics_collector_component_status", _STATUS_VALUE[comp.status], {"component": name})
    sm.set("metrics_collector_build_info", 1, {"version": __version__})


def status_line(agent: Any) -> str:
    """systemd's STATUS= (`systemctl status`): the backlog and the last upload."""
    st = agent.spool.stats()
    up = "never"
    if agent.uploader is not None and agent.uploader.last_success_wall:
        up = health.rfc3339(agent.uploader.last_success_wall)
    elif agent.uploader is None:
        up = "disabled"
    line = f"pending={st.pending_samples} parked={st.parked_samples} last_upload={up}"
    binder = getattr(agent, "server", None)
    problem = getattr(binder, "problem", None)
    if problem:
        line += f" health: {problem}"
    return line


def metrics_text(agent: Any) -> str:
    """`/metrics`: the agent's own counters plus the latest value of every collected series."""
    return format_samples(list(agent.selfmetrics.samples()) + list(agent.runner.latest()), with_help=True)
