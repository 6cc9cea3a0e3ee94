"""Back to persistent storage: an agent that had to start on volatile storage (the data
directory read-only or missing at start) moves its spool home once the directory is usable.

Checked every RECHECK_S on the collection loop (a probe file create + unlink). Moves only into
an empty place: an older spool waiting there is never overwritten; the agent says so and a
restart picks that file up (its batches and ours cannot be merged under a running uploader)."""

from __future__ import annotations

import logging
import os
from typing import Any

from belabox_metrics.platform.lock import AlreadyRunning, InstanceLock, lock_path_for

log = logging.getLogger(__name__)

RECHECK_S = 10.0


def maybe_return(agent: Any, now: float) -> None:
    if agent.data_path is None or agent.data_path.persistent or now < agent._next_home_check:
        return
    agent._next_home_check = now + RECHECK_S
    from belabox_metrics.spool import location as paths

    try:
        home = paths.resolve_data_dir(agent.cfg, agent.environ, procfs=agent.roots.procfs)
    except OSError:
        return
    if not home.persistent:
        return
    if os.path.exists(home.db_path) and os.path.getsize(home.db_path) > 0:
        if not agent._home_blocked:
            agent._home_blocked = True
            log.warning("storage: %s is writable again but holds an older spool; restart the agent "
                        "to go back to it (running on %s meanwhile)", home.dir, agent.data_path.dir)
        return
    lock = InstanceLock(lock_path_for(home.db_path))
    try:
        lock.acquire()
    except (AlreadyRunning, OSError) as e:
        log.warning("storage: cannot take %s: %s", home.dir, e)
        return
    old_dir = agent.data_path.dir
    try:
        agent.spool.relocate(home.db_path)
    except Exception as e:  # the spool stays where it was, and says so in health
        lock.release()
        log.error("storage: cannot move the spool to %s: %s", home.dir, e)
        return
    if agent.spool.path != os.path.abspath(home.db_path):
        lock.release()  # the copy failed: the spool's guard holds the reason
        return
    if agent.lock is not None:
        agent.lock.release()
    agent.lock, agent.data_path = lock, home
    agent.spool.guard.notice(f"moved back to persistent storage {home.dir} (was on {old_dir})")
    log.warning("storage: %s is usable again: spool moved there from %s", home.dir, old_dir)
