"""Provisioning seed: ``belabox-metrics.yaml`` on the boot partition, imported at every boot.

The boot partition is FAT, so a laptop can write it: ``token: <secret>`` plus any agent
settings, nested like config.yaml (typically ``remote.url``, ``remote.extra_labels``,
``device_id``). ``metrics-collector provision-import`` (metrics-collector-provision.service,
every boot, before the collector) checks the seed with the agent's own validator, writes the
token to the token file (0600 root:metrics, handed to the service by ``LoadCredential=``) and
the settings to the drop-in ``config.d/50-provision.yaml``, then deletes the seed (the card is
removable and FAT has no permissions) and leaves ``belabox-metrics-imported.txt`` saying what
was imported and when, never the token. A refused seed stays where it is for the operator to
fix; the note and one journal line say why, and the box runs on with what it had.

The credential copy is made when the service starts, so a token changed while the collector
runs reaches it only through a restart: the importer restarts a running collector after a
token change (``try-restart``) and reloads it after a settings-only change. At boot the
importer runs before the collector, which then simply starts with the new files.
"""

from __future__ import annotations

import grp
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import config_path
from belabox_metrics.config import dropins as config_dropins

SEED_NAME = "belabox-metrics.yaml"
NOTE_NAME = "belabox-metrics-imported.txt"
DROPIN_NAME = "50-provision.yaml"
TOKEN_NAME = "api-token"
UNIT = "metrics-collector.service"
# Used when no board profile says where the boot partition is (see boot_search).
DEFAULT_BOOT_DIRS = ("/boot/firmware", "/boot", "/boot/efi")
DEFAULT_BOOT_LABELS = ("BOOT", "boot", "bootfs", "BOOTFS", "RPI-BOOT")
FAT_TYPES = frozenset({"vfat", "msdos", "fat", "exfat"})


class SeedError(Exception):
    """Why a seed is refused: one line, never the token."""


@dataclass(frozen=True)
class Seed:
    token: str | None
    settings: dict


@dataclass(frozen=True)
class Places:
    boot_dirs: tuple[str, ...]
    conf_dir: str = "/etc/belabox-metrics"
    state_dir: str = "/var/lib/belabox-metrics"
    config_path: str = configmod.DEFAULT_CONFIG_PATH
    group: str = "metrics"


@dataclass
class Outcome:
    status: str  # none, imported, unchanged, refused, failed
    seed: str = ""
    message: str = ""
    token_changed: bool = False
    settings_changed: bool = False
    written: list[str] = field(default_factory=list)


# --- pure: the seed, the drop-in, the note -------------------------------------------------

def fingerprint(token: str) -> str:
    """What may be shown of a token: enough to tell two apart, nothing to rebuild it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def parse_seed(text: str, validate: Callable[[Mapping[str, Any]], None]) -> Seed:
    """The seed's token and settings; ``validate`` raises ConfigError for settings the agent
    would refuse. Raises SeedError with one line."""
    try:
        raw = configmod.parse(text, SEED_NAME)
    except configmod.ConfigError as e:
        raise SeedError("; ".join(e.problems)) from None
    token = raw.pop("token", None)
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise SeedError(f"{SEED_NAME}: token: must be a non-empty string")
        if any(c.isspace() for c in token.strip()):
            raise SeedError(f"{SEED_NAME}: token: must be one word (no spaces or line breaks)")
        token = token.strip()
    if token is None and not raw:
        raise SeedError(f"{SEED_NAME}: holds neither a token nor settings")
    if raw:
        try:
            validate(raw)
        except configmod.ConfigError as e:
            raise SeedError("; ".join(e.problems)) from None
    return Seed(token, raw)


def render_dropin(settings: Mapping[str, Any], when: str, seed_path: str) -> str:
    return (f"# Imported from {seed_path} at {when} by `metrics-collector provision-import`.\n"
            "# A later seed on the boot partition replaces this file; local changes belong in\n"
            "# another drop-in (e.g. 90-local.yaml), which wins over this one.\n"
            + yaml.safe_dump(dict(settings), sort_keys=False, default_flow_style=False))


def render_note(outcome: Outcome, when: str) -> str:
    head = f"belabox-metrics provisioning, {when}\n"
    if outcome.status == "refused":
        return (head + f"REFUSED {outcome.seed}: {outcome.message}\n"
                "Nothing was imported; the box runs with its previous settings and token.\n"
                f"Fix {SEED_NAME} on this partition and reboot.\n")
    return (head + f"imported {outcome.seed}: {outcome.message}\n"
            f"{SEED_NAME} was removed from this partition: it held the token.\n")


# --- where things are ----------------------------------------------------------------------

def boot_search(profile: Mapping[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(folders, FAT labels) to look for the seed in, from a board profile's ``boot_partition``."""
    bp = (profile or {}).get("boot_partition") or {}
    dirs = tuple(bp.get("dirs") or DEFAULT_BOOT_DIRS)
    labels = tuple(bp.get("labels") or DEFAULT_BOOT_LABELS)
    return dirs, labels


