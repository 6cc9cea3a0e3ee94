"""Loading the configuration: read the YAML file, validate it, build the dataclasses.

Order of precedence: built-in defaults < YAML file < ``BELABOX_METRICS_<SECTION>_<KEY>``
environment variables. Every problem becomes one line naming the file, the key and
the value (``config.yaml: remote.retry.jitter_percent: must be between 0 and 100, got 150``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from types import MappingProxyType
from typing import Any

from belabox_metrics.config import dropins, yamlfile
from belabox_metrics.config.model import (
    BUILTIN_SOURCE,
    DEFAULT_CONFIG_PATH,
    CollectorConfig,
    CollectorsConfig,
    Config,
    ConfigError,
    ModemConfig,
    MonitoringConfig,
    RemoteConfig,
    RetryConfig,
    StorageConfig,
    _describe,
    format_duration,
    parse_duration,
)


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
    (StorageConfig, "history_retention"), (StorageConfig, "history_interval"),
    (MonitoringConfig, "clock_skew_check_interval"), (ModemConfig, "mmcli_timeout"),
    (CollectorConfig, "interval"), (CollectorConfig, "timeout"), (CollectorsConfig, "default_timeout"),
}


def _is_duration_field(cls: type, name: str) -> bool:
    return (cls, name) in _DURATION_FIELDS


def validate(raw: Mapping[str, Any], where: str,
             environ: Mapping[str, str] | None = None) -> dict:
    """The parsed YAML with the environment overrides applied, checked against the schema;
    see config_validate. Raises ConfigError, one line per problem."""
    # Imported here, not at the top: the long-running agent validates in a child process
    # (config_child) so that jsonschema and its imports (4 MB or more) never stay resident in it.
    from belabox_metrics.config import schema as config_validate
    return config_validate.validate(raw, where, environ)


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
            # Read one byte past the limit, never the whole of a huge file (or /dev/zero).
            text = fh.read(yamlfile.MAX_BYTES + 1)
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
    if len(text) > yamlfile.MAX_BYTES:
        raise ConfigError([f"{path}: larger than the {yamlfile.MAX_BYTES // 1024} KiB a config may be"])
    return text


def parse(text: str, where: str) -> dict:
    """The YAML document as a mapping; ConfigError for a syntax error, a refused input
    (config/yamlfile.py: size, aliases, duplicate keys) or another shape."""
    raw = yamlfile.load(text, where)
    if raw is None:
        raise ConfigError([f"{where}: file is empty (expected a mapping of settings)"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{where}: must be a mapping of settings, got {_describe(raw)}"])
    return raw


def validated(path: str | None, environ: Mapping[str, str] | None = None) -> dict:
    """What ``validate`` makes of the file at ``path`` (None: no file, built-in defaults)."""
    # Drop-ins (config.d/*.yaml) merge over the file; see config/dropins.py.
    return dropins.validated(path, DEFAULT_CONFIG_PATH, environ, read=read, parse=parse,
                             validate=validate, builtin_source=BUILTIN_SOURCE)


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


def named_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The config path a command means: ``--config``, else ``BELABOX_METRICS_CONFIG``, else the default."""
    env = os.environ if environ is None else environ
    return explicit or env.get("BELABOX_METRICS_CONFIG") or DEFAULT_CONFIG_PATH


def file_to_read(explicit: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The config file to read; None when none was named and none exists at the default
    path: the built-in defaults apply (a box that never got a config still collects and spools)."""
    env = os.environ if environ is None else environ
    path = named_path(explicit, env)
    if not (explicit or env.get("BELABOX_METRICS_CONFIG")) and not os.path.exists(path):
        return None
    return path


def load_or_defaults(explicit: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """The config named by ``explicit`` (see file_to_read), or the built-in defaults."""
    path = file_to_read(explicit, environ)
    if path is None:
        return build(validated(None, environ), BUILTIN_SOURCE)  # drop-ins still apply
    return load(path, environ)
