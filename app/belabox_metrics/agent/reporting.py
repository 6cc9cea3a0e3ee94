"""What the agent tells about itself: storage health and spool gauges, systemd's STATUS line and
`/metrics`. Functions of the running Agent, kept apart so the loop class stays the loop."""

from __future__ import annotations

import time
from typing import Any

from belabox_metrics.health import registry as health
from belabox_metrics.health.exposition import format_samples


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
    if st.oldest_wall_ms is not None:
        sm.set("metrics_collector_spool_oldest_pending_age_seconds", max(0.0, time.time() - st.oldest_wall_ms / 1000))
    else:
        sm.set("metrics_collector_spool_oldest_pending_age_seconds", 0)


def status_line(agent: Any) -> str:
    """systemd's STATUS= (`systemctl status`): the backlog and the last upload."""
    st = agent.spool.stats()
    up = "never"
    if agent.uploader is not None and agent.uploader.last_success_wall:
        up = health.rfc3339(agent.uploader.last_success_wall)
    elif agent.uploader is None:
        up = "disabled"
    return f"pending={st.pending_samples} last_upload={up}"


def metrics_text(agent: Any) -> str:
    """`/metrics`: the agent's own counters plus the latest value of every collected series."""
    return format_samples(list(agent.selfmetrics.samples()) + list(agent.runner.latest()), with_help=True)