def fat_mounts_with_label(mounts: list, labels: tuple[str, ...], label_of: Callable[[str], str | None]) -> list[str]:
    """Mount points of FAT file systems whose label is one of ``labels``."""
    return [m.mount_point for m in mounts if m.fstype in FAT_TYPES and label_of(m.source) in labels]


def find_seed(boot_dirs: tuple[str, ...]) -> str | None:
    """The first folder's seed; FAT names are case-insensitive, so is the match."""
    for d in boot_dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in sorted(names):
            if name.lower() == SEED_NAME and os.path.isfile(os.path.join(d, name)):
                return os.path.join(d, name)
    return None


def default_boot_dirs(procfs: str = "/proc", sysfs: str = "/sys") -> tuple[str, ...]:
    """The board profile's folders, then mounted FAT partitions with a boot-like label."""
    from belabox_metrics.platform import board as hardware
    from belabox_metrics.spool import location as paths

    profile_raw: dict = {}
    try:
        directory = hardware.profiles_dir()
        board = hardware.detect_profile(procfs, sysfs, directory)
        if directory is not None:
            with open(os.path.join(directory, board.id, "profile.yaml"), encoding="utf-8") as fh:
                profile_raw = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        pass  # no profiles installed: the defaults
    dirs, labels = boot_search(profile_raw)
    try:
        with open(os.path.join(procfs, "self/mountinfo"), encoding="utf-8", errors="replace") as fh:
            mounts = paths.parse_mountinfo(fh.read())
    except OSError:
        mounts = []
    by_label = {os.path.realpath(os.path.join("/dev/disk/by-label", n)): n
                for n in (os.listdir("/dev/disk/by-label") if os.path.isdir("/dev/disk/by-label") else [])}
    extra = fat_mounts_with_label(mounts, labels, lambda src: by_label.get(os.path.realpath(src)))
    return tuple(dict.fromkeys((*dirs, *extra)))


def writable(directory: str) -> bool:
    try:
        return os.access(directory, os.W_OK) and not os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return False


# --- I/O: writing ---------------------------------------------------------------------------

def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def write_atomic(path: str, data: bytes, mode: int | None, gid: int | None) -> bool:
    """Write ``data`` unless the file already holds it; True when it changed. Temp file in the
    same folder, mode set before the first byte, fsync, rename, fsync of the folder. ``mode``
    None: leave it to the file system (FAT has no modes; chmod there fails)."""
    if read_bytes(path) == data:
        return False
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            if gid is not None and os.geteuid() == 0:
                os.fchown(fd, 0, gid)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)
    return True


def fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # FAT through some drivers refuses fsync on folders; the data went out already
    finally:
        os.close(fd)


def _gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _validator(places: Places) -> Callable[[Mapping[str, Any]], None]:
    """The agent's validator, on the seed alone (bad keys named in the seed) and merged over
    the box's config and its other drop-ins (what the agent will load)."""
    def check(settings: Mapping[str, Any]) -> None:
        configmod.validate(settings, SEED_NAME, {})
        path = places.config_path if os.path.exists(places.config_path) else None
        layers = [layer for layer in config_dropins.read_layers(
            path, places.config_path, read=configmod.read, parse=configmod.parse)
            if os.path.basename(layer.path) != DROPIN_NAME]
        merged, _ = config_dropins.merge_layers([*layers, config_dropins.Layer(SEED_NAME, settings)])
        configmod.validate(merged, SEED_NAME, {})
    return check


