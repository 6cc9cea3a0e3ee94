"""The agent's side of field history: feed the ring and the key-signal chunk from each batch,
write a chunk now and then (``maybe_persist``) and at a clean stop, mark starts and stops, and answer
``/history`` on the health server (the agent holds the spool exclusively, so `history`
reads through it while it runs).

Nothing here may stop collection: every failure is logged and history carries on without it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from urllib.parse import parse_qs

from belabox_metrics.samples import Batch
from belabox_metrics.spool.history import persist as store_history

log = logging.getLogger(__name__)

MAX_WINDOW_S = 8 * 86400.0  # a request for more is refused (memory), like a bad time


class AgentHistory:
    def __init__(self, spool, retention_s, device_id: str = "", monotonic=time.monotonic,
                 wall=time.time, interval=store_history.CHUNK_INTERVAL) -> None:
        self.spool = spool
        self.retention_s = retention_s
        self.device_id = device_id
        self.monotonic, self.wall = monotonic, wall
        self.interval = interval  # seconds, or a callable (a reload's value applies at once)
        self.ring = store_history.Ring()
        self.chunk = store_history.ChunkBuilder()
        self._last_write = monotonic()
        self._query_lock = threading.Lock()  # one /history at a time: each may decode a lot
        # The loop feeds the chunk while /history (a health worker) reads what it holds so far.
        self._chunk_lock = threading.Lock()

    # --- fed by the loop -------------------------------------------------------------------

    def feed(self, batch: Batch) -> None:
        try:
            self.ring.add(batch)
            with self._chunk_lock:
                self.chunk.add(batch)
        except Exception:  # a malformed batch the spool will refuse too
            log.exception("history: batch at %s not kept", batch.wall_ms)

    def maybe_persist(self, now_mono: float, committed: bool = False) -> None:
        """Write the chunk every ``interval`` (storage.history_interval), or with a spool commit
        (``committed``: this tick wrote batches) once RIDE_AFTER has passed. Alone, a write costs
        the card a journal commit of its own, about what a whole commit costs, so with the
        uplink up (no commits) that is every 3 hours by default. With it down, the history rides on the
        commits and reaches the card every RIDE_AFTER at no extra journal commit."""
        interval = self.interval() if callable(self.interval) else self.interval
        since = now_mono - self._last_write
        if (since >= interval or len(self.chunk) >= store_history.CHUNK_MAX_BATCHES
                or (committed and since >= min(store_history.RIDE_AFTER, interval))):
            self._last_write = now_mono
            self.persist()

    def persist(self) -> None:
        """One history row with the key points gathered since the last one."""
        if not len(self.chunk):
            return
        try:
            with self._chunk_lock:
                start, end, blob = self.chunk.encode()
            retention = self.retention_s() if callable(self.retention_s) else self.retention_s
            keep_from = int((self.wall() - retention) * 1000)
            with self.spool.history_db() as conn:
                store_history.write_chunk(conn, start, end, blob, keep_from)
            log.debug("history: %d batches of key signals stored (%d bytes)", len(self.chunk), len(blob))
        except Exception as e:  # the ring still has the last hour; the pending batches have the rest
            log.error("history: cannot store key signals: %s", e)
        with self._chunk_lock:
            self.chunk.reset()

    def mark(self, wall_ms: int, kind: str, text: str) -> None:
        try:
            with self.spool.history_db() as conn:
                store_history.add_mark(conn, wall_ms, kind, text)
        except Exception as e:
            log.error("history: cannot record %s mark: %s", kind, e)

    def _unwritten(self) -> list[tuple[int, int, bytes]]:
        """The key points gathered since the last history write, as a chunk: with writes hours
        apart (storage.history_interval) they reach further back than the ring's hour."""
        with self._chunk_lock:  # a copy, encoded outside: a 3-hour chunk takes a while to encode
            snapshot = self.chunk.copy()
        return [snapshot.encode()] if len(snapshot) else []

    def record_start(self, wall_ms: int, boot_id: str, version: str) -> None:
        try:
            with self.spool.history_db() as conn:
                last = store_history.last_mark(conn)
        except Exception:
            last = None
        after = ""
        if last is not None and last[1] == "agent" and not last[2].startswith("agent stopped"):
            after = " after an unclean stop (crash, kill or power cut)"
        boot = f", boot {boot_id[:8]}" if boot_id and not boot_id.startswith("unknown-") else ""
        self.mark(wall_ms, "agent", f"agent started{after} (version {version}, pid {os.getpid()}{boot})")

    def record_stop(self, wall_ms: int) -> None:
        self.mark(wall_ms, "agent", "agent stopped")

    # --- /history ----------------------------------------------------------------------------

    def answer(self, query: str) -> tuple[int, bytes]:
        """(HTTP status, JSON bytes): the document is written series by series, so a day of
        every point never exists as Python lists in the agent."""
        code, body = self._answer(query)
        if isinstance(body, dict) and "error" in body and len(body) == 1:
            return code, json.dumps(body).encode()
        return code, _query().to_bytes(body)

    def _answer(self, query: str) -> tuple[int, dict]:
        """(HTTP status, JSON body) for ``/history?since=MS&until=MS&series=PATTERN&max_points=N``."""
        q = parse_qs(query, keep_blank_values=False)
        now_ms = int(self.wall() * 1000)
        try:
            until = int(q.get("until", [now_ms])[0])
            since = int(q.get("since", [until - 3600_000])[0])
            max_points = int(q["max_points"][0]) if "max_points" in q else None
        except ValueError:
            return 400, {"error": "since, until and max_points are integers (unix milliseconds)"}
        if until <= since or until - since > MAX_WINDOW_S * 1000:
            return 400, {"error": "until must be after since, at most 8 days apart"}
        patterns = [p[:200] for p in q.get("series", [])][:20]
        if not self._query_lock.acquire(blocking=False):  # never park both HTTP workers
            return 503, {"error": "another history request is being answered"}
        history_query = _query()
        try:
            doc = history_query.from_spool(self.spool, since, until, patterns, ring=self.ring,
                                           max_points=max_points, unwritten=self._unwritten(),
                                           device_id=self.device_id, host=socket.gethostname())
        except history_query.HistoryUnavailable as e:
            return 500, {"error": str(e)}
        finally:
            self._query_lock.release()
        return 200, doc


def _query():
    """spool/history/query, imported at the first /history request: most agents never get one,
    and it is not resident until then."""
    from belabox_metrics.spool.history import query

    return query
