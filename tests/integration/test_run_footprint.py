"""`run` keeps its resident memory small: requests and jsonschema never enter the process, the
config (at start and on SIGHUP) is validated in a child, and a refused reload keeps the old one."""

from __future__ import annotations

import json
import signal
import sys

from tests.support.agent import AgentProcess
from tests.support.importserver import ImportServer

# Runs the real CLI, then reports every module the process ever imported (sys.modules only
# grows), after the shutdown's last upload too.
REPORTER = ("import json, sys\n"
            "from belabox_metrics.commands import cli\n"
            "rc = cli.main(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
            "sys.exit(rc)\n")
# Imported by nothing `run` needs: the CLI tools' HTTP client, the validator, the other commands.
HEAVY = ("requests", "urllib3", "charset_normalizer", "idna", "jsonschema", "urllib.request",
         "belabox_metrics.diagnose.gather", "belabox_metrics.commands.queue", "belabox_metrics.commands.devices",
         # the history renderers and the /history query: only when asked (this test never asks)
         "belabox_metrics.timeline.html", "belabox_metrics.timeline.screen", "statistics",
         "belabox_metrics.spool.history.query")


def test_run_never_imports_the_heavy_helpers_and_reloads_through_a_child(tmp_path):
    report = tmp_path / "modules.json"
    with ImportServer() as srv:
        agent = AgentProcess(tmp_path, {"remote": {"url": srv.url(), "max_bytes_per_second": 0}},
                             env={"BELABOX_METRICS_DEVICE_ID": "from-env"},
                             launcher=[sys.executable, "-c", REPORTER, str(report)])
        with agent:
            agent.wait_for(lambda: srv.requests, what="a first upload")
            # The environment's override went through the validating child.
            assert srv.requests[0].lines[0]["metric"]["device_id"] == "from-env"
            agent.wait_for(lambda: agent.health()["components"]["time"]["details"]["skew_ms"] is not None,
                           what="a clock check")

            good = agent.settings
            agent.settings = {**good, "collection_interval": "often",
                              "remote": {**good["remote"], "retry": {"jitter_percent": 150}}}
            agent.write_config()
            agent.proc.send_signal(signal.SIGHUP)
            agent.wait_for(lambda: agent.log().count("reload refused, keeping the running config") == 2,
                           what="both problems of the bad config logged")
            log = agent.log()
            assert "agent.yaml: collection_interval: must be a duration like 30s, 1m or 1h, got 'often'" in log
            assert "agent.yaml: remote.retry.jitter_percent: must be between 0 and 100, got 150" in log
            sent = len(srv.requests)
            agent.wait_for(lambda: len(srv.requests) > sent, what="uploads going on with the old config")
            assert agent.proc.poll() is None

            agent.settings = {**good, "remote": {**good["remote"], "extra_labels": {"site": "berlin"}}}
            agent.write_config()
            agent.proc.send_signal(signal.SIGHUP)
            agent.wait_for(lambda: "configuration reloaded from" in agent.log(), what="the reload")
            agent.wait_for(lambda: srv.requests[-1].lines[0]["metric"].get("site") == "berlin",
                           what="an upload with the reloaded config's label")
            assert agent.stop() == 0, agent.log()[-3000:]
    modules = set(json.loads(report.read_text()))
    assert "belabox_metrics.config.child" in modules and "belabox_metrics.upload.uploader" in modules
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY) == []