def import_seed(places: Places, when: str) -> Outcome:
    seed_path = find_seed(places.boot_dirs)
    if seed_path is None:
        return Outcome("none", message="no seed in " + ", ".join(places.boot_dirs))
    outcome = Outcome("imported", seed=seed_path)
    try:
        raw = read_bytes(seed_path)
        if raw is None:
            raise SeedError(f"{SEED_NAME}: cannot be read")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SeedError(f"{SEED_NAME}: not UTF-8 text") from None
        seed = parse_seed(text, _validator(places))
    except (SeedError, configmod.ConfigError) as e:
        outcome.status, outcome.message = "refused", str(e).replace("\n", "; ")
        _leave_note(seed_path, outcome, when)
        return outcome
    target = next((d for d in (places.conf_dir, places.state_dir) if writable(d)), None)
    if target is None:
        outcome.status = "failed"
        outcome.message = f"neither {places.conf_dir} nor {places.state_dir} is writable; seed kept"
        return outcome
    gid = _gid(places.group)
    done = []
    if seed.token is not None:
        token_path = os.path.join(target, TOKEN_NAME)
        outcome.token_changed = write_atomic(token_path, (seed.token + "\n").encode(), 0o600, gid)
        done.append(f"token {fingerprint(seed.token)} to {token_path}"
                    + ("" if outcome.token_changed else " (unchanged)"))
    if seed.settings:
        dropin_dir = os.path.join(target, config_dropins.DROPIN_DIR)
        if not os.path.isdir(dropin_dir):
            os.mkdir(dropin_dir, 0o750)
            if gid is not None and os.geteuid() == 0:
                os.chown(dropin_dir, 0, gid)
        dropin = os.path.join(dropin_dir, DROPIN_NAME)
        old = read_bytes(dropin)
        keys = ", ".join(config_dropins.leaf_paths(seed.settings))
        text = render_dropin(seed.settings, when, seed_path)
        # The header's time alone must not count as a change (nor restart the collector).
        same = old is not None and old.split(b"\n", 1)[-1] == text.encode().split(b"\n", 1)[-1]
        outcome.settings_changed = not same and write_atomic(dropin, text.encode(), 0o640, gid)
        done.append(f"settings {keys} to {dropin}" + ("" if outcome.settings_changed else " (unchanged)"))
    outcome.message = "; ".join(done)
    outcome.written = done
    if not (outcome.token_changed or outcome.settings_changed):
        outcome.status = "unchanged"
    try:
        os.unlink(seed_path)
        fsync_dir(os.path.dirname(seed_path))
    except OSError as e:
        outcome.message += f"; the seed could not be removed ({e.strerror}): the token is still on the card"
    _leave_note(seed_path, outcome, when)
    return outcome


def _leave_note(seed_path: str, outcome: Outcome, when: str) -> None:
    note = os.path.join(os.path.dirname(seed_path), NOTE_NAME)
    try:
        write_atomic(note, render_note(outcome, when).encode(), None, None)
    except OSError as e:
        outcome.message += f"; no note written to {note} ({e.strerror})"


def poke_collector(outcome: Outcome, run: Callable[..., Any] = subprocess.run) -> str | None:
    """A running collector gets the change: a restart for a token (LoadCredential= copies it at
    start), a reload for settings. At boot the collector is not active yet: nothing to do."""
    if not (outcome.token_changed or outcome.settings_changed):
        return None
    try:
        state = run(["systemctl", "is-active", UNIT], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # no systemd here (a chroot, a test): the next start reads the files
    if state != "active":
        return None
    verb = "try-restart" if outcome.token_changed else "try-reload-or-restart"
    # --no-block: never wait on a job that may itself wait on this one.
    run(["systemctl", "--no-block", verb, UNIT], capture_output=True, text=True, timeout=30)
    return verb


# --- the command ------------------------------------------------------------------------------

def setup(p) -> None:
    p.add_argument("--boot-dir", action="append", metavar="DIR",
                   help="look for the seed here (repeatable; default: the board profile's boot "
                        "partition folders and mounted FAT partitions labelled like BOOT)")
    p.add_argument("--conf-dir", default=Places.conf_dir, metavar="DIR", help="token and config.d folder")
    p.add_argument("--state-dir", default=Places.state_dir, metavar="DIR",
                   help="used instead when the conf dir is read-only")
    p.add_argument("--no-restart", action="store_true", help="leave a running collector alone")


def main(args) -> int:
    import time

    if os.geteuid() != 0:
        print("provision-import: must run as root (it writes the 0600 root:metrics token file)", file=sys.stderr)
        return exitcodes.FAILURE
    places = Places(tuple(args.boot_dir or default_boot_dirs()), args.conf_dir, args.state_dir, config_path(args))
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        outcome = import_seed(places, when)
    except OSError as e:
        print(f"provision-import: failed: {e.strerror or e} ({e.filename or ''})", file=sys.stderr)
        return exitcodes.FAILURE
    if outcome.status == "none":
        print(f"provision-import: {outcome.message}", file=sys.stderr)
        return 0
    if outcome.status == "refused":
        print(f"provision-import: refused {outcome.seed}: {outcome.message}", file=sys.stderr)
        return exitcodes.CONFIG
    if outcome.status == "failed":
        print(f"provision-import: failed: {outcome.message}", file=sys.stderr)
        return exitcodes.FAILURE
    poked = None if args.no_restart else poke_collector(outcome)
    print(f"provision-import: {outcome.status} {outcome.seed}: {outcome.message}"
          + (f"; {UNIT} {poked}" if poked else ""), file=sys.stderr)
    return 0
