"""Configuration: the deployment guide's YAML, validated by config.schema.json, as frozen dataclasses.

Order of precedence: built-in defaults < YAML file < ``BELABOX_METRICS_<SECTION>_<KEY>``
environment variables. Every problem becomes one line naming the file, the key and
the value (``config.yaml: remote.retry.jitter_percent: must be between 0 and 100, got 150``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    import jsonschema

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
    commit_interval: float = 10.0
    fallback_path: str = ""  # e.g. /data/belabox-metrics on read-only-root images
    parked_max_age: float = 7 * 86400.0  # untrusted-clock batches of earlier boots


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


# --- loading -----------------------------------------------------------------------------

def _schema() -> dict:
    # The module's own loader reads package data from a folder or a zip alike; importlib.resources
    # would do the same but pulls zipfile, tempfile, lzma and bz2 into `run` (about 1.5 MB).
    return json.loads(__spec__.loader.get_data(os.path.join(os.path.dirname(__file__), "config.schema.json")))


SCHEMA = _schema()


def _leaf_paths(schema: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], dict]:
    """Every configurable key path with its (resolved) schema node."""
    out: dict[tuple[str, ...], dict] = {}
    for key, node in schema.get("properties", {}).items():
        node = _resolve(node)
        path = prefix + (key,)
        if node.get("type") == "object" and "properties" in node:
            out.update(_leaf_paths(node, path))
        else:
            out[path] = node
    return out


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        return SCHEMA["$defs"][ref.rsplit("/", 1)[1]]
    return node


LEAF_PATHS = _leaf_paths(SCHEMA)
_ENV_NAMES = {ENV_PREFIX + "_".join(p).upper(): p for p in LEAF_PATHS}


def _close_matches(word: str, candidates: list[str], cutoff: float) -> list[str]:
    # Only a config with a typo needs difflib: `run` validates in a child and never imports it.
    import difflib
    return difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)


def _env_overrides(raw: dict, environ: Mapping[str, str], problems: list[str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        path = _ENV_NAMES.get(name)
        if path is None:
            hint = _close_matches(name, list(_ENV_NAMES), cutoff=0.6)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(f"environment: {name}: unknown setting{extra}")
            continue
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        # Keep strings for string-typed keys: "0123" must not become an int.
        if LEAF_PATHS[path].get("type") == "string" or LEAF_PATHS[path].get("x-kind"):
            parsed = value
        node = raw
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = parsed


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return json.dumps(value)


_TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "a string",
               "boolean": "true or false", "object": "a mapping", "array": "a list"}


def _schema_message(err: jsonschema.ValidationError) -> tuple[str, str]:
    """(key path, message) for one jsonschema error, in our one-line style."""
    path = ".".join(str(p) for p in err.absolute_path)
    v, node = err.validator, err.schema
    if v == "additionalProperties":
        known = list(node.get("properties", {}))
        unknown = sorted(set(err.instance) - set(known))
        msgs = []
        for key in unknown:
            hint = _close_matches(key, known, cutoff=0.6)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            msgs.append(f"unknown key{suffix}")
        key_path = f"{path}.{unknown[0]}" if path else unknown[0]
        return key_path, msgs[0]
    if node.get("x-kind") == "duration" and v == "type":
        return path, f"must be a duration like 30s, 1m or 1h, got {_describe(err.instance)}"
    if "propertyNames" in err.schema_path:
        return path, f"{_describe(err.instance)} is not a valid label name"
    if v == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        return path, f"must be {words}, got {_describe(err.instance)}"
    if v in ("minimum", "maximum"):
        lo, hi = node.get("minimum"), node.get("maximum")
        if lo is not None and hi is not None:
            return path, f"must be between {lo:g} and {hi:g}, got {_describe(err.instance)}"
        if lo is not None:
            return path, f"must be at least {lo:g}, got {_describe(err.instance)}"
        return path, f"must be at most {hi:g}, got {_describe(err.instance)}"
    if v == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return path, f"must be one of {allowed}, got {_describe(err.instance)}"
    if v == "minLength":
        return path, "must not be empty"
    if v == "maxLength":
        return path, f"must be at most {err.validator_value} characters long"
    if v == "pattern":
        return path, f"has characters that are not allowed, got {_describe(err.instance)}"
    if v == "propertyNames":
        return path, f"{_describe(err.instance)} is not a valid label name"
    return path, err.message


def _check_kinds(raw: dict, problems: list[str], where: str) -> None:
    """Checks jsonschema cannot express well: durations, URLs, regexes, listen addresses."""
    for path, node in LEAF_PATHS.items():
        kind = node.get("x-kind")
        value: Any = raw
        for key in path:  # walk down; a wrongly typed parent was reported by the schema
            if not isinstance(value, dict) or key not in value:
                value = None
                break
            value = value[key]
        if value is None or not isinstance(value, str):
            continue
        dotted = ".".join(path)
        if kind == "duration":
            try:
                parse_duration(value)
            except ValueError as e:
                problems.append(f"{where}: {dotted}: {e}")
        elif kind == "url" and value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{where}: {dotted}: must be an http:// or https:// URL, got {value!r}")
        elif kind == "regex":
            try:
                re.compile(value)
            except re.error as e:
                problems.append(f"{where}: {dotted}: invalid regular expression ({e}), got {value!r}")
        elif kind == "listen_addr":
            try:
                parse_listen_addr(value)
            except ValueError as e:
                problems.append(f"{where}: {dotted}: {e}")
    remote = raw.get("remote")
    retry = remote.get("retry") if isinstance(remote, dict) else None
    if isinstance(retry, dict):
        try:
            lo = parse_duration(retry.get("initial_backoff", "1s"))
            hi = parse_duration(retry.get("max_backoff", "30s"))
            if lo > hi:
                problems.append(f"{where}: remote.retry.initial_backoff: must not exceed max_backoff "
                                f"({retry.get('initial_backoff')} > {retry.get('max_backoff')})")
        except (ValueError, TypeError):
            pass  # already reported above


def parse_listen_addr(value: str) -> tuple[str, int]:
    """``host:port``; an empty host means loopback, never every interface (a cellular box
    must not expose its health port on the carrier network). ``0.0.0.0:9100`` binds all."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port like 127.0.0.1:9100, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _build(cls: type, raw: Mapping[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            kwargs[f.name] = _build(type(default), value or {})
        elif f.name == "extra_labels":
            kwargs[f.name] = MappingProxyType({k: _label_str(v) for k, v in (value or {}).items()})
        elif isinstance(value, str) and _is_duration_field(cls, f.name):
            kwargs[f.name] = parse_duration(value)
        elif isinstance(default, float) and isinstance(value, int):
            kwargs[f.name] = float(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def _label_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_DURATION_FIELDS = {
    (Config, "collection_interval"), (Config, "upload_interval"),
    (RemoteConfig, "timeout"), (RetryConfig, "initial_backoff"), (RetryConfig, "max_backoff"),
    (RetryConfig, "max_retry_after"), (StorageConfig, "wal_checkpoint_interval"),
    (StorageConfig, "commit_interval"), (StorageConfig, "parked_max_age"),
    (MonitoringConfig, "clock_skew_check_interval"), (ModemConfig, "mmcli_timeout"),
    (CollectorConfig, "interval"), (CollectorConfig, "timeout"), (CollectorsConfig, "default_timeout"),
}


def _is_duration_field(cls: type, name: str) -> bool:
    return (cls, name) in _DURATION_FIELDS


def validate(raw: Mapping[str, Any], where: str,
             environ: Mapping[str, str] | None = None) -> dict:
    """The parsed YAML with the environment overrides applied, checked against the schema:
    plain JSON data that ``build`` turns into a Config. Raises ConfigError, one line per problem."""
    # Imported here, not at the top: the long-running agent validates in a child process
    # (config_child) so that jsonschema and its imports (4 MB or more) never stay resident in it.
    import jsonschema

    problems: list[str] = []
    data: dict = json.loads(json.dumps(raw, default=str)) if raw else {}
    _env_overrides(data, os.environ if environ is None else environ, problems)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    seen = set()
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        key, msg = _schema_message(err)
        if key in seen:
            continue
        seen.add(key)
        problems.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
    _check_kinds(data, problems, where)
    if problems:
        raise ConfigError(problems)
    return data


def build(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """A Config from a mapping that ``validate`` accepted; needs no jsonschema."""
    data = dict(data)
    collectors_raw = dict(data.get("collectors") or {})
    default_timeout = collectors_raw.pop("default_timeout", None)
    collectors = CollectorsConfig(
        default_timeout=parse_duration(default_timeout) if default_timeout else 2.0,
        overrides=MappingProxyType({k: _build(CollectorConfig, v or {}) for k, v in collectors_raw.items()}),
    )
    data["collectors"] = {}
    cfg = _build(Config, data)
    return _replace(cfg, collectors=collectors, source=source)


def from_mapping(raw: Mapping[str, Any], source: str = "<config>",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML mapping (plus environment overrides) and build a Config."""
    return build(validate(raw, os.path.basename(source) or source, environ), source)


def _replace(cfg: Config, **changes: Any) -> Config:
    from dataclasses import replace
    return replace(cfg, **changes)


def read(path: str) -> str:
    """The text of a config file; ConfigError with one line when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied (the service user needs read access)"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read ({e.strerror})"]) from None


def parse(text: str, where: str) -> dict:
    """The YAML document as a mapping; ConfigError for a syntax error or another shape."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"{where}: YAML syntax error{pos}: {problem}"]) from None
    if raw is None:
        raise ConfigError([f"{where}: file is empty (expected a mapping of settings)"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{where}: must be a mapping of settings, got {_describe(raw)}"])
    return raw


def validated(path: str | None, environ: Mapping[str, str] | None = None) -> dict:
    """What ``validate`` makes of the file at ``path`` (None: no file, built-in defaults)."""
    if path is None:
        return validate({}, BUILTIN_SOURCE, environ)
    where = os.path.basename(path) or path
    return validate(parse(read(path), where), where, environ)


def load(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and convert one config file. Raises ConfigError with one line per problem."""
    return build(validated(path, environ), path)


def loads(text: str, source: str = "<config>", environ: Mapping[str, str] | None = None,
          where: str | None = None) -> Config:
    where = where or os.path.basename(source) or source
    return build(validate(parse(text, where), where, environ), source)


def default() -> Config:
    return Config()


def to_plain(cfg: Any) -> Any:
    """The effective config as plain data (durations as Go strings) for `check-config`."""
    if is_dataclass(cfg):
        out = {}
        for f in fields(cfg):
            if f.name == "source":
                continue
            value = getattr(cfg, f.name)
            if (type(cfg), f.name) in _DURATION_FIELDS and isinstance(value, float):
                out[f.name] = format_duration(value)
            else:
                out[f.name] = to_plain(value)
        if isinstance(cfg, CollectorsConfig):
            overrides = out.pop("overrides")
            out.update(overrides)
        return out
    if isinstance(cfg, Mapping):
        return {k: to_plain(v) for k, v in cfg.items()}
    return cfg
