"""Collector for kernel events from the journal: USB drops and resets per port (and per
modem when discovery knows which modem sits on that port), HDMI input trouble, under-voltage,
thermal, storage errors and OOM kills (kmsg.KINDS).

``belabox_kernel_events_total{kind,device[,modem]}`` counts the events of the current boot;
the last ``belabox.kernel_event_lines`` event lines are kept for ``diagnose``
(``recent_events()``). The journal is read by journal.JournalFollower in its own thread, so
``collect()`` only copies counters. Pointed at a recorded tree (``--procfs`` not this
kernel's), the host's journal says nothing about it: the tree's ``kernel-journal.jsonl`` is
read instead, once.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Sequence

from belabox_metrics.collectors import Collector, CollectorContext
from belabox_metrics.platform import journal, kmsg, recorded
from belabox_metrics.samples import Sample, sample

# (kind, device, modem) series kept before further devices fold into device="other";
# OOM lines name arbitrary processes and a flapping hub can invent ports.
MAX_SERIES = 200
# The first collect() waits at most this long for the boot replay (collect --once).
FIRST_REPLAY_WAIT = 1.0


def _usb_path(value: object) -> str | None:
    """The kernel's USB device name (``1-1.2``, what ``usb 1-1.2: ...`` lines name) from a
    modem's ``usb_path``: discovery gives the sysfs devpath (``/devices/.../usb1/1-1/1-1.2``);
    a bare name or an interface (``1-1.2:1.4``) is accepted too."""
    if not isinstance(value, str) or not value:
        return None
    return value.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0] or None


class KernelEventsCollector(Collector):
    name = "kernel_events"

    def __init__(self, ctx: CollectorContext, journalctl: Sequence[str] = ("journalctl",),
                 retry_delay: float = 5.0):
        super().__init__(ctx)
        self._journalctl = tuple(journalctl)
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._recent: collections.deque[dict] = collections.deque(maxlen=max(1, ctx.config.belabox.kernel_event_lines))
        self._port_modem: dict[str, str] = {}  # remembered so a disconnect after the modem vanished still maps
        self._follower: journal.JournalFollower | None = None
        self._first = True
        self._live = recorded.is_live_procfs(ctx.procfs)
        self.problems: list[str] = []

    @classmethod
    def configured(cls, config) -> bool:
        return config.belabox.kernel_events

    # --- the reader side (journal thread) --------------------------------------------------------

    def _entry(self, entry: dict) -> None:
        message = kmsg.journal_message(entry)
        if message is None:
            return
        event = kmsg.classify(message)
        if event is None:
            return
        modem = self._modem_for(event.usb_port) if event.usb_port else ""
        with self._lock:
            key = (event.kind, event.device, modem)
            if key not in self._counts and len(self._counts) >= MAX_SERIES:
                key = (event.kind, "other", "")
            self._counts[key] = self._counts.get(key, 0) + 1
            self._recent.append({
                "time_us": _int(entry.get("__REALTIME_TIMESTAMP")),
                "kind": event.kind, "device": event.device, "modem": modem,
                "message": message[:300],
            })

    def _modem_for(self, port: str) -> str:
        self._learn_ports()
        with self._lock:
            return self._port_modem.get(port, "")

    def _learn_ports(self) -> None:
        registry = self.device_registry()
        learned = {}
        for m in registry.modems():
            path = _usb_path(getattr(m, "usb_path", None))
            key = getattr(m, "modem_key", None) or getattr(m, "key", None)
            if path and isinstance(key, str) and key:
                learned[path] = key
        with self._lock:
            self._port_modem.update(learned)

    # --- the collector side ----------------------------------------------------------------------

    def _ensure_started(self) -> journal.JournalFollower:
        if self._follower is None:
            self._follower = journal.JournalFollower(self._entry, self._journalctl, retry_delay=self._retry_delay)
            self._follower.start()
        return self._follower

    def collect(self) -> list[Sample]:
        self.problems = []
        if not self.ctx.config.belabox.kernel_events:
            return []
        if not self._live:
            if self._first:
                self._first = False
                self._read_recorded()
            return self._samples()
        follower = self._ensure_started()
        if self._first:
            self._first = False
            follower.settled.wait(FIRST_REPLAY_WAIT)
        self._learn_ports()
        status, message = follower.state()
        if status == "failed":
            self.problems.append(message)
        if not follower.replay_done.is_set():
            return []  # half a replay would look like a counter reset
        return self._samples()

    def _read_recorded(self) -> None:
        path = recorded.beside(self.ctx.procfs, recorded.KERNEL_JOURNAL)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            return  # a tree without a recorded journal has no kernel events to show
        except OSError as e:
            self.problems.append(f"cannot read {path}: {e.strerror or e}")
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                self._entry(entry)

    def _samples(self) -> list[Sample]:
        with self._lock:
            counts = dict(self._counts)
        out = []
        for (kind, device, modem), n in sorted(counts.items()):
            labels = {"kind": kind, "device": device}
            if modem:
                labels["modem"] = modem
            out.append(sample("belabox_kernel_events_total", n, labels))
        return out

    def recent_events(self) -> list[dict]:
        """The last ``belabox.kernel_event_lines`` classified event lines, oldest first:
        ``time_us`` (journal realtime, µs), ``kind``, ``device``, ``modem``, ``message``."""
        with self._lock:
            return list(self._recent)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.stop()


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def recent_kernel_events(ctx: CollectorContext, journalctl: Sequence[str] = ("journalctl",),
                         wait: float = 3.0) -> tuple[list[dict], list[str]]:
    """For ``diagnose``, which runs apart from the agent: replay this boot's kernel log (or the
    tree's recording) and return its last ``belabox.kernel_event_lines`` event lines and any
    problem reading it. Waits at most ``wait`` seconds for journalctl."""
    c = KernelEventsCollector(ctx, journalctl=journalctl)
    try:
        if c._live and ctx.config.belabox.kernel_events:
            c._ensure_started().settled.wait(wait)
        c.collect()
        return c.recent_events(), list(c.problems)
    finally:
        c.close()
