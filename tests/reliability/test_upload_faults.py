"""The real agent uploading through a fault proxy (tests/support/faultproxy.py) to a real
VictoriaMetrics without deduplication, phase after phase: refused, 500, 429 + Retry-After,
accept-and-hang, reset mid-body, a 1 KB/s trickle, a server that answers 204 and drops all.

Asserted: nothing the agent committed is missing from VictoriaMetrics except what the
blackhole swallowed (the agent cannot know), nothing arrives twice unless the server stored it
and the answer was lost on the way back, delivery resumes within
one upload cycle (plus the retry and timeout bounds configured below) after each phase, and
/health's uploader is not ok while uploads fail. Statuses and counters only: message texts
belong to the uploader's owner."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support.agent import AgentProcess
from tests.support.faultproxy import FaultProxy, Record
from tests.support.vm import VictoriaMetrics, VMError

UPLOAD_S = 1.0
TIMEOUT_S = 2.0  # remote.timeout: a hung request is given up after this
BACKOFF_S = 1.0  # retry.max_backoff and max_retry_after
# After a phase ends: the cycle that is due, plus a request in flight timing out, plus one
# backoff; the rest is scheduling on a loaded 2-core box.
RESUME_BOUND_S = UPLOAD_S + TIMEOUT_S + BACKOFF_S + 3.0
FAULT_S = float(os.environ.get("BELABOX_CHAOS_FAULT_SECONDS", "6"))
ATTEMPTS = 2
PHASES = ("refused", "500", "429", "hang", "reset", "trickle", "blackhole")
# How soon /health must stop saying ok once uploads fail. A failing answer ends the cycle at
# once: an interval plus the retries' backoff. A request that hangs (or crawls) holds the cycle
# until every attempt timed out: the uploader reports at the end of a cycle, so until then it
# shows its last verdict (reported to the uploader's owner: see NOTES-chaos.md).
SLACK_S = 2.5
TRUTH_BOUND_S = {p: UPLOAD_S + ATTEMPTS * BACKOFF_S + SLACK_S for p in PHASES}
TRUTH_BOUND_S["hang"] = TRUTH_BOUND_S["trickle"] = UPLOAD_S + ATTEMPTS * (TIMEOUT_S + BACKOFF_S) + SLACK_S


def is_idle_cpu0(key: str) -> bool:
    m = json.loads(key)
    return (m.get("__name__"), m.get("cpu"), m.get("mode")) == ("node_cpu_seconds_total", "0", "idle")


def uploader_status(agent: AgentProcess) -> str | None:
    return agent.health()["components"].get("uploader", {}).get("status")


def run_phase(agent: AgentProcess, proxy: FaultProxy, phase: str) -> tuple[float, list[tuple[float, str]]]:
    """Hold ``phase`` long enough for health to tell; returns its start and (time, uploader status)."""
    proxy.set_phase(phase)
    t0 = time.monotonic()
    seen: list[tuple[float, str]] = []
    while time.monotonic() - t0 < max(FAULT_S, TRUTH_BOUND_S[phase] + 1.5):
        status = uploader_status(agent)
        if status is not None:  # not reported yet: no reading
            seen.append((time.monotonic(), status))
        time.sleep(0.25)
    return t0, seen


def time_to_truth(phase: str, t0: float, seen: list[tuple[float, str]], records: list[Record]) -> float | None:
    """Seconds from the first failed request of the phase (its start, for refused) until health
    says not ok and keeps saying it; None when it never does."""
    failed = [r.start for r in records if r.phase == phase and r.start >= t0 and not r.forwarded]
    tf = t0 if phase == "refused" else min(failed, default=None)
    if tf is None:
        return None
    # From the reading that starts the run of non-ok readings lasting to the end of the phase: a
    # non-ok reading left over from the phase before (health catching up) does not count.
    after = [(t, st) for t, st in seen if t >= tf]
    last_ok = max((i for i, (_, st) in enumerate(after) if st == "ok"), default=-1)
    return after[last_ok + 1][0] - tf if last_ok + 1 < len(after) else None


def resume(agent: AgentProcess, proxy: FaultProxy) -> float:
    """Back to ok: seconds until VictoriaMetrics took the next request."""
    proxy.set_phase("ok")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        if any(r.start >= t0 and r.forwarded for r in proxy.snapshot()):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"no delivery within 30 s after the fault:\n{agent.log()[-3000:]}")


@pytest.mark.slow
@pytest.mark.long  # over 40 s: `scripts/test --long` (CI runs it after the suite)
@pytest.mark.timeout(300)
def test_every_upload_fault_loses_nothing_the_server_keeps_and_health_tells(tmp_path):
    vm = VictoriaMetrics(tmp_path / "vm")
    try:
        vm.start()
    except VMError as e:
        pytest.fail(str(e), pytrace=False)
    proxy = FaultProxy(vm.port).start()
    agent = AgentProcess(tmp_path / "agent", {
        "collection_interval": "500ms", "upload_interval": f"{int(UPLOAD_S * 1000)}ms",
        "storage": {"commit_interval": "500ms"},
        "remote": {"url": proxy.url, "timeout": f"{int(TIMEOUT_S * 1000)}ms", "max_bytes_per_second": 0,
                   "retry": {"max_attempts": ATTEMPTS, "initial_backoff": "500ms",
                             "max_backoff": f"{int(BACKOFF_S * 1000)}ms",
                             "max_retry_after": f"{int(BACKOFF_S * 1000)}ms"}}})
    resumed: dict[str, float] = {}
    health: dict[str, tuple[float, list[tuple[float, str]]]] = {}
    try:
        agent.start(timeout=60)
        agent.wait_for(lambda: any(r.forwarded for r in proxy.snapshot()), timeout=60, what="a first upload")
        for phase in PHASES:
            health[phase] = run_phase(agent, proxy, phase)
            resumed[phase] = resume(agent, proxy)
        time.sleep(1.5)
        assert agent.stop() == 0
    finally:
        agent.kill()
        proxy.stop()
    try:
        vm.force_flush()
        stored_series = vm.export('{__name__="node_cpu_seconds_total",cpu="0",mode="idle"}')
    finally:
        vm.stop()
    records = proxy.snapshot()
    truth = {p: time_to_truth(p, *health[p], records) for p in PHASES}
    report = {p: {"resumed_s": round(resumed[p], 1), "health_not_ok_after_s": truth[p] and round(truth[p], 1)}
              for p in PHASES}
    print("upload faults:", json.dumps(report, indent=1))

    assert len(stored_series) == 1
    stored = stored_series[0]["timestamps"]
    committed = set(agent.committed_wall_ms())
    blackholed = {t for r in records if r.phase == "blackhole" for k, t in r.samples if is_idle_cpu0(k)}
    assert blackholed, "the blackhole phase swallowed nothing: it tested nothing"
    missing = committed - set(stored)
    assert missing <= blackholed, f"lost beyond the blackhole: {sorted(missing - blackholed)[:10]}"
    # At least once: a request VictoriaMetrics stored but whose answer never reached the agent
    # (the client timed out while it was forwarded) is rightly sent again. Only those may arrive
    # twice; any other duplicate is the agent sending what it already knew was delivered.
    unanswered = {t for r in records if r.forwarded and r.status is None for k, t in r.samples if is_idle_cpu0(k)}
    twice = sorted({t for t in stored if stored.count(t) > 1} - unanswered)
    carriers = [(r.phase, r.forwarded, r.status) for r in records for k, t in r.samples
                if is_idle_cpu0(k) and t in twice[:3]]
    assert not twice, f"{len(twice)} samples arrived twice, e.g. {twice[:3]}, carried by {carriers}"
    assert len(committed) > 40
    for phase in PHASES:
        assert resumed[phase] <= RESUME_BOUND_S, (phase, report)
        if phase == "blackhole":
            continue  # the agent was told 204: from where it stands, uploads succeed
        if phase == "trickle":
            continue  # 1 KB/s is slow, not broken: small bodies get through, and then ok is the truth
        first = truth[phase]
        assert first is not None and first <= TRUTH_BOUND_S[phase], (phase, report)
        t0, seen = health[phase]
        failed_at = min(r.start for r in records if r.phase == phase) if phase != "refused" else t0
        after = [st for t, st in seen if t > failed_at + first]
        assert "ok" not in after, (phase, seen)  # and it stays so while the fault lasts
    fails = [r for r in records if r.phase in ("refused", "500", "429", "hang", "reset")]
    assert not any(r.forwarded for r in fails), "a fault phase reached the server"


def test_faultproxy_records_what_it_forwards(tmp_path):
    """The proxy itself: ok forwards and records samples, blackhole does not forward."""
    import gzip

    import requests

    vm = VictoriaMetrics(tmp_path / "vm")
    try:
        vm.start()
    except VMError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        with FaultProxy(vm.port) as proxy:
            line = b'{"metric":{"__name__":"p"},"values":[1],"timestamps":[1796660000000]}\n'
            body = gzip.compress(line)
            hdrs = {"Content-Encoding": "gzip"}
            assert requests.post(proxy.url, data=body, headers=hdrs, timeout=10).status_code == 204
            proxy.set_phase("blackhole")
            assert requests.post(proxy.url, data=body, headers=hdrs, timeout=10).status_code == 204
            proxy.set_phase("500")
            assert requests.post(proxy.url, data=body, headers=hdrs, timeout=10).status_code == 500
            recs: list[Record] = proxy.snapshot()
        vm.force_flush()
        assert vm.count_samples('{__name__="p"}') == 1
        assert [(r.phase, r.forwarded, len(r.samples)) for r in recs] == \
            [("ok", True, 1), ("blackhole", False, 1), ("500", False, 0)]
    finally:
        vm.stop()
