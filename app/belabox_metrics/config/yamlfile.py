"""Reading the YAML of a config file safely: bounded in size, aliases and depth, no duplicate keys.

A 383-byte alias bomb expands to billions of values once anything walks it (validation turns
it into JSON), and a 10 MB comment costs seconds of parsing on a small board: input that can take
the box down is refused before it is expanded. Duplicate keys are an error naming both lines,
because YAML's "the last one wins" silently discards what an operator wrote.
"""

from __future__ import annotations

from typing import Any

import yaml

from belabox_metrics.config.model import ConfigError

MAX_BYTES = 1 << 20  # a real config is a few KB; drop-ins and provisioning seeds too
MAX_VALUES = 100_000  # scalars after alias expansion
MAX_DEPTH = 32


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key; SafeLoader reports it below
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} at line {line} (first at line {first})", key_node.start_mark)
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _count(value: Any, where: str) -> None:
    """Walk the document with a budget: aliases share objects, so a bomb is cheap to hold and
    exponential to walk; stop at MAX_VALUES instead of expanding it."""
    budget = MAX_VALUES
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError([f"{where}: too many values (more than {MAX_VALUES} after expanding "
                               "YAML aliases); a config file holds settings, not data"])
        if depth > MAX_DEPTH:
            raise ConfigError([f"{where}: nested more than {MAX_DEPTH} levels deep"])
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def load(text: str, where: str) -> Any:
    """The document as Python data; ConfigError with one line for anything refused."""
    if len(text) > MAX_BYTES:
        raise ConfigError([f"{where}: {len(text)} bytes is larger than the {MAX_BYTES // 1024} KiB a config may be"])
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "duplicate key" in str(problem):
            pos = ""
        raise ConfigError([f"{where}: YAML syntax error{pos}: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{where}: nested too deeply"]) from None
    _count(data, where)
    return data
