"""CollectorRunner: intervals, time budgets, a stuck read, backoff, health and self-metrics."""

from __future__ import annotations

import os
import threading
import time

import pytest

from belabox_metrics import config
from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.collectors.runner import CollectorRunner
from belabox_metrics.health.registry import Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform.files import read_bytes
from belabox_metrics.samples import sample

CFG = config.loads("collection_interval: 10s\ncollectors:\n  default_timeout: 300ms\n")


class Fixed(Collector):
    def __init__(self, name: str, n: int = 3):
        super().__init__(CollectorContext(config=CFG))
        self.name = name
        self.n = n
        self.calls = 0

    def collect(self):
        self.calls += 1
        return [sample(f"test_{self.name}", i, {"i": i}) for i in range(self.n)]


class BlocksOnFifo(Collector):
    """The first collect() reads a FIFO nobody writes to: like a sysfs read from a wedged driver,
    it blocks in the kernel (open() of a FIFO waits for a writer) and Python cannot interrupt it."""

    name = "thermal"

    def __init__(self, fifo: str):
        super().__init__(CollectorContext(config=CFG))
        self.fifo = fifo
        self.calls = 0
        self.returned = threading.Event()

    def collect(self):
        self.calls += 1
        if self.calls == 1:
            data = read_bytes(self.fifo)
            self.returned.set()
            return [sample("test_thermal", float(data))]
        return [sample("test_thermal", 2.0)]


class Raises(Collector):
    name = "diskstats"

    def __init__(self):
        super().__init__(CollectorContext(config=CFG))
        self.calls = 0

    def collect(self):
        self.calls += 1
        raise ValueError("unexpected format")


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "temp")
    os.mkfifo(path)
    yield path
    # Release a reader still blocked, whatever the test did (ENXIO: there is none).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.write(fd, b"1\n")
    os.close(fd)


def names(samples):
    return {s.name for s in samples}


def test_stuck_read_is_cut_off_reported_and_backed_off(fifo):
    health, sm = Registry(), SelfMetrics()
    stuck, before, after = BlocksOnFifo(fifo), Fixed("cpu"), Fixed("meminfo")
    runner = CollectorRunner([before, stuck, after], CFG, health, sm)
    try:
        t0 = time.monotonic()
        got = runner.run_due(0.0)
        elapsed = time.monotonic() - t0
        assert names(got) == {"test_cpu", "test_meminfo"}, "the others' samples still arrive"
        assert 0.25 < elapsed < 2.0, "cut off by its 300 ms budget"
        comp = health.get("collector.thermal")
        assert comp.status == "error" and "timed out after 0.3s" in comp.message
        assert health.get("collector.meminfo").status == "ok"
        assert sm.value("metrics_collector_collector_errors_total", {"collector": "thermal"}) == 1

        # Backoff: skipped for one cycle ...
        assert names(runner.run_due(10.0)) == {"test_cpu", "test_meminfo"}
        assert stuck.calls == 1
        # ... then due again, but its read has not returned: not started a second time.
        assert names(runner.run_due(20.0)) == {"test_cpu", "test_meminfo"}
        assert stuck.calls == 1
        comp = health.get("collector.thermal")
        assert "still blocked" in comp.message and "skipping the next 2 cycle(s)" in comp.message
        assert sm.value("metrics_collector_collector_errors_total", {"collector": "thermal"}) == 2

        # The driver recovers: the read returns (late, its result is discarded).
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, b"1\n")
        os.close(fd)
        assert stuck.returned.wait(5)
        for now in (30.0, 40.0):
            runner.run_due(now)
            assert stuck.calls == 1, "still inside the backoff window"
        got = runner.run_due(50.0)
        assert stuck.calls == 2
        assert [s.value for s in got if s.name == "test_thermal"] == [2.0]
        assert health.get("collector.thermal").status == "ok"
    finally:
        runner.close()


def test_backoff_doubles_per_consecutive_timeout(tmp_path):
    paths = []
    for n in range(3):
        p = str(tmp_path / f"fifo{n}")
        os.mkfifo(p)
        paths.append(p)

    class AlwaysStuck(Collector):
        name = "hwmon"

        def __init__(self):
            super().__init__(CollectorContext(config=CFG))
            self.calls = 0

        def collect(self):
            path = paths[self.calls]
            self.calls += 1
            read_bytes(path)
            return []

    c = AlwaysStuck()
    runner = CollectorRunner([c], CFG, Registry(), SelfMetrics())
    try:
        ran_at = []
        for now in range(0, 200, 10):
            before = c.calls
            runner.run_due(float(now))
            if c.calls > before:
                ran_at.append(now)
                # Let the blocked read return so the next attempt is a fresh timeout.
                fd = os.open(paths[c.calls - 1], os.O_WRONLY)
                os.close(fd)
                blocked = runner._states[0].blocked  # the worker thread left inside collect()
                assert blocked is not None
                blocked.join(5)
            if len(ran_at) == 3:
                break
        # Timeout at 0 -> skip 1 cycle (next at 20); at 20 -> skip 2 (next at 50).
        assert ran_at == [0, 20, 50]
    finally:
        runner.close()


