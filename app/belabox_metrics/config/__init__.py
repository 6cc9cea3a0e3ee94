"""Configuration: the YAML file and its drop-ins, environment overrides, schema, frozen dataclasses.

Owns: model (dataclasses, ConfigError, durations), load (read, parse, build), yamlfile (bounded,
duplicate-free YAML), schema (jsonschema validation,
kept out of the long-running agent), child (validation in a short-lived child process for `run`).
May import: the standard library, yaml, jsonschema (schema only) and the shared leaf redact.

The names below are the package's public surface, so ``from belabox_metrics import config`` reads
as ``config.load(path)`` and ``config.Config`` at call sites.
"""

from belabox_metrics.config.load import (  # noqa: F401
    build,
    default,
    file_to_read,
    from_mapping,
    load,
    load_or_defaults,
    loads,
    named_path,
    parse,
    read,
    to_plain,
    validate,
    validated,
)
from belabox_metrics.config.model import *  # noqa: F401,F403
from belabox_metrics.config.model import parse_listen_addr  # noqa: F401
