"""belaUI's files: ``setup.json`` and ``config.json`` in its working directory, and the
runtime files it writes for belacoder and srtla_send.

Formats (BELABOX/belaUI ``belaUI.js``): setup.json names ``bitrate_file`` and ``ips_file``
(defaults /tmp/belacoder_br and /tmp/srtla_ips); the bitrate file is two lines, the minimum
and maximum encoder bitrate in bit/s, rewritten when the operator moves the slider; the
IPs file is one source address per line, the links srtla_send bonds over. config.json holds
the stream settings next to secrets (bcrypt ``password_hash`` and ``ssh_pass_hash``, the SRT
stream id, the relay address, the cloud ``remote_key``): only ``whitelist_config`` reads it,
and it copies nothing it does not name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass

from belabox_metrics.platform.files import list_dir

DEFAULT_BITRATE_FILE = "/tmp/belacoder_br"
DEFAULT_IPS_FILE = "/tmp/srtla_ips"
DEFAULT_PIPELINES_DIR = "/usr/share/belacoder/pipelines"
# The unit runs with PrivateTmp=true; its drop-in belabox-tmp.conf binds the host's /tmp
# read-only here, so files that appear after the service started are still seen.
HOST_TMP = "/run/belabox-metrics/host-tmp"

# Label values from config.json must look like identifiers: anything else (a pasted URL,
# a key) is dropped rather than exported.
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+/-]{0,63}$")
_PIPELINE_ID = re.compile(r"^[0-9a-f]{40}$")


class BadFile(ValueError):
    """A belaUI file that exists but cannot be understood; the message never quotes it."""


@dataclass(frozen=True)
class Setup:
    bitrate_file: str = DEFAULT_BITRATE_FILE
    ips_file: str = DEFAULT_IPS_FILE
    pipelines_dir: str = DEFAULT_PIPELINES_DIR


def _json_object(text: str, what: str) -> dict:
    try:
        doc = json.loads(text)
    except ValueError as e:
        # JSONDecodeError's message names a position, never the content.
        raise BadFile(f"{what} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BadFile(f"{what} is not a JSON object")
    return doc


def parse_setup(text: str) -> Setup:
    """The paths belaUI uses (``belacoder_path`` moves the pipelines, as in belaUI.js)."""
    doc = _json_object(text, "setup.json")

    def path(key: str, default: str) -> str:
        value = doc.get(key)
        return value if isinstance(value, str) and value.startswith("/") else default

    pipelines = DEFAULT_PIPELINES_DIR
    bc = doc.get("belacoder_path")
    if isinstance(bc, str) and bc.startswith("/"):
        pipelines = os.path.join(bc, "pipeline")
    return Setup(path("bitrate_file", DEFAULT_BITRATE_FILE), path("ips_file", DEFAULT_IPS_FILE), pipelines)


def parse_bitrate_file(text: str) -> tuple[int | None, int | None]:
    """(minimum, maximum) encoder bitrate in bit/s; None for a missing or bad line."""
    values: list[int | None] = []
    for line in text.splitlines()[:2]:
        line = line.strip()
        values.append(int(line) if line.isdigit() else None)
    while len(values) < 2:
        values.append(None)
    return values[0], values[1]


def parse_ips_file(text: str) -> list[str]:
    """The source addresses srtla_send bonds over, normalised, invalid lines skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            addr = str(ipaddress.ip_address(line))
        except ValueError:
            continue
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class StreamConfig:
    """The non-secret stream settings of config.json."""

    pipeline_id: str | None = None
    max_bitrate_kbps: int | None = None
    latency_ms: int | None = None
    audio_delay_ms: int | None = None
    bitrate_overlay: bool | None = None
    audio_source: str | None = None
    audio_codec: str | None = None


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        return int(value)
    return None


def _label(value) -> str | None:
    return value if isinstance(value, str) and _SAFE_LABEL.match(value) else None


def whitelist_config(doc: object) -> StreamConfig:
    """Copy the keys we report out of a parsed config.json, each type-checked. Every other
    key (password and SSH hashes, stream id, relay address and port, remote key, and any key
    a future belaUI adds) is never read, so it cannot reach a label, a log or a bundle."""
    if not isinstance(doc, dict):
        return StreamConfig()
    pipeline = doc.get("pipeline")
    overlay = doc.get("bitrate_overlay")
    return StreamConfig(
        pipeline_id=pipeline if isinstance(pipeline, str) and _PIPELINE_ID.match(pipeline) else None,
        max_bitrate_kbps=_int(doc.get("max_br")),
        latency_ms=_int(doc.get("srt_latency")),
        audio_delay_ms=_int(doc.get("delay")),
        bitrate_overlay=overlay if isinstance(overlay, bool) else None,
        audio_source=_label(doc.get("asrc")),
        audio_codec=_label(doc.get("acodec")),
    )


def parse_config(text: str) -> StreamConfig:
    return whitelist_config(_json_object(text, "config.json"))


def pipeline_id(dirname: str, filename: str) -> str:
    """belaUI's pipeline id: sha1 of ``<directory basename>/<file>`` (readDirAbsPath)."""
    return hashlib.sha1(f"{dirname}/{filename}".encode()).hexdigest()


def pipeline_names(pipelines_dir: str) -> dict[str, str]:
    """id -> ``<hw>/<file>`` for every pipeline belacoder ships under ``pipelines_dir``."""
    out = {}
    for hw in list_dir(pipelines_dir):
        for f in list_dir(os.path.join(pipelines_dir, hw)):
            out[pipeline_id(hw, f)] = f"{hw}/{f}"
    return out


def under_root(rootfs: str, path: str) -> str:
    return os.path.join(rootfs, path.lstrip("/"))


def runtime_candidates(rootfs: str, path: str) -> list[str]:
    """Where to look for a belaUI runtime file: through the host-/tmp bind first (the
    service's own /tmp is private), then the path itself (a tree, or an unsandboxed run)."""
    out = []
    if path.startswith("/tmp/"):
        out.append(under_root(rootfs, os.path.join(HOST_TMP, path[len("/tmp/"):])))
    out.append(under_root(rootfs, path))
    return out
