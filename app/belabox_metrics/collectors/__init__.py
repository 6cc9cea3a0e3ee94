"""Collectors: one module per kernel source, each a small class with ``collect()``.

A collector reads only below the roots it is given (``procfs``, ``sysfs``, ``rootfs``),
so every one of them runs against the trees under ``hardware/`` in tests. A value that
cannot be read is omitted, never reported as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from belabox_metrics.config import Config
    from belabox_metrics.samples import Sample
    from belabox_metrics.selfmetrics import SelfMetrics


@dataclass(frozen=True)
class CollectorContext:
    """What a collector may look at. ``registry`` is discovery's DeviceRegistry when
    discovery runs (None otherwise: collectors then enumerate sysfs themselves)."""

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

    @classmethod
    def configured(cls, config: Config) -> bool:
        """False when the configuration leaves this collector nothing to do (no URL to poll);
        it is then not built, so health shows no idle ``collector.<name>``."""
        return True

    def collect(self) -> list[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads, subprocesses or sockets; the default holds none."""
