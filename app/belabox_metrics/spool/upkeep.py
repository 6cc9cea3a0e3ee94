"""Upkeep of the spool's rows outside the write path: parking, the age of parked batches, and
holding the file to its size cap. Functions of a RowWriter (spool/rows.py), kept apart so the
writer stays about writing."""

from __future__ import annotations

from collections.abc import Collection

from belabox_metrics.spool.rows import RowWriter


def set_parked(writer: RowWriter, ids: Collection[int], parked: bool, reason: str = "", since_ms: int = 0
               ) -> list[tuple[int, int, int, int]]:
    """Park or unpark; returns (id, n, done, length) of the rows that changed state."""
    def fn(c):
        moved = []
        for i in ids:
            r = c.execute("SELECT n, done, length(data) FROM batches WHERE id = ? AND parked = ?",
                          (i, int(not parked))).fetchone()
            if r:
                moved.append((i, *r))
        c.executemany("UPDATE batches SET parked = ? WHERE id = ?", [(int(parked), m[0]) for m in moved])
        if parked:
            c.executemany("INSERT OR REPLACE INTO parked VALUES (?, ?, ?)",
                          [(m[0], reason, since_ms) for m in moved])
        else:
            c.executemany("DELETE FROM parked WHERE batch_id = ?", [(m[0],) for m in moved])
        return moved
    return writer.transaction(fn)


def expired_parked(writer: RowWriter, now_ms: int, max_age_ms: int) -> list[int]:
    def fn(c):
        # Parked under a clock that ran ahead: start their age now rather than never.
        c.execute("UPDATE parked SET since_ms = ? WHERE since_ms > ?", (now_ms, now_ms))
        return [r[0] for r in c.execute("SELECT batch_id FROM parked WHERE since_ms <= ?",
                                        (now_ms - max_age_ms,))]
    return writer.transaction(fn)


def enforce_cap(writer: RowWriter) -> dict[str, int]:
    """Set the hard page limit; a file already past it (the cap was lowered) loses its oldest
    batches and is vacuumed down first. Returns drop counts."""
    c = writer.conn
    drops: dict[str, int] = {}
    if c.execute("PRAGMA page_count").fetchone()[0] > writer.budget.max_pages:
        target = int(writer.budget.max_pages * 0.9)
        while True:  # pages_for() is an estimate: measure again until the live pages fit
            used = writer.budget.max_pages - writer.free_pages()
            if used <= target or not writer._make_room(used - target, "size_cap", [], drops):
                break
        writer.gc()
        c.execute("VACUUM")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rewrite went through the WAL
    # Hard stop at the cap: an insert past it fails with SQLITE_FULL and the oldest batches go
    # (the free-page check before each insert usually gets there first). SQLite silently clamps
    # it to the current size, hence the shrinking above.
    c.execute(f"PRAGMA max_page_count = {writer.budget.max_pages}")
    return drops
