"""Parked data is counted by its reason, in samples and bytes, and survives a reopen."""

from __future__ import annotations

from belabox_metrics import config
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.store import Spool


def _spool(tmp_path) -> Spool:
    return Spool.open(str(tmp_path / "metrics.db"), config.StorageConfig())


def test_parked_by_reason_samples_bytes_and_oldest(tmp_path):
    sp = _spool(tmp_path)
    for i in range(3):
        sp.append(Batch(tuple(sample("m", float(j), {"i": str(j)}) for j in range(10)), 1_000_000 + i * 1000,
                        "boot-a", i, False))
    sp.flush()
    ids = [s.batch_id for s in sp.take_oldest(100)]
    ids = sorted(set(ids))
    sp.park(ids[:1], "earlier_boot_unfixable")
    sp.park(ids[1:2], "clock_unverified")
    st = sp.stats()
    assert st.parked_by_reason == {"earlier_boot_unfixable": 10, "clock_unverified": 10}
    assert st.parked_samples == 20 and st.pending_samples == 10
    assert st.parked_bytes > 0 and st.oldest_parked_wall_ms == 1_000_000
    whole = st.parked_bytes + st.pending_bytes
    sp.unpark(ids[1:2])
    st = sp.stats()
    assert st.parked_by_reason == {"earlier_boot_unfixable": 10} and st.parked_bytes + st.pending_bytes == whole
    sp.close()
    again = Spool.open_readonly(str(tmp_path / "metrics.db"), config.StorageConfig())
    assert again.stats().parked_by_reason == {"earlier_boot_unfixable": 10}
    again._conn.close()
    sp = _spool(tmp_path)
    assert sp.expire_parked(10**13, 1.0) == 10
    st = sp.stats()
    assert st.parked_by_reason == {} and st.parked_bytes == 0 and st.oldest_parked_wall_ms is None
    sp.close()
