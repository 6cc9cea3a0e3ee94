"""The agent wires the uploader into the spool: held batches whose time cannot be trusted are
parked by the commit that writes them (one write, not a write and a park later), and the hook
goes when uploads are switched off, so a stopped uploader's parts are never called."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from belabox_metrics import config
from belabox_metrics.agent import reconfigure
from belabox_metrics.health.registry import Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.spool.store import Spool


def test_the_uploader_parks_before_the_commit_and_is_unhooked_when_uploads_stop(tmp_path):
    cfg = config.Config(remote=config.RemoteConfig(url="http://127.0.0.1:9/api/v1/import"))
    spool = Spool.open(str(tmp_path / "metrics.db"), cfg.storage)
    agent = SimpleNamespace(cfg=cfg, spool=spool, health=Registry(), selfmetrics=SelfMetrics(), device_id="box",
                            environ={}, timekeeper=None, _wake=threading.Event(), uploader=None, runner=None,
                            SHUTDOWN_UPLOAD_BUDGET=1.0)
    agent.start_uploader = lambda: reconfigure.start_uploader(agent)
    try:
        reconfigure.start_uploader(agent)
        assert spool.before_commit == agent.uploader.delivery.park_untrusted
        reconfigure.apply(agent, config.Config(storage=cfg.storage))  # remote.url removed
        assert agent.uploader is None and spool.before_commit is None
        reconfigure.apply(agent, cfg)  # and back
        assert spool.before_commit == agent.uploader.delivery.park_untrusted
    finally:
        if agent.uploader is not None:
            agent.uploader.stop(timeout=1.0)
        spool.close()
