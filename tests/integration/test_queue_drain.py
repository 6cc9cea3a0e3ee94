"""queue drain moves a 200,000-sample backlog into a real VictoriaMetrics with progress; queue export
re-imported into a second VictoriaMetrics gives the same samples; writers refuse while the agent runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from belabox_metrics import config
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.store import Spool
from tests.support.cli import cli_env, run_cli
from tests.support.vm import VictoriaMetrics

SERIES, STEPS = 100, 2000  # 200,000 samples, one batch per step


def _fill_spool(db: str) -> int:
    cfg = config.Config()
    spool = Spool.open(db, cfg.storage)
    start = int(time.time() * 1000) - STEPS * 1000
    try:
        for step in range(STEPS):
            samples = tuple(sample("drain_test_value", step * 0.5 + i, {"series": f"s{i:03d}", "kind": "gauge"})
                            for i in range(SERIES))
            spool.append(Batch(samples, start + step * 1000, "boot-a", step * 1_000_000_000, True))
        spool.flush()
        return spool.stats().pending_samples
    finally:
        spool.close()


def _config(tmp_path, url: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"device_id: drain-box\nremote:\n  url: {url}\n  max_bytes_per_second: 1000\n"
                    f"storage:\n  path: {tmp_path}/data/metrics.db\n  max_size_mb: 256\n")
    return str(path)


def _series(vm: VictoriaMetrics, expect: int = SERIES * STEPS) -> dict[tuple, list]:
    # Series created a moment ago can be missing from a search even after force_flush while the
    # machine is loaded (seen once in a full run: 0 of 200,000): ask again for a few seconds.
    deadline = time.monotonic() + 10
    while True:
        vm.force_flush()
        got = {tuple(sorted(s["metric"].items())): list(zip(s["timestamps"], s["values"], strict=True))
               for s in vm.export('{__name__="drain_test_value"}')}
        if sum(len(v) for v in got.values()) >= expect or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_export_then_drain_200k(tmp_path):
    db = str(tmp_path / "data" / "metrics.db")
    assert _fill_spool(db) == SERIES * STEPS
    with VictoriaMetrics(tmp_path / "vm1") as vm1, \
            VictoriaMetrics(tmp_path / "vm2", extra_flags=["-dedup.minScrapeInterval=1ms"]) as vm2:
        cfg = _config(tmp_path, vm1.import_url)

        p = run_cli("queue", "stats", "--json", "--config", cfg)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["pending_samples"] == 200_000

        out_jsonl, out_prom = tmp_path / "export.jsonl", tmp_path / "export.prom"
        p = run_cli("queue", "export", "--config", cfg, "--output", str(out_jsonl))
        assert p.returncode == 0 and "exported 200,000 samples" in p.stderr, p.stderr
        p = run_cli("queue", "export", "--config", cfg, "--format", "prometheus", "-o", str(out_prom))
        assert p.returncode == 0, p.stderr
        assert len(out_prom.read_text().splitlines()) == 200_000
        # Exports remove nothing.
        assert json.loads(run_cli("queue", "stats", "--json", "--config", cfg).stdout)["pending_samples"] == 200_000

        p = run_cli("queue", "drain", "--config", cfg, timeout=300)
        assert p.returncode == 0, p.stderr
        progress = [line for line in p.stderr.splitlines() if line.startswith("[")]
        assert progress, p.stderr
        assert "100% 200,000/200,000 samples" in progress[-1]
        assert all(len(line) <= 80 for line in progress)
        assert "drained 200,000 samples; 0 still pending" in p.stderr
        assert json.loads(run_cli("queue", "stats", "--json", "--config", cfg).stdout)["pending_samples"] == 0

        r = requests.post(vm2.import_url, data=out_jsonl.read_bytes(), timeout=60)
        assert r.status_code == 204, r.text
        uploaded = _series(vm1)
        assert sum(len(v) for v in uploaded.values()) == 200_000
        assert len(uploaded) == SERIES
        assert all(dict(k)["device_id"] == "drain-box" for k in uploaded)
        assert _series(vm2) == uploaded
        # The Prometheus text export holds the same samples: importing it changes nothing (dedup on).
        r = requests.post(f"{vm2.base}/api/v1/import/prometheus", data=out_prom.read_bytes(), timeout=60)
        assert r.status_code == 204, r.text
        assert _series(vm2) == uploaded


def test_writers_refuse_while_the_agent_holds_the_lock(tmp_path):
    db = str(tmp_path / "data" / "metrics.db")
    cfg = config.Config()
    spool = Spool.open(db, cfg.storage)
    spool.append(Batch((sample("x", 1),), int(time.time() * 1000), "b", 0, True))
    spool.flush()
    spool.close()
    conf = _config(tmp_path, "http://127.0.0.1:9/api/v1/import")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom belabox_metrics.platform.lock import InstanceLock\n"
         "l = InstanceLock(sys.argv[1]); l.acquire(); print('locked', flush=True); time.sleep(60)", db + ".lock"],
        env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for action in ("drain", "vacuum"):
            p = run_cli("queue", action, "--config", conf)
            assert p.returncode == 75, (action, p.stderr)
            assert f"the agent (PID {holder.pid}) is running" in p.stderr
        p = run_cli("queue", "stats", "--config", conf)
        assert p.returncode == 0 and "1 samples in 1 batches" in p.stdout, p.stderr
        p = run_cli("queue", "export", "--config", conf)
        assert p.returncode == 0 and '"__name__":"x"' in p.stdout, p.stderr
    finally:
        holder.kill()
        holder.wait(10)
    p = run_cli("queue", "vacuum", "--config", conf)
    assert p.returncode == 0 and "vacuumed" in p.stdout, p.stderr
    assert os.path.exists(db)


def test_drain_with_parked_samples_says_so_and_fails(tmp_path):
    """Parked batches (an earlier boot's, clock never verified) are not drained: the drain says
    how many wait, and exits 1 rather than reporting a clean 0 pending."""
    db = str(tmp_path / "data" / "metrics.db")
    spool = Spool.open(db, config.Config().storage)
    try:
        now = int(time.time() * 1000)
        for i in range(3):
            spool.append(Batch((sample("drain_test_value", i, {"series": "p"}),), now - 60_000 + i,
                               "an-earlier-boot", i, False))
        spool.flush()
        spool.park([1, 2, 3], "untrusted_clock")
    finally:
        spool.close()
    with VictoriaMetrics(tmp_path / "vm") as vm:
        p = run_cli("queue", "drain", "--config", _config(tmp_path, vm.import_url), timeout=120)
    assert p.returncode == 1, p.stderr
    assert "drained 0 samples; 0 still pending; 3 parked (clock not verified" in p.stderr, p.stderr
