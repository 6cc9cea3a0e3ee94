"""When the modem collector must ask ModemManager for its modem list, and whether it can be there.

Starting mmcli costs a process, a D-Bus connection and ModemManager's attention, every cycle
and on every board. Most of the time the answer cannot have changed: without a system bus
ModemManager cannot run; a "not running" answer stays true until something happens; and
the modem list changes only when modems come and go, which udev reports. So:

- no system bus socket: no mmcli at all (a stat per cycle);
- ModemManager not running (or mmcli missing): asked again every ``absent_recheck`` seconds
  or when discovery reports a modem added or removed;
- ModemManager running: ``mmcli -L`` when discovery reports a modem change, after any
  failed call, every ``relist`` seconds, and every cycle for ``settle`` seconds after a
  change (ModemManager probes a new modem for some seconds before listing it). Each
  listed modem's status and signal are still read every cycle: those change.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"  # the D-Bus specification's default

UNKNOWN, PRESENT, ABSENT = "unknown", "present", "absent"


def system_bus_missing(environ: dict[str, str] | None = None) -> str | None:
    """Why no D-Bus system bus can be reached (so no ModemManager either), or None.

    Only ``unix:path=`` addresses can be checked without connecting; any other transport
    (abstract socket, tcp) counts as reachable and mmcli gives the answer.
    """
    env = os.environ if environ is None else environ
    address = env.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS
    paths = []
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        opts = dict(p.partition("=")[::2] for p in params.split(",") if p)
        if transport != "unix" or "path" not in opts:
            return None
        paths.append(opts["path"])
    if any(os.path.exists(p) for p in paths):
        return None
    return f"no D-Bus system bus at {', '.join(paths)}"


def mmcli_missing(mmcli_path: str) -> bool:
    """True when the configured mmcli cannot be started (a stat, no process)."""
    if os.sep in mmcli_path:
        return not os.access(mmcli_path, os.X_OK)
    return shutil.which(mmcli_path) is None


class ListSchedule:
    """Remembers what ModemManager last said and decides when to ask it again."""

    def __init__(self, *, absent_recheck: float = 60.0, relist: float = 300.0, settle: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.absent_recheck = absent_recheck
        self.relist = relist
        self.settle = settle
        self.clock = clock
        self.state = UNKNOWN
        self.absent_reason = ""
        self.paths: list[str] = []
        self._next_ask = 0.0
        self._settle_until = 0.0
        self._dirty = True

    def devices_changed(self) -> None:
        """Discovery added or removed a modem (called from discovery's thread)."""
        self._dirty = True

    def failed(self) -> None:
        """A call for a listed modem failed or timed out: the list may be stale."""
        self._dirty = True

    def must_list(self) -> bool:
        """Whether this cycle runs ``mmcli -L`` (False: use ``paths``, or skip when absent)."""
        now = self.clock()
        if self._dirty or self.state == UNKNOWN or now >= self._next_ask:
            return True
        return self.state == PRESENT and now < self._settle_until

    def listed(self, paths: list[str]) -> None:
        now = self.clock()
        if self.state != PRESENT or self._dirty:
            self._settle_until = now + self.settle  # just appeared or modems changed: probing
        self.state, self.paths, self.absent_reason = PRESENT, list(paths), ""
        self._next_ask = now + self.relist
        self._dirty = False

    def absent(self, reason: str) -> None:
        self.state, self.paths, self.absent_reason = ABSENT, [], reason
        self._next_ask = self.clock() + self.absent_recheck
        self._dirty = False

    def unknown(self) -> None:
        """The list call failed for another reason (timeout, malformed): ask again next cycle."""
        self.state, self.paths = UNKNOWN, []
        self._dirty = True
