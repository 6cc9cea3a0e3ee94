"""Memory stays flat however large the backlog: the spool streams from disk."""

from __future__ import annotations

import gc

import psutil
import pytest

from belabox_metrics.config import StorageConfig
from belabox_metrics.spool.store import Spool
from tests.support.spoolgen import BatchGen

SAMPLES = 1_000_000
# Holding the backlog decoded would take well over 100 MB (a Sample plus its float is ~80 bytes).
MAX_GROWTH = 40 << 20


def rss() -> int:
    return psutil.Process().memory_info().rss


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.long  # a full image write or a 1M backlog: `scripts/test --long` (CI runs it too)
def test_draining_a_million_sample_backlog_keeps_rss_flat(tmp_path):
    path = str(tmp_path / "metrics.db")
    sp = Spool.open(path, StorageConfig())
    gen = BatchGen(seed=2)
    for i in range(-(-SAMPLES // 300)):
        sp.append(gen.batch())
        if i % 200 == 0:
            sp.flush()
    sp.close()
    del gen
    gc.collect()

    sp = Spool.open(path, StorageConfig())
    assert sp.stats().pending_samples >= SAMPLES
    sp.take_oldest(2500)  # warm the caches before the baseline
    base = peak = rss()

    exported = 0
    for sl in sp.iter_pending():  # `queue export`: everything, without acknowledging
        exported += len(sl.samples)
        if exported % 50_000 < 300:
            peak = max(peak, rss())
    assert exported >= SAMPLES
    assert peak - base < MAX_GROWTH, f"export grew RSS by {(peak - base) >> 20} MiB"

    drained = 0
    while sl := sp.take_oldest(2500):
        sp.ack(sl)
        drained += sum(len(s.samples) for s in sl)
        if drained % 50_000 < 2500:
            peak = max(peak, rss())
    assert drained == exported
    assert sp.stats().pending_samples == 0
    assert peak - base < MAX_GROWTH, f"draining grew RSS by {(peak - base) >> 20} MiB"
    sp.close()
