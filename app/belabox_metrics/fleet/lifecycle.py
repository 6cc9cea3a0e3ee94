"""A device's life in the fleet: enroll, register, revoke, rotate, and settling rotations.

Every change is made under the fleet directory's lock, saved, rendered into vmauth.yml and
pushed to the running vmauth (vmauth.py); the result says whether vmauth runs it.

Rotation: the new token is added beside the old one, which gets ``retire_after`` = now +
grace. ``settle`` drops an old token once vmauth has counted a request with a newer token of
the same device (the box switched), or once its grace has passed. ``settle`` runs with every
command that changes the fleet, with ``list``, and from ``belabox-fleet sync`` (a timer).

The seed is what ``scripts/flash --seed`` puts on a box: ``belabox-metrics.yaml`` holding
``token`` plus agent config keys, written 0600.

Imports: stdlib, yaml, and the fleet modules.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from belabox_metrics.fleet import vmauth
from belabox_metrics.fleet.registry import (
    EXIT_USAGE,
    Device,
    FleetDir,
    FleetError,
    check_token,
    new_token,
    write_private,
)


@dataclass
class Change:
    summary: str  # one line: what changed in the registry
    applied: vmauth.Applied | None = None
    retired: list[str] | None = None  # "id#gen" of old tokens settle dropped


def seed_text(fleet: FleetDir, device: Device, token: str) -> str:
    assert fleet.settings is not None
    remote: dict = {"url": fleet.settings.upload_url}
    if device.labels:
        remote["extra_labels"] = dict(device.labels)
    doc = {"token": token, "device_id": device.id, "remote": remote}
    return ("# belabox-metrics.yaml: seed for scripts/flash --seed (device " + device.id + ").\n"
            "# Holds the device's upload token: keep it 0600 and delete it once flashed.\n"
            + yaml.safe_dump(doc, sort_keys=False))


def write_seed(path: str, text: str) -> None:
    p = Path(path)
    if p.is_dir():
        p = p / "belabox-metrics.yaml"
    if not p.parent.is_dir():
        raise FleetError(f"--seed-out {path}: directory {p.parent} does not exist", EXIT_USAGE)
    try:
        write_private(p, text)
    except OSError as e:
        raise FleetError(f"cannot write seed {p}: {e.strerror}") from None


def read_token_file(path: str) -> str:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise FleetError(f"--token-file {path} is not a regular file", EXIT_USAGE)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise FleetError(f"--token-file {path} does not exist", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as e:
        raise FleetError(f"--token-file {path} cannot be read ({e.__class__.__name__})", EXIT_USAGE) from None
    try:
        return check_token(text)
    except FleetError as e:
        raise FleetError(f"--token-file {path}: {e}", EXIT_USAGE) from None


def _publish(fleet: FleetDir, change: Change, now: float) -> Change:
    """Settle rotations, save, render vmauth.yml, and get vmauth to run it."""
    client = vmauth.VmauthClient(fleet)
    change.retired = _retire(fleet, client.user_requests(), now)
    fleet.save()
    probe = vmauth.write(fleet)
    change.applied = client.apply(probe)
    return change


def _new_device(fleet: FleetDir, device_id: str, labels: dict, vm_url: str | None, now: float) -> Device:
    old = fleet.devices.get(device_id)
    if old is not None:
        what = "revoked; enrolling again needs a new id" if old.state == "revoked" else "already enrolled"
        raise FleetError(f"device {device_id!r} is {what}")
    d = Device(device_id, labels, now, vm_url=vm_url)
    fleet.devices[device_id] = d
    return d


def enroll(path: str, device_id: str, labels: dict, seed_out: str, vm_url: str | None = None) -> Change:
    fd = FleetDir(path)
    with fd.locked() as fleet:
        now = time.time()
        d = _new_device(fleet, device_id, labels, vm_url, now)
        token = new_token()
        fleet.add_token(d, token, "enrolled", now)
        write_seed(seed_out, seed_text(fleet, d, token))  # before saving: a failed seed leaves no device
        return _publish(fleet, Change(f"enrolled {device_id}; seed written to {seed_out}"), now)


def register(path: str, device_id: str, labels: dict, token_file: str, vm_url: str | None = None) -> Change:
    token = read_token_file(token_file)
    fd = FleetDir(path)
    with fd.locked() as fleet:
        now = time.time()
        d = _new_device(fleet, device_id, labels, vm_url, now)
        fleet.add_token(d, token, "registered", now)
        return _publish(fleet, Change(f"registered {device_id} with the token it generated"), now)


def revoke(path: str, device_id: str) -> Change:
    fd = FleetDir(path)
    with fd.locked() as fleet:
        now = time.time()
        d = fleet.device(device_id)
        if d.state == "revoked":
            raise FleetError(f"device {device_id!r} is already revoked")
        d.state, d.revoked_at = "revoked", now
        # The hashes stay in the registry, so a revoked token can never be registered again.
        fleet.tokens.pop(device_id, None)
        return _publish(fleet, Change(f"revoked {device_id}: its tokens are refused from now on"), now)


def rotate(path: str, device_id: str, seed_out: str, grace_s: float | None = None) -> Change:
    fd = FleetDir(path)
    with fd.locked() as fleet:
        now = time.time()
        d = fleet.device(device_id)
        if d.state != "active":
            raise FleetError(f"device {device_id!r} is revoked; nothing to rotate")
        assert fleet.settings is not None
        grace = fleet.settings.grace_s if grace_s is None else grace_s
        for t in d.tokens:
            if t.retire_after is None or t.retire_after > now + grace:
                t.retire_after = now + grace
        token = new_token()
        t = fleet.add_token(d, token, "rotated", now)
        write_seed(seed_out, seed_text(fleet, d, token))
        return _publish(fleet, Change(f"rotated {device_id} to token generation {t.gen}; seed written to "
                                      f"{seed_out}; the old token works until the box uses the new one "
                                      f"(at most {grace:g}s)"), now)


def sync(path: str) -> Change:
    """Settle rotations and push the current config to vmauth (the timer's job; also repairs
    a vmauth that missed a reload)."""
    fd = FleetDir(path)
    with fd.locked() as fleet:
        return _publish(fleet, Change("vmauth config regenerated"), time.time())


def due(fleet: FleetDir, counters: dict[str, float] | None, now: float) -> list[tuple[Device, int]]:
    """Old tokens to drop: grace ended, or the device has used a newer token (vmauth's
    counters; None when vmauth cannot be asked, then only the grace counts)."""
    out = []
    for d in fleet.devices.values():
        if d.state != "active":
            continue
        for t in d.tokens:
            if t.retire_after is None:
                continue
            newer_used = counters is not None and any(
                counters.get(vmauth.user_name(d.id, n.gen), 0) > 0 for n in d.tokens if n.gen > t.gen)
            if newer_used or now >= t.retire_after:
                out.append((d, t.gen))
    return out


def _retire(fleet: FleetDir, counters: dict[str, float] | None, now: float) -> list[str]:
    retired = []
    for d, gen in due(fleet, counters, now):
        fleet.drop_token(d, gen)
        retired.append(vmauth.user_name(d.id, gen))
    return retired


def settle_if_due(path: str) -> list[str]:
    """For ``list``: retire tokens when one is due, without rewriting the config otherwise."""
    fleet = FleetDir(path).load()
    if not any(t.retire_after is not None for d in fleet.devices.values() for t in d.tokens):
        return []
    if not due(fleet, vmauth.VmauthClient(fleet).user_requests(), time.time()):
        return []
    return sync(path).retired or []


__all__ = ["Change", "enroll", "register", "revoke", "rotate", "seed_text", "settle_if_due",
           "sync"]
