"""Building blocks for uploader tests: a real spool filled with known samples, a config, an Uploader."""

from __future__ import annotations

import os
import time
from pathlib import Path

from belabox_metrics import config
from belabox_metrics.health.registry import Registry
from belabox_metrics.health.selfmetrics import SelfMetrics
from belabox_metrics.platform.token_file import TokenSource
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.store import Spool
from belabox_metrics.upload.uploader import Uploader

DEVICE = "test-device-1"


def make_config(url: str, *, upload_interval: str = "10s", **remote) -> config.Config:
    raw_remote = {"url": url, "max_bytes_per_second": 0,
                  "retry": {"initial_backoff": "10ms", "max_backoff": "50ms"}}
    retry = remote.pop("retry", None)
    if retry:
        raw_remote["retry"].update(retry)
    raw_remote.update(remote)
    return config.from_mapping({"upload_interval": upload_interval, "remote": raw_remote}, environ={})


def open_spool(tmp_path: Path, selfmetrics: SelfMetrics | None = None) -> Spool:
    return Spool.open(str(tmp_path / "metrics.db"), config.StorageConfig(), selfmetrics=selfmetrics)


def fill(spool: Spool, batches: int, series: int, *, wall0_ms: int | None = None, step_ms: int = 10_000,
         name: str = "test_metric") -> list[tuple]:
    """``batches`` batches of ``series`` series each, committed; returns the expected
    (labels, ts, value) of every sample as the server should see it (device_id added).
    By default the batches end an hour ago: all backlog, none in the live lane's window."""
    if wall0_ms is None:
        wall0_ms = int(time.time() * 1000) - 3_600_000 - batches * step_ms
    expected = []
    for b in range(batches):
        wall = wall0_ms + b * step_ms
        samples = tuple(sample(name, float(b * 1000 + i), {"series": str(i)}) for i in range(series))
        spool.append(Batch(samples, wall, "boot-a", b * step_ms * 1_000_000, True))
        for s in samples:
            key = tuple(sorted({"__name__": s.name, **dict(s.labels), "device_id": DEVICE}.items()))
            expected.append((key, wall, s.value))
    spool.flush()
    return expected


class Env:
    """One spool + uploader wired like the agent does, with the health registry and counters."""

    def __init__(self, tmp_path: Path, cfg: config.Config, *, environ: dict[str, str] | None = None, **kw):
        self.tmp_path = tmp_path
        self.selfmetrics = SelfMetrics()
        self.health = Registry()
        self.spool = open_spool(tmp_path, self.selfmetrics)
        self.cfg = cfg
        self.token = TokenSource(cfg, environ if environ is not None else {})
        self.uploader = Uploader(cfg, self.spool, self.health, self.selfmetrics, device_id=DEVICE,
                                 token=self.token, **kw)

    def pending(self) -> int:
        return self.spool.stats().pending_samples

    def failures(self, reason: str) -> float:
        return self.selfmetrics.value("metrics_collector_upload_failures_total", {"reason": reason})

    def dropped(self, reason: str) -> float:
        return self.selfmetrics.value("metrics_collector_dropped_samples_total", {"reason": reason})

    def uploader_health(self):
        return self.health.get("uploader")

    def close(self) -> None:
        self.uploader.stop(timeout=2, final_upload=False)
        self.spool.close()


def write_token(path: Path, token: str, mode: int = 0o600) -> Path:
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


class FakeClock:
    """Monotonic and wall time that only move when the code under test sleeps."""

    def __init__(self, wall: float | None = None):
        self.mono = 1000.0
        self.wall0 = time.time() if wall is None else wall
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall0 + (self.mono - 1000.0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
