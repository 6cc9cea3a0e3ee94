"""Collectors: one module per kernel source, each a small class with ``collect()``.

A collector reads only below the roots it is given (``procfs``, ``sysfs``, ``rootfs``),
so every one of them runs against the trees under ``hardware/`` in tests. A value that
cannot be read is omitted, never reported as 0.

May import: devices (what exists), health (runner reports), config, platform, samples.
Never spool, upload, agent or commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from belabox_metrics.config import Config
    from belabox_metrics.health.selfmetrics import SelfMetrics
    from belabox_metrics.samples import Sample


@dataclass(frozen=True)
class CollectorContext:
    """What a collector may look at. ``registry`` is discovery's DeviceRegistry when
    discovery runs; without it, ``Collector.device_registry()`` scans sysfs with the same rules."""

    config: Config
    procfs: str = "/proc"  # default only; always passed in from config.host
    sysfs: str = "/sys"
    rootfs: str = "/"
    registry: Any = None
    selfmetrics: SelfMetrics | None = None
    profile: Any = None


class Collector:
    """Base class. Subclasses set ``name`` (the health component is ``collector.<name>``)."""

    name = "base"

    def __init__(self, ctx: CollectorContext):
        self.ctx = ctx
        self._scanned: Any = None

    def device_registry(self) -> Any:
        """The disks, interfaces and modems to report: discovery's registry, or without one
        (a collector built alone) a sysfs scan classified by devices/ exactly as in `run`."""
        if self.ctx.registry is not None:
            return self.ctx.registry
        if self._scanned is None:
            from belabox_metrics.devices.registry import ScannedRegistry
            self._scanned = ScannedRegistry(self.ctx.sysfs)
        return self._scanned

    @classmethod
    def configured(cls, config: Config) -> bool:
        """False when the configuration leaves this collector nothing to do (no URL to poll);
        it is then not built, so health shows no idle ``collector.<name>``."""
        return True

    def collect(self) -> list[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads, subprocesses or sockets; the default holds none."""