def test_exception_is_an_error_not_a_crash_and_is_retried_next_cycle():
    health, sm = Registry(), SelfMetrics()
    broken, ok = Raises(), Fixed("netdev")
    runner = CollectorRunner([broken, ok], CFG, health, sm)
    try:
        assert names(runner.run_due(0.0)) == {"test_netdev"}
        comp = health.get("collector.diskstats")
        assert comp.status == "error" and comp.message == "ValueError: unexpected format"
        assert comp.details == {"metrics_collected": 0}
        runner.run_due(10.0)
        assert broken.calls == 2
        assert sm.value("metrics_collector_collector_errors_total", {"collector": "diskstats"}) == 2
        assert sm.value("metrics_collector_collector_errors_total", {"collector": "netdev"}) == 0
    finally:
        runner.close()


def test_intervals_overrides_and_disabled_collectors():
    cfg = config.loads("collection_interval: 10s\ncollectors:\n  cpufreq:\n    interval: 30s\n"
                       "  pressure:\n    enabled: false\n")
    fast, slow, off = Fixed("cpu"), Fixed("cpufreq"), Fixed("pressure")
    runner = CollectorRunner([fast, slow, off], cfg, Registry(), SelfMetrics())
    try:
        seen = [names(runner.run_due(float(t))) for t in (0, 10, 20, 30, 40)]
        assert seen == [{"test_cpu", "test_cpufreq"}, {"test_cpu"}, {"test_cpu"},
                        {"test_cpu", "test_cpufreq"}, {"test_cpu"}]
        assert off.calls == 0
        # A tick that comes a little early still counts (the loop's sleep is not exact).
        assert names(runner.run_due(49.6)) == {"test_cpu"}
        assert runner.next_due() == 60.0
    finally:
        runner.close()


def test_run_all_ignores_intervals_and_self_metrics_describe_the_cycle():
    health, sm = Registry(), SelfMetrics()
    a, b = Fixed("cpu", 2), Fixed("loadavg", 5)
    runner = CollectorRunner([a, b], CFG, health, sm)
    try:
        runner.run_due(0.0)
        assert len(runner.run_all()) == 7
    finally:
        runner.close()
    assert sm.value("metrics_collector_samples_collected_total", {"collector": "loadavg"}) == 10
    assert sm.value("metrics_collector_collector_duration_seconds", {"collector": "cpu"}) >= 0
    assert health.get("collector.loadavg").details == {"metrics_collected": 5}
    assert health.get("collector.loadavg").message == "collected 5 metrics"


def test_reconfigure_disables_and_changes_interval():
    fast = Fixed("cpu")
    health = Registry()
    runner = CollectorRunner([fast], CFG, health, SelfMetrics())
    try:
        runner.run_due(0.0)
        runner.reconfigure(config.loads("collectors:\n  cpu:\n    enabled: false\n"))
        assert runner.run_due(100.0) == []
        assert health.get("collector.cpu") is None
        assert runner.latest() == []
    finally:
        runner.close()


def test_a_reload_that_shortens_the_interval_counts_from_the_last_run():
    """Found in the field: SIGHUP from 30 s to 1 s, then no sample for the rest of the old 30 s."""
    fast = Fixed("cpu")
    runner = CollectorRunner([fast], config.loads("collection_interval: 30s\n"), Registry(), SelfMetrics())
    try:
        runner.run_due(100.0)
        assert runner.next_due() == 130.0
        runner.reconfigure(config.loads("collection_interval: 1s\n"))
        assert runner.next_due() == 101.0
        assert names(runner.run_due(101.0)) == {"test_cpu"}
        # Lengthened: the run already scheduled stays, the one after follows the new interval.
        runner.reconfigure(config.loads("collection_interval: 1m\n"))
        assert runner.next_due() == 102.0
        runner.run_due(102.0)
        assert runner.next_due() == 162.0
    finally:
        runner.close()


def test_latest_holds_each_collectors_last_samples():
    a = Fixed("cpu", 2)
    runner = CollectorRunner([a], CFG, Registry(), SelfMetrics())
    try:
        runner.run_due(0.0)
        a.n = 1
        runner.run_due(10.0)
        assert [s.name for s in runner.latest()] == ["test_cpu"]
    finally:
        runner.close()
