"""What the agent does besides collecting, kept out of the loop class: the clock-check thread,
expiring parked batches, and starting the field history. Functions of the running Agent."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("belabox_metrics.agent")


def start_history(agent: Any) -> None:
    from belabox_metrics import __version__
    from belabox_metrics.agent.history import AgentHistory
    # A callable: a reload's new retention applies at the next write.
    agent.history = AgentHistory(agent.spool, lambda: agent.cfg.storage.history_retention, agent.device_id,
                                 monotonic=agent.monotonic, interval=lambda: agent.cfg.storage.history_interval)
    wall_ms, boot_id, _, _ = agent.timekeeper.stamp()
    agent.history.record_start(wall_ms, boot_id, __version__)


def start_clock_thread(agent: Any) -> None:
    threading.Thread(target=_clock_loop, args=(agent,), name="clock", daemon=True).start()


def _clock_loop(agent: Any) -> None:
    """Skew checks make HTTP requests, so they never run on the collection loop. Without a
    time source the timekeeper asks for retries sooner than the configured interval."""
    while not agent._stop.is_set():
        url = agent.cfg.clock_skew_url
        if url and agent.timekeeper.check_due():
            try:
                agent.timekeeper.check_skew(url)
            except Exception:  # one bad check must not end clock monitoring
                log.exception("clock skew check failed")
        agent._stop.wait(5.0)


def expire_parked(agent: Any, now: float) -> None:
    """Drop parked batches (earlier boot, untrusted clock) past storage.parked_max_age,
    judged by the best known true time; without any time source nothing is judged."""
    if now < agent._next_expiry:
        return
    agent._next_expiry = now + 60.0
    true_now = agent.timekeeper.now_ms()
    if true_now is None:
        return
    dropped = agent.spool.expire_parked(true_now, agent.cfg.storage.parked_max_age)
    if dropped:
        log.warning("dropped %d parked samples older than storage.parked_max_age", dropped)
