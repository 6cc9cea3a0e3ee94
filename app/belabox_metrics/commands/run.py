"""``metrics-collector run``: the agent in the foreground (what the systemd unit starts)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import add_roots, config_file
from belabox_metrics.config import child as config_child
from belabox_metrics.platform.device_id import DeviceIdError

log = logging.getLogger("belabox_metrics.agent")


def setup(p: argparse.ArgumentParser) -> None:
    add_roots(p)


def _redact_logs(cfg: configmod.Config) -> None:
    """Every log line passes through the config's Redactor (URL passwords, query values, the
    token, secret extra labels) whatever path brought a secret into it. Identifiers stay: the
    journal does not leave the box, and the bundle's copy of it is redacted in full."""
    from belabox_metrics.diagnose.secrets import redactor
    from belabox_metrics.redact import LogFilter, Redactor
    red = Redactor(redactor(cfg).secrets, identifiers=False)
    for handler in logging.getLogger().handlers:
        handler.addFilter(LogFilter(red))


# What Agent.start() imports whatever the config says. Imported while the config child works:
# on a multi-core board these imports and the child's (jsonschema) run side by side, and start to
# READY is then the child's time plus what start() does with the answer.
PRELOAD = ("belabox_metrics.spool.store", "belabox_metrics.spool.location", "belabox_metrics.agent.history",
           "belabox_metrics.platform.device_id", "belabox_metrics.platform.clock",
           "belabox_metrics.devices.discovery", "belabox_metrics.devices.registry",
           "belabox_metrics.collectors.registry", "belabox_metrics.collectors.runner",
           "belabox_metrics.upload.uploader", "belabox_metrics.platform.token_file",
           "belabox_metrics.diagnose.secrets", "belabox_metrics.redact")


def preload() -> None:
    """Import what start() will need (pyudev too) and read the board profiles, before the config is known.
    The collectors enabled by default are imported too (25 ms): a config that disables one
    keeps its module in memory for nothing, which costs less than making every start wait."""
    for name in PRELOAD:
        importlib.import_module(name)
    from belabox_metrics.collectors import registry
    from belabox_metrics.devices import discovery
    from belabox_metrics.platform import board
    defaults = configmod.Config().collectors
    for name in registry.SYSTEM_COLLECTOR_NAMES:
        if defaults.get(name).enabled:
            registry.collector_class(name)
    board.load_profiles()
    discovery.preload()


def main(args: argparse.Namespace) -> int:
    # Validated in a child: jsonschema never becomes resident in the long-running agent. The
    # child starts first and the agent's imports happen while it works (see config_child.start).
    validation = config_child.start(config_file(args))
    # Here, not at the top: the overlap above, and building the parser (--help, the bash
    # completion generated at package build time) must not need sdnotify.
    from belabox_metrics.agent import residency
    from belabox_metrics.agent.loop import Agent, Roots
    from belabox_metrics.platform import logsetup, notify
    from belabox_metrics.platform.lock import AlreadyRunning
    preload()

    try:
        cfg = validation.result()
    except configmod.ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return exitcodes.CONFIG
    logsetup.setup(cfg.logging.level, cfg.logging.format)
    _redact_logs(cfg)
    residency.limit()
    config_path = None if cfg.source.startswith("<") else cfg.source
    agent = Agent(cfg, Roots.from_config(cfg, args), config_path=config_path, notifier=notify.Notifier())
    try:
        agent.start()
    except AlreadyRunning as e:
        log.error("%s", e)
        return exitcodes.RUNNING
    except (configmod.ConfigError, DeviceIdError) as e:  # device_id: auto with no serial nor machine-id
        for line in e.problems:
            print(line, file=sys.stderr)
        agent.close()
        return exitcodes.CONFIG
    except OSError as e:
        log.error("cannot start: %s", e)
        agent.close()
        return exitcodes.FAILURE
    return agent.run()
