"""The fleet directory: settings, device registry and token store, read and written safely.

Layout (the directory is 0700, every file 0600, written atomically by rename):

- ``fleet.yaml``   settings: VictoriaMetrics write and query URLs, the public URL boxes
  upload to, where vmauth listens, rotation grace, when a box counts as dark.
- ``devices.yaml`` the registry: per device its labels, state, and token generations
  with their SHA-256 (the registry itself never holds a token).
- ``tokens.yaml``  the tokens in plain text, per device and generation. vmauth compares
  bearer tokens verbatim (1.79 has no hashed form), so they must exist in the clear
  somewhere; this file and the generated ``vmauth.yml`` are the only places.
- ``vmauth.yml``, ``vmauth.env``  generated for vmauth (see vmauth.py).
- ``.lock``        flock held by every command that changes something.

Pure parsing (``parse_*``) is separate from file access. Imports: stdlib and yaml only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from belabox_metrics import exitcodes

# The exit codes of every command of this project live in one module.
EXIT_RUNTIME, EXIT_USAGE, EXIT_CONFIG = exitcodes.FAILURE, exitcodes.USAGE, exitcodes.CONFIG
FLEET_FILE, DEVICES_FILE, TOKENS_FILE = "fleet.yaml", "devices.yaml", "tokens.yaml"
# A device id becomes a label value and part of a URL query; keep it to what a hostname allows
# (the agent's own device_id rules are a superset) so it never needs quoting anywhere.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MIN_TOKEN_LEN = 16
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class FleetError(Exception):
    """A one-line message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME):
        super().__init__(message)
        self.code = code


# --- pure parsing ---------------------------------------------------------------------

def parse_duration(text: str) -> float:
    m = _DURATION_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 5m, 24h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id or ""):
        raise FleetError(f"bad device id {device_id!r}: letters, digits, '.', '_', '-', at most 63, "
                         "starting with a letter or digit", EXIT_USAGE)
    return device_id


