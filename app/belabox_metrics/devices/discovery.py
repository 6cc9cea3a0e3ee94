"""udev discovery: the only module that imports pyudev.

With udevd running, a udev-source monitor on block, net, tty, usb and usbmisc is started
*before* enumerating (so nothing is lost between the two) and every event updates the
DeviceRegistry within milliseconds. Without udevd (no ``/run/udev``: containers, this
CI machine) a udev monitor never receives anything (feasibility.md §2), so discovery
rescans sysfs periodically, and immediately on a kernel-source uevent when the sysfs root
is the live one. Health component ``discovery`` says which mode runs.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Any

from belabox_metrics.devices.model import (
    OWN_ATTRS,
    OWN_FLAGS,
    PARENT_ATTRS,
    SUBSYSTEMS,
    DeviceEvent,
    DeviceInfo,
    Node,
)
from belabox_metrics.devices.registry import DeviceRegistry
from belabox_metrics.devices.sysfsscan import SysfsScanner

log = logging.getLogger(__name__)

DEFAULT_UDEV_RUN_DIR = "/run/udev"
# Kernel uevents come in bursts (a modem brings a dozen devices): wait this long after the
# first one before rescanning, still well inside the one-second promise.
RESCAN_DEBOUNCE = 0.15
# Without udev, a full sysfs scan runs when the device folders' listings change, and at least
# this often for attributes that change in place (a profile of the agent without udevd found the
# 5 s full scans were 84% of its CPU).
FULL_SCAN_EVERY = 300.0
# Every how many listing checks the class links are followed too (sysfsscan.listing).
FOLLOW_LINKS_EVERY = 6


def _pyudev() -> Any:
    import pyudev  # imported lazily: `check-config` and the sysfs fallback work without it
    return pyudev


def preload() -> None:
    """Import pyudev ahead of start() (`run` does while its config is being validated): with
    what it brings along (ctypes, libudev) it is 10-30 ms of start-up. Failing here is left for
    start() to meet and report."""
    try:
        _pyudev()
    except Exception:  # noqa: S110 (reported by _choose_mode, which tries again)
        pass


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def _attrs(device: Any, names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            value = _text(device.attributes.get(name))
        except (OSError, KeyError, UnicodeError):
            value = None
        if value is not None:
            out[name] = value
    return out


def device_info(device: Any) -> DeviceInfo | None:
    """Our record of a pyudev Device (udev properties plus the sysfs facts we classify by)."""
    subsystem = device.subsystem
    if subsystem not in SUBSYSTEMS:
        return None
    if subsystem == "usb" and device.device_type != "usb_device":
        return None
    sys_path = device.sys_path
    if subsystem == "tty" and not os.path.exists(os.path.join(sys_path, "device")):
        return None  # virtual consoles and ptys
    parents = []
    for p in device.ancestors:
        parents.append(Node(devpath=p.device_path, subsystem=p.subsystem, devtype=p.device_type,
                            driver=p.driver, attrs=_attrs(p, PARENT_ATTRS)))
    return DeviceInfo(
        subsystem=subsystem, devpath=device.device_path, name=device.sys_name,
        devtype=device.device_type, driver=device.driver,
        properties={k: _text(v) or "" for k, v in device.properties.items()},
        attrs=_attrs(device, OWN_ATTRS.get(subsystem, ())),
        flags=frozenset(f for f in OWN_FLAGS.get(subsystem, ())
                        if os.path.exists(os.path.join(sys_path, f))),
        parents=tuple(parents),
    )


def device_event(device: Any) -> DeviceEvent:
    return DeviceEvent(action=device.action or "change", subsystem=device.subsystem or "",
                       sys_path=device.device_path,
                       properties={k: _text(v) or "" for k, v in device.properties.items()})


class Discovery:
    """Keeps ``registry`` current from udev, or from sysfs rescans when udev is absent.

    ``sysfs`` and ``udev_run_dir`` are injectable so tests (and `devices --sysfs DIR`)
    never touch the host's devices or udev database.
    """

    def __init__(self, registry: DeviceRegistry, *, sysfs: str,
                 udev_run_dir: str = DEFAULT_UDEV_RUN_DIR, rescan_interval: float = 5.0,
                 resync_interval: float = 600.0, kernel_monitor: bool = True,
                 health: Any = None, selfmetrics: Any = None):
        self.registry = registry
        self.sysfs = sysfs
        self.udev_run_dir = udev_run_dir
        self.rescan_interval = rescan_interval
        self.resync_interval = resync_interval  # udev mode: full re-enumeration in case events were lost
        self.use_kernel_monitor = kernel_monitor
        self.health = health
        self.selfmetrics = selfmetrics
        self.mode = "none"
        self.message = ""
        self._context: Any = None
        self._monitor: Any = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self._scanner = SysfsScanner(sysfs)

    # --- mode ---------------------------------------------------------------------------------

    def _choose_mode(self) -> None:
        context, reason = None, ""
        try:
            context = _pyudev().Context()
        except Exception as e:  # ImportError, or libudev missing from the image
            reason = f"pyudev unavailable ({e})"
        live = context is not None and os.path.realpath(self.sysfs) == os.path.realpath(context.sys_path)
        if live and os.path.isdir(self.udev_run_dir):
            self.mode, self._context = "udev", context
            self.message = f"udev monitor on {', '.join(SUBSYSTEMS)}"
            return
        self.mode = "sysfs"
        if context is not None:
            reason = "udev not running" if live else f"sysfs root {self.sysfs} is not the live sysfs"
        self.message = f"{reason}: sysfs rescans every {self.rescan_interval:g}s"
        # Without udevd a kernel-source monitor still hears uevents, but only for the live tree.
        self._context = context if live and self.use_kernel_monitor else None

    def _report(self) -> None:
        self.registry.mode = self.mode
        if self.health is not None:
            status = "ok" if self.mode == "udev" else "degraded"
            self.health.update("discovery", status, self.message, mode=self.mode,
                               devices=len(self.registry.disks()) + len(self.registry.interfaces()),
                               modems=len(self.registry.modems()))

    # --- enumeration ----------------------------------------------------------------------------

    def enumerate(self) -> list[DeviceInfo]:
        if self.mode != "udev":
            return self._scanner.scan()
        out = []
        for subsystem in SUBSYSTEMS:
            for device in self._context.list_devices(subsystem=subsystem):
                try:
                    info = device_info(device)
                except Exception as e:  # a device vanishing mid-read must not stop the rest
                    log.debug("skipping %s: %s", device.sys_path, e)
                    continue
                if info is not None:
                    out.append(info)
        return out

    def scan_once(self) -> None:
        """Fill the registry once, without a thread (`devices` without --watch)."""
        self._choose_mode()
        self.registry.replace_all(self.enumerate())
        self._report()

    def start(self) -> None:
        self._choose_mode()
        if self._context is not None:
            try:
                self._open_monitor()
            except Exception as e:  # netlink refused (sandbox, container): rescans still work
                self._monitor = None
                self.mode = "sysfs"
                self.message = f"udev monitor unavailable ({e}): sysfs rescans every {self.rescan_interval:g}s"
        self.registry.replace_all(self.enumerate())
        self._report()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()

    def _open_monitor(self) -> None:
        source = "udev" if self.mode == "udev" else "kernel"
        monitor = _pyudev().Monitor.from_netlink(self._context, source=source)
        if source == "udev":
            for subsystem in SUBSYSTEMS:
                monitor.filter_by(subsystem)
        monitor.start()  # before enumerating: events in between are queued, not lost
        self._monitor = monitor
        if source == "kernel":
            self.message += " and on kernel uevents"

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        try:
            os.write(self._stop_w, b"x")  # self-pipe: wakes the select at once
        except OSError:
            pass
        self._thread.join(timeout)
        self._thread = None
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._monitor = None

    # --- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        periodic = self.resync_interval if self.mode == "udev" else self.rescan_interval
        next_full = time.monotonic() + periodic
        rescan_at: float | None = None
        fds = [self._stop_r] + ([self._monitor.fileno()] if self._monitor is not None else [])
        while True:
            now = time.monotonic()
            due = min(next_full, rescan_at) if rescan_at is not None else next_full
            try:
                ready, _, _ = select.select(fds, [], [], max(0.0, due - now))
            except InterruptedError:
                continue
            if self._stop_r in ready:
                return
            try:
                heard = self._drain() if self._monitor is not None and self._monitor.fileno() in ready else 0
                if heard and self.mode != "udev" and rescan_at is None:
                    rescan_at = time.monotonic() + RESCAN_DEBOUNCE
                now = time.monotonic()
                rescanned = now >= next_full or (rescan_at is not None and now >= rescan_at)
                if rescanned and self.mode != "udev" and rescan_at is None and not self._listing_changed(now):
                    next_full, rescanned = now + periodic, False
                if rescanned:
                    self.registry.replace_all(self.enumerate())
                    next_full, rescan_at = now + periodic, None
                    self._full_at = now
                if heard or rescanned:
                    self._report()  # keeps the device counts in health current
            except Exception as e:
                # Keep the thread alive: one bad device or a lost netlink buffer (ENOBUFS)
                # is healed by the next full scan.
                log.warning("discovery: %s; rescanning", e)
                if self.selfmetrics is not None:
                    self.selfmetrics.inc("metrics_collector_discovery_errors_total")
                next_full = time.monotonic() + min(periodic, 1.0)

    def _listing_changed(self, now: float) -> bool:
        """True when something was plugged or unplugged since the last look, or a full scan is
        due anyway; the check itself is a few listdirs."""
        self._checks = getattr(self, "_checks", 0) + 1
        follow = self._checks % FOLLOW_LINKS_EVERY == 0
        listing = self._scanner.listing(follow)
        # Followed and unfollowed listings differ only by links left behind: compare like with like.
        last = getattr(self, "_listing_followed" if follow else "_listing", None)
        changed = listing != last or now - getattr(self, "_full_at", 0.0) >= FULL_SCAN_EVERY
        setattr(self, "_listing_followed" if follow else "_listing", listing)
        return changed

    def _drain(self) -> int:
        """Handle the queued monitor events; returns how many concerned our subsystems.

        In udev mode each event updates the registry; a kernel-source monitor (no udevd)
        only says that a sysfs rescan is due.
        """
        count = 0
        while True:
            device = self._monitor.poll(timeout=0)
            if device is None:
                return count
            event = device_event(device)
            if event.subsystem not in SUBSYSTEMS:
                continue
            count += 1
            if self.mode == "udev":
                self.handle(event, device)

    def handle(self, event: DeviceEvent, device: Any = None) -> None:
        """Apply one udev event to the registry."""
        if event.action == "remove":
            self.registry.remove(event.sys_path)
            return
        if event.action == "move" and event.properties.get("DEVPATH_OLD"):
            self.registry.remove(event.properties["DEVPATH_OLD"])  # a renamed netdev
        infos = [device_info(device)] if device is not None else []
        if event.subsystem == "usb":
            # A USB device or interface appeared, changed or bound a driver: the records of
            # the netdevs and ports below it hold a copy of it, so take them again.
            infos += [self._describe_path(p) for p in self.registry.devpaths_below(event.sys_path)]
        infos = [i for i in infos if i is not None]
        if infos:
            self.registry.update_many(infos)

    def _describe_path(self, devpath: str) -> DeviceInfo | None:
        try:
            device = _pyudev().Devices.from_path(self._context, devpath)
            return device_info(device)
        except Exception as e:  # gone again already
            log.debug("cannot re-read %s: %s", devpath, e)
            return None
