"""The real agent's /health and /metrics under load, with 100 clients beside it that send their
request head one byte a second, in two phases:

- saturation: 500 concurrent clients, each asking again as soon as it has its answer. On two
  shared cores the server (one process, one GIL) and this load generator saturate the machine,
  so latency here is 500 / throughput whatever the server does; asserted is that every request
  gets an answer (200, or 503 with Retry-After; never a close without one) and the agent keeps
  its collection schedule.
- polling: 500 concurrent clients each asking once a second (a fleet of dashboards, 500 times
  what a box normally sees): every request answered, and quickly.

Slow-head clients are let go by the head deadline (or sooner, to make room) without holding
anyone up. The latency figures come from `scripts/bench health_load` (the same load, printed);
here the bound is one only a broken server misses on a loaded CI machine, not the figure.
``BELABOX_CHAOS_LOAD_SECONDS`` (default 10) sets how long each phase lasts.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.agent import AgentProcess
from tests.support.healthload import CLIENTS, HEAD_TIMEOUT_S, INTERVAL_S, LOAD_S, SLOW_CLIENTS, run_phase

# The README's figure (p99 24 ms polling) is the bench's; a server that queues or stalls is far above this.
P99_SANITY_S = 0.200


def check_common(report: dict, answers: list) -> None:
    unanswered = [(p, round(t, 3)) for p, t, st in answers if st not in (200, 503)]
    assert not unanswered, f"{len(unanswered)} requests closed with no answer, e.g. {unanswered[:5]}; {report}"
    assert report["served"] >= CLIENTS, report  # every client was served about once at least
    assert report["slow_heads"] == SLOW_CLIENTS, report
    assert report["slow_head_let_go_after_s"] <= LOAD_S + HEAD_TIMEOUT_S + 3, report
    # The schedule: one batch a second, none missing, none late by more than half an interval.
    assert report["collection_batches"] >= int(LOAD_S / INTERVAL_S) - 1, report
    assert report["largest_gap_s"] <= 1.5 * INTERVAL_S, report


@pytest.mark.slow
@pytest.mark.long  # two phases of 10 s plus the agent: `scripts/test --long`
@pytest.mark.timeout(180)
def test_500_clients_and_100_slow_heads_are_answered_fast_and_collection_keeps_time(tmp_path):
    agent = AgentProcess(tmp_path / "agent", {"collection_interval": f"{INTERVAL_S:g}s",
                                              "storage": {"commit_interval": "1s"}})
    with agent:
        time.sleep(2 * INTERVAL_S)
        saturated, saturated_answers = run_phase(agent, period=0.0)
        polling, polling_answers = run_phase(agent, period=1.0)
        assert agent.stop() == 0
    print("health under load:", json.dumps({"saturation": saturated, "polling_1s": polling}, indent=1))

    check_common(saturated, saturated_answers)
    check_common(polling, polling_answers)
    assert polling["p99_ms"] <= P99_SANITY_S * 1000, polling
