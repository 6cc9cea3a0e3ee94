"""The two lanes of an upload cycle (design §5): which slices of the spool go next.

The live lane takes the newest data (the last ``LIVE_WINDOW_INTERVALS`` upload intervals),
newest first; the backlog lane then takes the rest oldest-first, leaving alone the batches
the live lane handled. Neither lane decides when to stop or how fast to go: ``Run`` (its
``should_stop`` and ``pace``) does, and delivery.py sends what a lane took. Also the
progress a ``queue drain`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from belabox_metrics.upload.delivery import CycleResult, Delivery, Run

log = logging.getLogger("belabox_metrics.upload.uploader")  # the uploader's lines, one logger

# The live lane covers this many upload intervals back from now; older data is backlog.
LIVE_WINDOW_INTERVALS = 2


@dataclass(frozen=True)
class DrainProgress:
    sent_samples: int
    dropped_samples: int
    wire_bytes: int
    pending_samples: int  # estimate: pending at the start minus what left since
    elapsed_s: float


def live_lane(spool, delivery: Delivery, run: Run, cutoff_ms: int) -> set:
    """Sends what is newer than ``cutoff_ms``; returns the batch ids it handled, which the
    backlog lane leaves alone this cycle."""
    seen: set = set()
    while not run.should_stop():
        fresh = unseen(spool.take_newest(delivery.request_cap(), newer_than_ms=cutoff_ms), seen)
        if not fresh or not delivery.send_slices(fresh, run, "live"):
            break
    return {key[0] for key in seen}


def backlog_lane(spool, delivery: Delivery, run: Run, live_ids: set) -> None:
    seen: set = set()
    exclude = frozenset(live_ids)
    while not run.should_stop():
        if run.pace is not None and not run.pace(1):  # no take while the budget is spent
            return
        taken = spool.take_oldest(delivery.request_cap(), exclude_ids=exclude)
        if taken:
            # Oldest first: a batch older than this take's oldest is no longer pending and
            # cannot come back, so its ranges are forgotten; `seen` would otherwise grow with
            # every batch of an unthrottled drain (0.5 MB per million samples).
            floor = min(s.batch_id for s in taken)
            seen = {key for key in seen if key[0] >= floor}
        fresh = unseen(taken, seen)
        ok = bool(fresh) and delivery.send_slices(fresh, run, "backlog")
        del taken, fresh  # else the next take would hold two requests' samples at once
        if not ok:
            return


def progress_reporter(res: CycleResult, progress: Callable[[DrainProgress], None], started: float,
                      spool, clock: Callable[[], float]) -> Callable[[], None]:
    """Called after every accepted request of a drain; the pending estimate counts down from
    what the spool held when the drain started."""
    try:
        at_start = spool.stats().pending_samples or 0
    except Exception as e:  # progress must still be reported when the spool misbehaves
        log.error("spool stats failed: %s", e)
        at_start = 0

    def report() -> None:
        dropped = sum(res.dropped.values())
        progress(DrainProgress(res.sent_samples, dropped, res.wire_bytes,
                               max(0, at_start - res.sent_samples - dropped), clock() - started))
    return report


def unseen(slices, seen: set) -> list:
    """Slices not handled earlier in this lane: a spool that hands the same range out again
    (an ack that failed, a batch the timekeeper could not judge) must not loop the cycle."""
    fresh = []
    for s in slices:
        key = (s.batch_id, s.start, s.end)
        if key not in seen:
            seen.add(key)
            fresh.append(s)
    return fresh
