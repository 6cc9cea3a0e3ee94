"""Config drop-ins: ``config.d/*.yaml`` merged over ``config.yaml``, and which file set each key.

``config.yaml`` is a dpkg conffile: a provisioning step (or an operator) that edits it makes
every later package upgrade ask about the change. So settings of one box go in drop-ins
beside it, ``/etc/belabox-metrics/config.d/NN-name.yaml``, merged in lexical order of their
file names: a later file wins, mappings merge key by key, anything else (lists included)
is replaced whole. Images whose ``/etc`` is read-only keep drop-ins in the state directory
(``$STATE_DIRECTORY/config.d``, else ``/var/lib/belabox-metrics/config.d`` for the default
config) or on the data partition (``<storage.fallback_path>/config.d``). Like systemd's
drop-ins, all folders' files are ordered together by name, and a name present in an earlier
folder of that list masks the same name in a later one. The environment's
``BELABOX_METRICS_*`` overrides still win over every file.

The merge and the provenance are pure (``merge_layers``); ``read_layers`` does the I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from belabox_metrics.config.model import ConfigError

DROPIN_DIR = "config.d"
DROPIN_SUFFIX = ".yaml"
# Where the state directory's drop-ins are looked for when systemd did not say (check-config by hand).
DEFAULT_STATE_DIR = "/var/lib/belabox-metrics"


@dataclass(frozen=True)
class Layer:
    path: str  # the file, as named in messages and in check-config's sources
    data: Mapping[str, Any]


# --- pure: merge and provenance ------------------------------------------------------------

def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """``over`` on top of ``base``: mappings merge recursively, every other value replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def leaf_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values a mapping sets; a list or scalar is one leaf."""
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(leaf_paths(value, path + "."))
        else:
            out.append(path)
    return out


def merge_layers(layers: Iterable[Layer]) -> tuple[dict, dict[str, str]]:
    """The merged mapping and, per dotted key path, the file that set its value."""
    merged: dict = {}
    sources: dict[str, str] = {}
    for layer in layers:
        merged = merge(merged, layer.data)
        for path in leaf_paths(layer.data):
            # A value that replaces a whole mapping (or a mapping that replaces a value)
            # takes the provenance of everything below and above it with it.
            for old in [p for p in sources if p.startswith(path + ".") or path.startswith(p + ".")]:
                del sources[old]
            sources[path] = layer.path
    return merged, sources


def order_dropins(listing: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """The drop-in paths to apply, in order, from (folder, file names) pairs in priority order:
    ``*.yaml`` files that are not hidden, sorted by name; the first folder holding a name wins."""
    chosen: dict[str, str] = {}
    for folder, names in listing:
        for name in names:
            if name.endswith(DROPIN_SUFFIX) and not name.startswith(".") and name not in chosen:
                chosen[name] = os.path.join(folder, name)
    return [chosen[name] for name in sorted(chosen)]


def dropin_dirs(config_path: str | None, default_config_path: str, environ: Mapping[str, str],
                fallback_path: str = "") -> list[str]:
    """The drop-in folders in priority order (see the module docstring)."""
    base = os.path.dirname(os.path.abspath(config_path or default_config_path))
    dirs = [os.path.join(base, DROPIN_DIR)]
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not state and (config_path is None or os.path.abspath(config_path) == default_config_path):
        state = DEFAULT_STATE_DIR
    if state:
        dirs.append(os.path.join(state, DROPIN_DIR))
    if fallback_path:
        dirs.append(os.path.join(os.path.abspath(fallback_path), DROPIN_DIR))
    return list(dict.fromkeys(dirs))


def env_sources(environ: Mapping[str, str], env_names: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Key paths the environment overrides, as ``environment (NAME)``."""
    return {".".join(env_names[name]): f"environment ({name})" for name in sorted(environ) if name in env_names}


# --- I/O: the files ------------------------------------------------------------------------

def list_dir(folder: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]
    except OSError:
        return []  # no such folder (the usual case) or one we may not list: no drop-ins from it


def _fallback_path(layers: list[Layer]) -> str:
    merged, _ = merge_layers(layers)
    storage = merged.get("storage")
    value = storage.get("fallback_path") if isinstance(storage, Mapping) else None
    return value if isinstance(value, str) else ""


def read_layers(config_path: str | None, default_config_path: str, *,
                read: Callable[[str], str], parse: Callable[[str, str], dict],
                environ: Mapping[str, str] | None = None) -> list[Layer]:
    """The main file's layer (when there is a file) and the drop-ins' layers, in merge order.
    ``read`` and ``parse`` are the config loader's: a malformed file is a ConfigError naming it."""
    env = os.environ if environ is None else environ
    layers = []
    if config_path is not None:
        layers.append(Layer(config_path, parse(read(config_path), os.path.basename(config_path) or config_path)))

    def dropins(fallback: str) -> list[Layer]:
        dirs = dropin_dirs(config_path, default_config_path, env, fallback)
        return [Layer(p, parse(read(p), p)) for p in order_dropins((d, list_dir(d)) for d in dirs)]

    # storage.fallback_path names one of the folders, so it is taken from what the others say.
    first = dropins("")
    fallback = _fallback_path(layers + first)
    return layers + (dropins(fallback) if fallback else first)


def validated(config_path: str | None, default_config_path: str, environ: Mapping[str, str] | None, *,
              read: Callable[[str], str], parse: Callable[[str, str], dict],
              validate: Callable[..., dict], builtin_source: str) -> dict:
    """config.validated with drop-ins: each drop-in is checked on its own first, so a bad key is
    reported with the file that holds it; then the merge, with the environment on top."""
    layers = read_layers(config_path, default_config_path, read=read, parse=parse)
    where = (os.path.basename(config_path) or config_path) if config_path else builtin_source
    if len(layers) <= (1 if config_path else 0):
        return validate(layers[0].data if layers else {}, where, environ)
    merged, _ = merge_layers(layers)
    try:
        return validate(merged, where, environ)
    except ConfigError as merged_error:
        # Name the drop-in that holds a bad value; what no single file explains (a conflict
        # between files, an environment variable) keeps the merged message.
        problems: list[str] = []
        for layer in layers[1 if config_path else 0:]:
            try:
                validate(layer.data, layer.path, {})
            except ConfigError as e:
                problems.extend(e.problems)
        raise ConfigError(problems or merged_error.problems) from None


def sources(config_path: str | None, default_config_path: str, environ: Mapping[str, str], *,
            read: Callable[[str], str], parse: Callable[[str, str], dict],
            env_names: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """For check-config: per dotted key path, the file (or environment variable) that set it;
    keys not listed have their built-in default."""
    _, by_file = merge_layers(read_layers(config_path, default_config_path, read=read, parse=parse,
                                          environ=environ))
    by_env = env_sources(environ, env_names)
    for path in by_env:
        for old in [p for p in by_file if p == path or p.startswith(path + ".")]:
            del by_file[old]
    return dict(sorted({**by_file, **by_env}.items()))


def check_config_sources(config_path: str | None, configmod: Any) -> dict[str, str]:
    """``sources`` with the config loader's readers and the environment's setting names."""
    from belabox_metrics.config.schema import _ENV_NAMES

    return sources(config_path, configmod.DEFAULT_CONFIG_PATH, os.environ, read=configmod.read,
                   parse=configmod.parse, env_names=_ENV_NAMES)
