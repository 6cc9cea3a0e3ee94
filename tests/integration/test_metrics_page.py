"""A running agent's /metrics read by the Prometheus client's own parser, and a Ctrl-C stop.

Every family carries a ``# HELP`` and a ``# TYPE`` (the parser calls a family without TYPE
"unknown" and one without HELP has empty documentation). Then the agent's process group gets
SIGINT, as a terminal's Ctrl-C does (its journalctl child gets it too): it must stop with 0 and
log no WARNING or ERROR on the way out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import AgentProcess

pytestmark = pytest.mark.slow

BAD_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def test_metrics_page_has_help_and_type_for_every_family_and_ctrl_c_stops_quietly(vm, tmp_path):
    agent = AgentProcess(tmp_path, {"remote": {"url": vm.import_url}, "logging": {"level": "info"}})
    with agent:
        # A successful cycle may have had nothing to send yet: wait for samples the server took.
        agent.wait_for(lambda: re.search(r"^metrics_collector_uploaded_samples_total [1-9]",
                                         requests.get(agent.base + "/metrics", timeout=5).text, re.M),
                       what="a first upload of samples")
        text = requests.get(agent.base + "/metrics", timeout=5).text
        families = list(text_string_to_metric_families(text))
        names = {f.name for f in families}
        # Collected series and the agent's own, including an upload counter.
        assert {"node_load1", "node_cpu_seconds", "metrics_collector_uploaded_samples"} <= names, sorted(names)
        assert len(families) >= 30, sorted(names)
        missing = [(f.name, f.type, f.documentation) for f in families
                   if f.type == "unknown" or not f.documentation.strip()]
        assert not missing, missing
        helps = re.findall(r"^# HELP (\S+) ", text, re.M)
        types = re.findall(r"^# TYPE (\S+) ", text, re.M)
        assert helps == types and len(set(helps)) == len(helps)

        log_before = len(agent.log())
        os.killpg(agent.proc.pid, signal.SIGINT)  # the whole group, as a terminal's Ctrl-C
        try:
            code = agent.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"agent did not stop on SIGINT:\n{agent.log()[-3000:]}", pytrace=False)
        log = agent.log()
    assert code == 0, log[-3000:]
    assert "stopping" in log[log_before:], log[-3000:]
    bad = [line for line in log.splitlines() if BAD_LEVEL.search(line)]
    assert not bad, "\n".join(bad)
