"""Getting spool slices to the server and out of the spool.

A slice leaves the spool only through ``ack`` (after a 2xx for exactly its samples),
``drop`` (invalid or refused by the server, always counted) or ``park`` (its collection
time cannot be trusted), so acknowledged data is never sent again and nothing disappears
silently. This fixes tidewatch's all-or-nothing cycle (W1) and its poison pill (W2):
one bad sample used to block the queue forever.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from belabox_metrics.upload.transport import FATAL, REJECTED, STOPPED, Outcome, Transport
from belabox_metrics.upload.wire import Encoder, Part, Validator, count, halve, split_requests, whole

log = logging.getLogger(__name__)

UPLOADED_SAMPLES = "metrics_collector_uploaded_samples_total"
UPLOADED_BYTES = "metrics_collector_uploaded_bytes_total"
INVALID = "metrics_collector_invalid_samples_total"

# Bisecting a refused request stops when this many sub-requests were refused before any
# was accepted: then the server refuses everything (a proxy, a broken endpoint), not one
# poison sample, and dropping the request sample by sample would be data loss.
BISECT_BLIND_LIMIT = 8
# Why a batch is parked (the spool drops both as untrusted_clock once past parked_max_age):
CLOCK_UNVERIFIED = "clock_unverified"  # this boot, no time source yet: unparked once there is one
EARLIER_BOOT = "earlier_boot_unfixable"  # another boot's untrusted clock: can never be corrected


@dataclass
class CycleResult:
    ok: bool = True
    sent_samples: int = 0
    live_samples: int = 0
    backlog_samples: int = 0
    wire_bytes: int = 0
    requests: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    parked_batches: int = 0
    error: str | None = None
    status: int | None = None
    failure: str | None = None  # kind of the failure: auth, fatal (configuration), gave_up, tls
    cause: str | None = None  # failures.REFUSED, RESET, TIMEOUT, TLS, DNS, HTTP ...
    stopped: bool = False  # ended early: stop requested, deadline or byte budget
    deferred_s: float = 0.0  # nothing sent: a Retry-After or a refused token still holds this long
    duration_s: float = 0.0


@dataclass
class Run:
    """What one cycle may do (set by the uploader) and what it did."""

    token: str | None
    deadline: float | None  # monotonic; no request or wait goes past it
    retries: bool
    res: CycleResult
    should_stop: Callable[[], bool]
    pace: Callable[[int], bool] | None = None  # backlog byte budget for n bytes; False: stop this cycle
    on_accept: Callable[[], None] | None = None


@dataclass
class _Bisection:
    successes: int = 0
    blind: int = 1  # refused requests before the first accepted one; the original one counts
    largest_ok: int = 0
    leaves: list = field(default_factory=list)


class Ledger:
    """Hands acks and drops to the spool in sample order per batch.

    The spool keeps one progress offset per batch, so a range can leave only once every
    sample before it has: a quarantined sample in the middle of a batch, or the second
    half of a bisected request, waits here until the ranges before it are settled. A range
    still waiting when the cycle ends is simply sent again later (at-least-once).
    """

    def __init__(self, spool, on_drop: Callable[[str, int], None]):
        self.spool = spool
        self.on_drop = on_drop
        self._open: dict[tuple, list] = {}  # (batch_id, start) -> [next offset, {lo: (hi, reason)}]

    def settle(self, parts: Iterable[Part], reason: str | None = None) -> None:
        """Mark ``parts`` done: acknowledged (``reason`` None) or dropped for ``reason``."""
        ops: list[tuple[str | None, Part]] = []
        for p in parts:
            key = (p.slice.batch_id, p.slice.start)
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = [0, {}]
            entry[1][p.lo] = (p.hi, reason)
            pos, waiting = entry
            while pos in waiting:
                hi, why = waiting.pop(pos)
                ops.append((why, Part(p.slice, pos, hi, p.shift_ms)))
                pos = hi
            entry[0] = pos
        # One spool call per run of equal outcome, in order: the order within a batch matters.
        i = 0
        while i < len(ops):
            why = ops[i][0]
            j = i
            while j < len(ops) and ops[j][0] == why:
                j += 1
            group = _coalesce(p for _, p in ops[i:j])
            if why is None:
                self.spool.ack([p.as_slice() for p in group])
            else:
                self.spool.drop([p.as_slice() for p in group], why)
                self.on_drop(why, count(group))
            i = j


class Delivery:
    def __init__(self, spool, selfmetrics, transport: Transport, encoder: Encoder, *, timekeeper=None,
                 wall: Callable[[], float], charge: Callable[[int], None] = lambda n: None):
        self.spool = spool
        self.selfmetrics = selfmetrics
        self.transport = transport
        self.encoder = encoder
        self.timekeeper = timekeeper
        self.wall = wall
        self.charge = charge
        self.validator = Validator()
        self.batch_size = 2500
        self.size_cap: int | None = None  # samples per request that a 413-ing server accepted
        self.last_status: int | None = None
        self.ledger = Ledger(spool, lambda why, n: None)

    def request_cap(self) -> int:
        return min(self.batch_size, self.size_cap) if self.size_cap else self.batch_size

    def send_slices(self, slices, run: Run, lane: str) -> bool:
        """Send ``slices`` in requests of at most ``request_cap()`` samples. False when the
        cycle should not go on (a failure, a stop, the byte budget)."""
        self.ledger = Ledger(self.spool, lambda why, n: _count_drop(run.res, why, n))
        parts = self._corrected(slices, run)
        valid, invalid = self.validator.split(parts, self._now_ms())
        if invalid:
            self._quarantine(invalid, run)
        return all(self._send(req, run, lane) for req in split_requests(valid, self.request_cap()))

    def _now_ms(self) -> int | None:
        """"Now" for the timestamp window: the timekeeper's best true time, since on a box that
        booted in 1970 every correct timestamp looks like the future. None while there is no
        time source at all: then the window has no upper end, or yesterday's properly stamped
        backlog would be thrown away as "in the future" after a reboot without RTC."""
        tk = self.timekeeper
        if tk is None or not hasattr(tk, "now_ms"):
            return int(self.wall() * 1000)
        if getattr(tk, "source", None) == "none":
            return None
        now = tk.now_ms()  # may turn None between the two reads when the kernel loses sync
        return None if now is None else int(now)

    def unpark_restampable(self) -> int:
        """Give parked batches back to the queue once the timekeeper can re-stamp them (this
        boot, now with a time source). Without this, a box that booted without a clock would
        hold its first minutes of data until parked_max_age dropped them."""
        tk = self.timekeeper
        if tk is None or not hasattr(tk, "can_restamp") or not self.spool.stats().parked_batches:
            return 0
        ready: dict[str, bool] = {}
        ids = []
        for batch_id, boot_id, _wall_ms, _n in self.spool.parked():
            if boot_id not in ready:
                ready[boot_id] = bool(tk.can_restamp(boot_id))
            if ready[boot_id]:
                ids.append(batch_id)
        if ids:
            self.spool.unpark(ids)
            log.info("unparked %d batch(es): their collection time can now be corrected", len(ids))
        return len(ids)

    def _corrected(self, slices, run: Run) -> list[Part]:
        parts, parked = self._by_clock(slices)
        run.res.parked_batches += parked
        return parts

    def park_untrusted(self, slices) -> int:
        """Park the held batches whose time cannot be corrected now, just before the spool
        writes them (Spool.before_commit): they are written parked in that commit, where a
        failing uplink's next cycle would find them on disk and park them with a second write."""
        return self._by_clock(slices)[1]

    def _by_clock(self, slices) -> tuple[list[Part], int]:
        """The slices re-stamped to their corrected time, and the number of batches parked."""
        tk = self.timekeeper
        if tk is None:
            return [whole(s) for s in slices], 0
        parts: list[Part] = []
        park: dict[str, set] = {}
        for s in slices:
            wall_ms = tk.correct(s)
            if wall_ms is None:
                unfixable = hasattr(tk, "is_unfixable") and tk.is_unfixable(s)
                park.setdefault(EARLIER_BOOT if unfixable else CLOCK_UNVERIFIED, set()).add(s.batch_id)
            else:
                parts.append(whole(s, int(wall_ms) - s.wall_ms))
        for reason, ids in sorted(park.items()):
            self.spool.park(sorted(ids), reason)
            log.warning("parked %d batch(es) whose collection time cannot be trusted (%s)", len(ids), reason)
        return parts, sum(len(ids) for ids in park.values())

    def _send(self, parts: list[Part], run: Run, lane: str) -> bool:
        body = self.encoder.encode(parts)
        if run.pace is not None and not run.pace(len(body.data)):
            return False
        out = self._post(body, run)
        if out.ok:
            self._accept(parts, body, run, lane)
            return True
        if out.kind == REJECTED:
            return self._bisect(parts, out, run, lane)
        self._fail(out, run)
        return False

    def _post(self, body, run: Run) -> Outcome:
        self.charge(len(body.data))
        run.res.requests += 1
        out = self.transport.post(body, run.token, deadline=run.deadline, retries=run.retries)
        if out.status is not None:
            self.last_status = out.status
        return out

    def _accept(self, parts: list[Part], body, run: Run, lane: str) -> None:
        self.ledger.settle(parts)
        n = body.samples
        res = run.res
        res.sent_samples += n
        res.wire_bytes += len(body.data)
        if lane == "live":
            res.live_samples += n
        else:
            res.backlog_samples += n
        self.selfmetrics.inc(UPLOADED_SAMPLES, n)
        self.selfmetrics.inc(UPLOADED_BYTES, len(body.data))
        if run.on_accept is not None:
            run.on_accept()

    @staticmethod
    def _fail(out: Outcome, run: Run) -> None:
        if out.kind == STOPPED:
            run.res.stopped = True
            return
        res = run.res
        res.ok, res.error, res.status = False, out.message, out.status
        res.failure = "tls" if out.reason == "tls" else out.kind
        res.cause = out.cause

    # --- bisection --------------------------------------------------------------------

    def _bisect(self, parts: list[Part], first: Outcome, run: Run, lane: str) -> bool:
        """A 400 or 413 refuses the whole body: halve it until the refused samples are alone.
        A lone sample is dropped only if some other part of the request was accepted."""
        st = _Bisection()
        finished = self._bisect_node(parts, first.status, run, lane, st)
        if st.successes and st.leaves:
            for part, status in st.leaves:
                self._drop([part], f"rejected_{status}", run)
                s = part.samples()[0]
                log.warning("dropped one sample the server refuses with HTTP %s: %s%s", status, s.name,
                            dict(s.labels))
        if first.status == 413 and st.largest_ok:
            self.size_cap = min(self.request_cap(), st.largest_ok)
            log.warning("the server refuses large bodies (HTTP 413): at most %d samples per request "
                        "until the next reload", self.size_cap)
        if not st.successes and run.res.ok and not run.res.stopped:
            # Everything refused is an endpoint problem (a remote-write URL, a proxy), not data:
            # a person must fix it, so it counts as a configuration failure.
            what = first.message or f"HTTP {first.status}"
            log.error("upload error: %s: the server refuses every part of the request; kept in the spool", what)
            self._fail(Outcome(FATAL, first.status, first.reason,
                               f"{what}: the server refuses every part of the request; kept in the spool"), run)
        return finished and st.successes > 0

    def _bisect_node(self, parts: list[Part], status, run: Run, lane: str, st: _Bisection) -> bool:
        if count(parts) == 1:
            st.leaves.append((parts[0], status))
            return True
        refused = []
        # Both halves first, then deeper: a single poison sample shows itself at the first
        # level (one half accepted), which is the evidence that the server works at all.
        for half in halve(parts):
            if (not st.successes and st.blind >= BISECT_BLIND_LIMIT) or run.should_stop():
                return False
            body = self.encoder.encode(half)
            out = self._post(body, run)
            if out.ok:
                self._accept(half, body, run, lane)
                st.successes += 1
                st.largest_ok = max(st.largest_ok, body.samples)
            elif out.kind == REJECTED:
                st.blind += 0 if st.successes else 1
                refused.append((half, out.status))
            else:
                self._fail(out, run)
                return False
        return all(self._bisect_node(half, s, run, lane, st) for half, s in refused)

    # --- leaving the spool without upload -----------------------------------------------

    def _quarantine(self, invalid: list[tuple[Part, str]], run: Run) -> None:
        reasons = Counter(r for _, r in invalid)
        self._drop([p for p, _ in invalid], "invalid", run)
        for reason, n in reasons.items():
            self.selfmetrics.inc(INVALID, n, {"reason": reason})
        example = invalid[0][0].samples()[0]
        log.warning("quarantined %d invalid sample(s) (%s), e.g. %s%s", len(invalid),
                    ", ".join(f"{r}={n}" for r, n in sorted(reasons.items())), example.name, dict(example.labels))

    def _drop(self, parts: Iterable[Part], reason: str, run: Run) -> None:
        # Counted in metrics_collector_dropped_samples_total by the spool, which owns drop
        # accounting (and keeps it across restarts); the cycle result counts them too.
        self.ledger.settle(parts, reason)


def _count_drop(res: CycleResult, reason: str, n: int) -> None:
    res.dropped[reason] = res.dropped.get(reason, 0) + n


def is_config_failure(res: CycleResult) -> bool:
    return res.failure == FATAL


def _coalesce(parts: Iterable[Part]) -> list[Part]:
    """Adjacent ranges of the same slice as one part, so the spool gets few, large ranges."""
    out: list[Part] = []
    for p in parts:
        if out and out[-1].slice is p.slice and out[-1].hi == p.lo:
            q = out[-1]
            out[-1] = Part(q.slice, q.lo, p.hi, q.shift_ms)
        else:
            out.append(p)
    return out
