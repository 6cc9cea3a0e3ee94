"""The configuration as frozen dataclasses, its constants, ConfigError and Go-style durations.

Pure: no file is read here (config.load does that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_PATH = "/etc/belabox-metrics/config.yaml"
BUILTIN_SOURCE = "<built-in defaults>"  # the source of a config made without any file
ENV_PREFIX = "BELABOX_METRICS_"
# Variables with the prefix that are not settings: the config file's path, the board profiles' folder.
ENV_NOT_SETTINGS = frozenset({"BELABOX_METRICS_CONFIG", "BELABOX_METRICS_HARDWARE_DIR"})

# Collectors the agent knows; the schema lists the same names under `collectors`.
COLLECTOR_NAMES = (
    "cpu", "cpufreq", "meminfo", "pressure", "diskstats", "filesystem", "netdev", "thermal",
    "hwmon", "loadavg", "modem", "selfstats", "belabox", "kernel_events", "srt",
)


class ConfigError(Exception):
    """One or more configuration problems; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --- durations -------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
MAX_DURATION_S = 2_562_047 * 3600.0
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go ``time.ParseDuration`` syntax (``300ms``, ``1.5h``, ``2h45m``) to seconds.

    Negative durations and bare numbers are rejected: every duration here is an
    interval or a timeout, and a unit-less ``30`` is ambiguous (Go rejects it too).
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a duration like 30s, 1m or 1h, got {text!r}")
    s = text.strip()
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"must be a duration like 30s, 1m or 1h, got {text!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"must be a duration like 30s, 1m or 1h, got {text!r}")
    if total <= 0:
        raise ValueError(f"must be greater than 0, got {text!r}")
    # Go's time.Duration ends at about 2562047h (int64 nanoseconds); so do we.
    if total > MAX_DURATION_S:
        raise ValueError(f"must be at most {format_duration(MAX_DURATION_S)}, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000, 3):g}ms"


# --- the typed configuration -------------------------------------------------------------

@dataclass(frozen=True)
class RetryConfig:
    enabled: bool = True
    max_attempts: int = 3  # total attempts, the first included
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    backoff_multiplier: float = 2.0
    jitter_percent: int = 20
    max_retry_after: float = 300.0  # a server's Retry-After is honoured up to this


@dataclass(frozen=True)
class RemoteConfig:
    url: str = ""  # empty: spool only, nothing is uploaded
    auth_token_file: str = ""
    timeout: float = 30.0
    batch_size: int = 2500  # upper bound of samples per HTTP request
    chunk_size: int = 50  # upper bound of samples per JSON line (one series)
    # Backlog lane budget; the uplink also carries the live video. 0 = unlimited.
    max_bytes_per_second: int = 50_000
    extra_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass(frozen=True)
class StorageConfig:
    path: str = "/var/lib/belabox-metrics/metrics.db"
    wal_checkpoint_interval: float = 3600.0
    wal_checkpoint_size_mb: int = 64
    max_size_mb: int = 64
    commit_interval: float = 120.0  # > upload_interval, so an acknowledged batch is never written
    fallback_path: str = ""  # e.g. /data/belabox-metrics on read-only-root images
    parked_max_age: float = 7 * 86400.0  # untrusted-clock batches of earlier boots
    history_retention: float = 86400.0  # key signals kept for `history` after upload (spool/history/persist.py)
    history_interval: float = 3 * 3600.0  # key signals written at least this often (agent/history.py)


@dataclass(frozen=True)
class HealthConfig:
    listen_addr: str = "127.0.0.1:9100"
    enabled: bool = True


@dataclass(frozen=True)
class MonitoringConfig:
    clock_skew_check_interval: float = 300.0
    clock_skew_warn_threshold_ms: int = 2000
    clock_skew_url: str = ""  # empty: the remote URL's origin


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "console"


@dataclass(frozen=True)
class NetworkConfig:
    max_interfaces: int = 32


@dataclass(frozen=True)
class DiskConfig:
    # SD cards and eMMC (mmcblkN) are the main disks of a BELABOX, unlike the guide's example.
    allowed_devices: str = r"^(sd[a-z]+|nvme[0-9]+n[0-9]+|mmcblk[0-9]+|vd[a-z]+|hd[a-z]+|xvd[a-z]+)$"


@dataclass(frozen=True)
class ModemConfig:
    max_modems: int = 8
    expose_identifiers: bool = False
    signal_setup_rate: int = 0  # seconds for `mmcli --signal-setup`; 0 leaves modems as they are
    mmcli_timeout: float = 5.0
    mmcli_path: str = "mmcli"


@dataclass(frozen=True)
class LimitsConfig:
    max_series: int = 10_000


@dataclass(frozen=True)
class HostConfig:
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"


@dataclass(frozen=True)
class BelaboxConfig:
    belaui_dir: str = "/opt/belaUI"
    srt_stats_url: str = ""
    kernel_events: bool = True
    kernel_event_lines: int = 50


@dataclass(frozen=True)
class CollectorConfig:
    enabled: bool = True
    interval: float | None = None  # None: the global collection_interval
    timeout: float | None = None  # None: collectors.default_timeout


@dataclass(frozen=True)
class CollectorsConfig:
    default_timeout: float = 2.0
    overrides: Mapping[str, CollectorConfig] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> CollectorConfig:
        return self.overrides.get(name, CollectorConfig())


@dataclass(frozen=True)
class Config:
    device_id: str = "auto"
    collection_interval: float = 30.0
    upload_interval: float = 60.0
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    disk: DiskConfig = field(default_factory=DiskConfig)
    modem: ModemConfig = field(default_factory=ModemConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    host: HostConfig = field(default_factory=HostConfig)
    belabox: BelaboxConfig = field(default_factory=BelaboxConfig)
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)
    source: str = ""  # the file this came from, for messages

    @property
    def clock_skew_url(self) -> str:
        """The configured skew URL, else the upload server's origin (its Date header is our clock)."""
        if self.monitoring.clock_skew_url:
            return self.monitoring.clock_skew_url
        if not self.remote.url:
            return ""
        parts = urlsplit(self.remote.url)
        host = parts.netloc.rsplit("@", 1)[-1]  # never carry URL credentials into logs or another request
        return f"{parts.scheme}://{host}/"


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return json.dumps(value)


def parse_listen_addr(value: str) -> tuple[str, int]:
    """``host:port``; an empty host means loopback, never every interface (a cellular box
    must not expose its health port on the carrier network). ``0.0.0.0:9100`` binds all."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port like 127.0.0.1:9100, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
