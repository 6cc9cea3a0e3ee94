"""The one path from a Config to the running agent: start-up and SIGHUP both apply settings here.

Start-up builds the parts (spool, runner, uploader, ...) and then calls ``apply`` with
``initial=True``; a reload calls it with the new config. What can change live is applied to
every part, the spool's size cap, commit interval and checkpoints included; what needs a restart
is named, in the log and in health's ``config`` component, never silently ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.health import registry as health
from belabox_metrics.health.binding import HealthBinding
from belabox_metrics.platform import device_id as device_id_mod
from belabox_metrics.platform import logsetup

log = logging.getLogger("belabox_metrics.agent")

# Settings that are read once, when a resource is opened or bound.
RESTART_ONLY = ("storage.path", "storage.fallback_path", "health.enabled", "health.listen_addr",
                "host.procfs", "host.sysfs", "host.rootfs")


@dataclass
class Outcome:
    changed: list[str] = field(default_factory=list)  # every setting whose value changed
    restart_needed: list[str] = field(default_factory=list)  # the changed ones that wait for a restart


def flatten(plain: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and leaves are values."""
    if not isinstance(plain, dict):
        return {prefix: plain}
    out: dict[str, Any] = {}
    for key, value in plain.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and key != "extra_labels":
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def diff(old: configmod.Config, new: configmod.Config) -> Outcome:
    a, b = flatten(configmod.to_plain(old)), flatten(configmod.to_plain(new))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    restart = [k for k in changed if k.startswith(RESTART_ONLY)]
    return Outcome(changed, restart)


def build(agent: Any) -> None:
    """Start-up: open discovery, collectors, uploader and health server, then apply the
    config through ``apply`` like any reload."""
    start_discovery(agent)
    start_collectors(agent)
    start_uploader(agent)
    apply(agent, agent.cfg, initial=True)
    report(agent, None)
    start_health_server(agent)


def start_discovery(agent: Any) -> None:
    from belabox_metrics.devices.discovery import Discovery
    from belabox_metrics.devices.registry import DeviceRegistry
    agent.discovery = Discovery(DeviceRegistry(), sysfs=agent.roots.sysfs, health=agent.health,
                               selfmetrics=agent.selfmetrics)
    agent.discovery.start()


def collector_context(agent: Any) -> CollectorContext:
    from belabox_metrics.platform import board as hardware
    profile = hardware.detect_profile(agent.roots.procfs, agent.roots.sysfs)
    registry = agent.discovery.registry if agent.discovery is not None else None
    return CollectorContext(config=agent.cfg, procfs=agent.roots.procfs, sysfs=agent.roots.sysfs,
                            rootfs=agent.roots.rootfs, registry=registry, selfmetrics=agent.selfmetrics,
                            profile=profile)


def start_collectors(agent: Any) -> None:
    from belabox_metrics.collectors.registry import build_collectors
    from belabox_metrics.collectors.runner import CollectorRunner
    ctx = collector_context(agent)
    agent.runner = CollectorRunner(build_collectors(ctx), agent.cfg, agent.health, agent.selfmetrics)


def start_uploader(agent: Any) -> None:
    from belabox_metrics.platform.token_file import TokenSource
    from belabox_metrics.upload.uploader import Uploader
    if not agent.cfg.remote.url:
        agent.health.update("uploader", health.OK, "spool only: remote.url is not set",
                           pending_count=agent.spool.stats().pending_samples)
        log.warning("remote.url is not set: collecting into the spool only, nothing is uploaded")
        return
    agent.uploader = Uploader(agent.cfg, agent.spool, agent.health, agent.selfmetrics, device_id=agent.device_id,
                             token=TokenSource(agent.cfg, agent.environ), timekeeper=agent.timekeeper)
    agent.uploader.on_cycle = agent._wake.set
    agent.spool.before_commit = agent.uploader.delivery.park_untrusted
    agent.uploader.start()


def start_health_server(agent: Any) -> None:
    if not agent.cfg.health.enabled:
        return
    # Collection matters more than the endpoint: a busy port is retried in the background.
    agent.server = HealthBinding(agent.cfg.health.listen_addr, agent.health, agent.metrics_text,
                                 procfs=agent.roots.procfs)
    if agent.server.start():
        host = configmod.parse_listen_addr(agent.cfg.health.listen_addr)[0]
        log.info("health on http://%s:%d/health", host, agent.server.port)


def diff_has(outcome: Outcome, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in outcome.changed)


def apply(agent: Any, new: configmod.Config, *, initial: bool = False) -> Outcome:
    """Apply ``new`` to every live part of ``agent``. Parts not built yet are skipped, so
    start-up calls this once everything is open."""
    outcome = Outcome() if initial else diff(agent.cfg, new)
    if not initial:  # at start `run` has set logging up already (and added the redaction filter)
        logsetup.setup(new.logging.level, new.logging.format)
    old, agent.cfg = agent.cfg, new
    if agent.spool is not None:
        agent.spool.reconfigure(new.storage)
        wal_share = agent.spool.wal_share_bytes()
        if (new.storage.wal_checkpoint_size_mb << 20) > wal_share and (initial or diff_has(outcome, "storage")):
            # INFO, not WARNING: the guide's own 64 MiB (our default too) meets the default 64 MiB cap.
            log.info("storage.wal_checkpoint_size_mb: %d MiB is more than the WAL may hold (1/16 of "
                     "storage.max_size_mb: %d KiB); checkpoints happen at %d KiB",
                     new.storage.wal_checkpoint_size_mb, wal_share >> 10, wal_share >> 10)
    if agent.runner is not None:
        agent.runner.reconfigure(new)
    if agent.timekeeper is not None:
        agent.timekeeper.reconfigure(new)
    if not initial and (new.device_id or "") != (old.device_id or ""):
        agent.device_id = device_id_mod.derive_device_id(new, agent.roots.procfs, agent.roots.sysfs,
                                                         agent.roots.rootfs)
    if agent.uploader is not None and new.remote.url:
        if not initial:
            agent.uploader.reconfigure(new, device_id=agent.device_id)
    elif agent.uploader is not None:
        agent.uploader.stop(timeout=agent.SHUTDOWN_UPLOAD_BUDGET)
        agent.uploader = agent.spool.before_commit = None
        agent.health.update("uploader", health.OK, "spool only: remote.url is not set")
    elif new.remote.url and not initial:
        agent.start_uploader()
    return outcome


def report(agent: Any, outcome: Outcome | None, *, refused: list[str] | None = None) -> None:
    """The ``config`` health component and the one log line of a reload."""
    source = agent.config_path or configmod.BUILTIN_SOURCE
    if refused:
        first = refused[0] + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else "")
        agent.health.update("config", health.DEGRADED,
                            f"reload refused, running the previous config: {first}",
                            problems=list(refused), path=source)
        return
    pending = list(agent.restart_needed)
    if outcome is not None:
        pending = sorted(set(pending) | set(outcome.restart_needed))
        agent.restart_needed = pending
    if pending:
        agent.health.update("config", health.DEGRADED, f"restart needed: {', '.join(pending)}",
                            restart_needed=pending, path=source)
    else:
        agent.health.update("config", health.OK, f"running {source}", path=source)
