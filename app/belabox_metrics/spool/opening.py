"""Opening the spool: directories, the integrity check, quarantine and salvage of a damaged
file, migration, and the read-only look of `diagnose` and `queue`. A part of spool.store.Spool."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import quote

from belabox_metrics.config import StorageConfig
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.samples import Batch
from belabox_metrics.spool import guard as spool_guard
from belabox_metrics.spool import upkeep
from belabox_metrics.spool.schema import (
    BUSY_TIMEOUT_S,
    Budget,
    DamagedError,
    StoreError,
    check,
    configure,
    connect,
    is_damage,
    is_locked,
    migrate,
)

log = logging.getLogger("belabox_metrics.spool.store")


@dataclass(frozen=True)
class OpenReport:
    quarantined: str | None
    salvaged_batches: int
    salvaged_samples: int
    message: str


class Opening:
    """Spool's constructors (a mixin: the state is Spool's)."""

    @classmethod
    def open(cls, path: str, cfg: StorageConfig, selfmetrics: SelfMetrics | None = None,
             clock=time.monotonic) -> Opening:
        """Create directories, check integrity (quarantine + salvage on damage), migrate."""
        from belabox_metrics.spool import salvage as store_salvage

        path = os.path.abspath(path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise StoreError(f"{os.path.dirname(path)}: cannot create the spool directory "
                             f"({e.strerror or e})") from None
        budget = Budget.of(cfg)
        quarantined = damage = None
        empty = spool_guard.empty_file(path)
        if empty:  # SQLite would take it for a new database without a word
            log.warning("spool %s is an empty file (0 bytes): initialising a new spool; what it "
                        "held before, if anything, is gone and cannot be counted", path)
        try:
            conn = cls._prepare(path, budget)
        except DamagedError as e:
            damage = str(e)
            try:
                quarantined = store_salvage.quarantine(path)
            except OSError as err:
                raise StoreError(f"{path}: {damage}, and it cannot be moved aside "
                                 f"({err.strerror or err})") from None
            log.error("spool %s: %s; moved to %s", path, damage, quarantined)
            conn = cls._prepare(path, budget)
        spool = cls(conn, path, cfg, budget, selfmetrics, clock)
        with spool._db:
            shrunk = upkeep.enforce_cap(spool._writer)
        spool._load()
        spool._count(shrunk, persist=False, totals=False)  # _load read them from the table
        if empty:
            spool.guard.notice("spool file was empty (0 bytes) at start: initialised a new one")
            spool.open_report = OpenReport(None, 0, 0, "spool file was empty (0 bytes): initialised")
        elif quarantined is None:
            st = spool.stats()
            spool.open_report = OpenReport(None, 0, 0, f"spool ok: {st.pending_samples} samples pending")
        else:
            spool.open_report = spool._salvage(quarantined, damage or "damaged")
        return spool

    @classmethod
    def open_readonly(cls, path: str, cfg: StorageConfig) -> Opening:
        """A look without touching (``diagnose``, ``queue stats|export``): SQLite's mode=ro, so no
        migration, checkpoint or salvage, and a damaged file stays as found. While the agent runs
        it fails with "database is locked": the agent holds the file exclusively."""
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise StoreError(f"{path}: no spool file")
        try:
            conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            spool = cls(conn, path, cfg, Budget.of(cfg), None, time.monotonic)
            spool._readonly = True
            spool._load()
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read the spool ({e})") from None
        return spool

    @staticmethod
    def _prepare(path: str, budget: Budget) -> sqlite3.Connection:
        try:
            conn = connect(path)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the spool ({e})") from None
        try:
            configure(conn, budget)
            check(conn)
            migrate(conn)
        except DamagedError:
            conn.close()
            raise
        except sqlite3.DatabaseError as e:
            conn.close()
            if is_damage(e):
                raise DamagedError(f"not a usable database ({e})") from None
            if is_locked(e):
                raise StoreError(f"{path}: in use by another process (the agent holds it while it "
                                 "runs)") from None
            raise StoreError(f"{path}: cannot use the spool ({e})") from None
        return conn

    def _salvage(self, quarantined: str, damage: str) -> OpenReport:
        from belabox_metrics.spool import salvage as store_salvage

        rep = store_salvage.Salvage()
        chunk: list[tuple[Batch, str | None]] = []
        for item in store_salvage.salvage(quarantined, rep):
            chunk.append(item)
            if len(chunk) >= 256:
                self._store_salvaged(chunk)
                chunk = []
        self._store_salvaged(chunk)
        self._count({"corrupt": rep.lost_samples})
        self._count(rep.dropped, metrics=False)  # the old file's history, not new drops
        msg = (f"spool was damaged ({damage}); moved to {os.path.basename(quarantined)}; salvaged "
               f"{rep.batches} batches ({rep.samples} samples)")
        if rep.repair:
            msg += f" from a copy whose damaged start was repaired ({rep.repair})"
        if rep.scan:
            msg += f" ({rep.scan})"
        if rep.lost_batches:
            msg += f", {rep.lost_batches} unreadable batches ({rep.lost_samples} samples) counted as dropped"
        if rep.error:
            msg += f"; nothing readable: {rep.error}"
        log.warning("%s", msg)
        return OpenReport(quarantined, rep.batches, rep.samples, msg)

    def _store_salvaged(self, items: list[tuple[Batch, str | None]]) -> None:
        if not items:
            return
        ids = self._insert([b for b, _ in items])
        by_reason: dict[str, list[int]] = {}
        for i, (_, reason) in zip(ids, items, strict=True):
            if reason is not None:
                by_reason.setdefault(reason, []).append(i)
        for reason, group in by_reason.items():
            self.park(group, reason)
