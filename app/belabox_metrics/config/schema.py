"""Schema validation of the configuration and its one-line messages.

Kept apart from config.py because it imports jsonschema (several MB resident): the agent runs it
in a short-lived child (config_child), while config.py's dataclasses stay in the agent.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from belabox_metrics.config.model import (
    ENV_NOT_SETTINGS,
    ENV_PREFIX,
    ConfigError,
    _describe,
    format_duration,
    parse_duration,
    parse_listen_addr,
)
from belabox_metrics.redact import redact_url


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


# Upper bounds of durations that a typo (or an attacker's config) could make absurd; the rest
# may be up to DEFAULT_DURATION_MAX. A wait longer than these never helps a box in the field.
DURATION_MAX_S = {
    "remote.retry.max_retry_after": 24 * 3600.0,
    "remote.retry.initial_backoff": 3600.0,
    "remote.retry.max_backoff": 24 * 3600.0,
    "remote.timeout": 3600.0,
    "storage.commit_interval": 24 * 3600.0,
    "storage.parked_max_age": 366 * 86400.0,
    "storage.history_retention": 31 * 86400.0,
    "storage.history_interval": 24 * 3600.0,
    "modem.mmcli_timeout": 600.0,
}
DEFAULT_DURATION_MAX_S = 7 * 86400.0
# What a URL may not contain: whitespace and control characters (a pasted line break, a space).
_URL_BAD = re.compile(r"[\s\x00-\x1f\x7f]")


def _check_url(value: str) -> str | None:
    """Why ``value`` is not a usable http(s) URL, or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    if _URL_BAD.search(value):
        return "must not contain spaces or control characters"
    try:
        port = parts.port
    except ValueError:
        return "has a port outside 1-65535"
    if port == 0:
        return "has a port outside 1-65535"
    return None


def _check_listen_host(value: str) -> str | None:
    """The health server binds an address, not a name: an IP literal, localhost, or empty."""
    import ipaddress
    host = value.rpartition(":")[0].strip("[]")
    if host in ("", "localhost"):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"host must be an IP address or localhost, got {host!r}"
    return None


def _non_finite(data: Any, path: str = "") -> list[str]:
    """Dotted paths of NaN or infinite numbers (YAML's .nan and .inf pass jsonschema's bounds)."""
    if isinstance(data, float) and not math.isfinite(data):
        return [path]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _non_finite(v, f"{path}.{i}")]
    return []


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
                seconds = parse_duration(value)
            except ValueError as e:
                problems.append(f"{where}: {dotted}: {e}")
                continue
            limit = DURATION_MAX_S.get(dotted, DEFAULT_DURATION_MAX_S)
            if dotted.startswith("collectors.") or dotted in ("collection_interval", "upload_interval"):
                limit = 86400.0  # a collector or upload interval over a day is a typo
            if seconds > limit:
                problems.append(f"{where}: {dotted}: must be at most {format_duration(limit)}, got {value!r}")
        elif kind == "url" and value:
            why = _check_url(value)
            if why:
                problems.append(f"{where}: {dotted}: {why}, got {redact_url(value)!r}")
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
                continue
            why = _check_listen_host(value)
            if why:
                problems.append(f"{where}: {dotted}: {why}")
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



def validate(raw: Mapping[str, Any], where: str,
             environ: Mapping[str, str] | None = None) -> dict:
    """The parsed YAML with the environment overrides applied, checked against the schema:
    plain JSON data that ``build`` turns into a Config. Raises ConfigError, one line per problem."""
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
    problems += [f"{where}: {path}: must be a finite number" for path in _non_finite(data)]
    if problems:
        raise ConfigError(problems)
    return data


