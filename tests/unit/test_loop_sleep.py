"""How long the agent's loop sleeps: until the next thing due, at most MAX_SLEEP. A tick every
second was over half of the agent's CPU at a 30-s interval; sleeping past a commit would stretch
the power-cut loss bound, and past a watchdog ping would get the service killed."""

from __future__ import annotations

from types import SimpleNamespace

from belabox_metrics.agent.loop import MAX_SLEEP, Agent


def _agent(next_due: float, commit_due: float | None, ping_in: float | None = None):
    notifier = None if ping_in is None else SimpleNamespace(next_ping_in=lambda now: ping_in)
    return SimpleNamespace(runner=SimpleNamespace(next_due=lambda: next_due),
                           spool=SimpleNamespace(next_commit_due=lambda: commit_due), notifier=notifier)


def test_idle_sleeps_the_longest_bound_not_a_second():
    assert MAX_SLEEP >= 5.0
    assert Agent._sleep_for(_agent(next_due=130.0, commit_due=None), 100.0) == MAX_SLEEP


def test_wakes_for_the_collection_the_commit_or_the_watchdog_whichever_is_first():
    assert Agent._sleep_for(_agent(102.0, None), 100.0) == 2.0
    assert Agent._sleep_for(_agent(130.0, 101.5), 100.0) == 1.5  # a held batch's commit_interval ends
    # Still due after the tick that tried: the write failed, and the loop must not spin on it.
    assert Agent._sleep_for(_agent(130.0, 99.0), 100.0) == MAX_SLEEP
    assert Agent._sleep_for(_agent(130.0, None, ping_in=0.3), 100.0) == 0.3
    assert Agent._sleep_for(_agent(130.0, None, ping_in=0.0), 100.0) == 0.01  # never a busy loop