def parse_labels(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise FleetError(f"bad --label {pair!r}: want name=value with a Prometheus label name", EXIT_USAGE)
        if name == "device_id":
            raise FleetError("--label device_id is not allowed: the device id is the enrolled ID", EXIT_USAGE)
        out[name] = value
    return out


def check_url(url: str, what: str) -> str:
    p = urlsplit(url or "")
    if p.scheme not in ("http", "https") or not p.hostname:
        raise FleetError(f"bad {what} {url!r}: want http(s)://host[:port][/path]", EXIT_USAGE)
    if p.query or p.fragment:
        raise FleetError(f"bad {what} {url!r}: no query or fragment", EXIT_USAGE)
    return url.rstrip("/")


def check_token(token: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LEN or any(c.isspace() for c in token) or not token.isprintable():
        raise FleetError(f"the token must be one word of at least {MIN_TOKEN_LEN} printable characters")
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Settings:
    vm_url: str  # prefix that /api/v1/import is appended to (single node, or vminsert's tenant path)
    query_url: str  # prefix that /api/v1/query is appended to (single node, or vmselect's tenant path)
    public_url: str  # what boxes upload to: vmauth (behind TLS); /api/v1/import is appended
    vmauth_listen: str = "127.0.0.1:8427"
    grace_s: float = 86400.0
    dark_after_s: float = 300.0

    @property
    def vmauth_url(self) -> str:
        host, _, port = self.vmauth_listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{host}:{port}"

    @property
    def upload_url(self) -> str:
        return self.public_url + "/api/v1/import"


def parse_settings(raw: Any) -> Settings:
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ValueError("not a belabox-fleet settings file (version 1)")
    try:
        return Settings(vm_url=str(raw["vm_url"]), query_url=str(raw["query_url"]),
                        public_url=str(raw["public_url"]), vmauth_listen=str(raw["vmauth_listen"]),
                        grace_s=float(raw["grace_seconds"]), dark_after_s=float(raw["dark_after_seconds"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"missing or bad key {e}") from None


def dump_settings(s: Settings) -> dict:
    return {"version": 1, "vm_url": s.vm_url, "query_url": s.query_url, "public_url": s.public_url,
            "vmauth_listen": s.vmauth_listen, "grace_seconds": s.grace_s, "dark_after_seconds": s.dark_after_s}


@dataclass
class TokenGen:
    gen: int
    sha256: str
    created: float
    source: str  # enrolled | registered | rotated
    retire_after: float | None = None  # set on the old token by a rotation


@dataclass
class Device:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    state: str = "active"  # active | revoked
    revoked_at: float | None = None
    vm_url: str | None = None  # a route other than the fleet's (another tenant's vminsert)
    tokens: list[TokenGen] = field(default_factory=list)

    def next_gen(self) -> int:
        return max((t.gen for t in self.tokens), default=0) + 1


def parse_devices(raw: Any) -> dict[str, Device]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("devices"), dict):
        raise ValueError("not a belabox-fleet registry (version 1)")
    out = {}
    for did, d in raw["devices"].items():
        try:
            tokens = [TokenGen(int(t["gen"]), str(t["sha256"]), float(t["created"]), str(t["source"]),
                               None if t.get("retire_after") is None else float(t["retire_after"]))
                      for t in d.get("tokens") or ()]
            out[str(did)] = Device(str(did), {str(k): str(v) for k, v in (d.get("labels") or {}).items()},
                                   float(d.get("created", 0)), str(d.get("state", "active")),
                                   d.get("revoked_at"), d.get("vm_url"), tokens)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"device {did!r}: bad entry ({e.__class__.__name__}: {e})") from None
    return out


def dump_devices(devices: dict[str, Device]) -> dict:
    def tok(t: TokenGen) -> dict:
        d = {"gen": t.gen, "sha256": t.sha256, "created": t.created, "source": t.source}
        if t.retire_after is not None:
            d["retire_after"] = t.retire_after
        return d
    out = {}
    for did in sorted(devices):
        d = devices[did]
        entry: dict[str, Any] = {"labels": dict(d.labels), "created": d.created, "state": d.state,
                                 "tokens": [tok(t) for t in d.tokens]}
        if d.revoked_at is not None:
            entry["revoked_at"] = d.revoked_at
        if d.vm_url:
            entry["vm_url"] = d.vm_url
        out[did] = entry
    return {"version": 1, "devices": out}


def parse_tokens(raw: Any) -> dict[str, dict[int, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("not a token store")
    try:
        return {str(did): {int(g): str(t) for g, t in (gens or {}).items()} for did, gens in raw.items()}
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"bad token store ({e})") from None


# --- files ----------------------------------------------------------------------------

def write_private(path: Path, text: str) -> None:
    """Atomic write of a 0600 file: the temporary file is 0600 from its first byte, so a
    token never sits in a readable file even for a moment."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FleetError(f"{path}: missing; is {path.parent} a fleet directory (belabox-fleet init)?",
                         EXIT_CONFIG) from None
    except PermissionError:
        raise FleetError(f"{path}: not readable by uid {os.getuid()}", EXIT_CONFIG) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FleetError(f"{path}: cannot be read: {' '.join(str(e).split())[:200]}", EXIT_CONFIG) from None


class FleetDir:
    """One fleet directory. Loading checks modes: a registry others can read is refused, as
    ssh refuses a readable private key."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.settings: Settings | None = None
        self.devices: dict[str, Device] = {}
        self.tokens: dict[str, dict[int, str]] = {}

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, path: str | os.PathLike, settings: Settings) -> FleetDir:
        fd = cls(path)
        if fd.file(FLEET_FILE).exists():
            raise FleetError(f"{fd.path} is already a fleet directory", EXIT_RUNTIME)
        if fd.path.exists() and (not fd.path.is_dir() or any(fd.path.iterdir())):
            raise FleetError(f"{fd.path} exists and is not an empty directory", EXIT_USAGE)
        try:
            fd.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(fd.path, 0o700)
        except OSError as e:
            raise FleetError(f"cannot create {fd.path}: {e.strerror}", EXIT_RUNTIME) from None
        fd.settings = settings
        fd.save()
        return fd

    def load(self) -> FleetDir:
        if not self.path.is_dir():
            raise FleetError(f"{self.path}: not a fleet directory (run belabox-fleet init)", EXIT_CONFIG)
        for name in (FLEET_FILE, DEVICES_FILE, TOKENS_FILE):
            self._check_mode(self.file(name))
        try:
            self.settings = parse_settings(_read_yaml(self.file(FLEET_FILE)))
            self.devices = parse_devices(_read_yaml(self.file(DEVICES_FILE)))
            self.tokens = parse_tokens(_read_yaml(self.file(TOKENS_FILE)))
        except ValueError as e:
            raise FleetError(f"{self.path}: {e}", EXIT_CONFIG) from None
        return self

    def _check_mode(self, path: Path) -> None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise FleetError(f"{path}: missing; is {self.path} a fleet directory (belabox-fleet init)?",
                             EXIT_CONFIG) from None
        if mode & 0o077:
            raise FleetError(f"{path} is accessible to group or others (mode {mode:04o}); chmod 600 it",
                             EXIT_CONFIG)

    def save(self) -> None:
        assert self.settings is not None
        write_private(self.file(FLEET_FILE), yaml.safe_dump(dump_settings(self.settings), sort_keys=False))
        write_private(self.file(DEVICES_FILE), yaml.safe_dump(dump_devices(self.devices), sort_keys=False))
        write_private(self.file(TOKENS_FILE), yaml.safe_dump(self.tokens, sort_keys=True))

    @contextmanager
    def locked(self):
        """Serialises commands that change the directory (two operators, the sync timer)."""
        fh = open(self.file(".lock"), "a")  # noqa: SIM115 - held for the block
        try:
            os.chmod(fh.name, 0o600)
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield self.load()
        finally:
            fh.close()

    # --- lookups ------------------------------------------------------------------------

    def device(self, device_id: str) -> Device:
        d = self.devices.get(device_id)
        if d is None:
            raise FleetError(f"no device {device_id!r} in {self.path}", EXIT_RUNTIME)
        return d

    def token_in_use(self, token: str) -> str | None:
        """The device that holds ``token`` (any generation), or None; vmauth refuses a whole
        config with a duplicate bearer_token, so a duplicate must never be written."""
        h = token_hash(token)
        for d in self.devices.values():
            if any(t.sha256 == h for t in d.tokens):
                return d.id
        return None

    def add_token(self, device: Device, token: str, source: str, now: float | None = None) -> TokenGen:
        holder = self.token_in_use(token)
        if holder is not None:
            raise FleetError(f"that token is already in use by device {holder!r}; generate another one")
        t = TokenGen(device.next_gen(), token_hash(token), time.time() if now is None else now, source)
        device.tokens.append(t)
        self.tokens.setdefault(device.id, {})[t.gen] = token
        return t

    def drop_token(self, device: Device, gen: int) -> None:
        device.tokens = [t for t in device.tokens if t.gen != gen]
        self.tokens.get(device.id, {}).pop(gen, None)
