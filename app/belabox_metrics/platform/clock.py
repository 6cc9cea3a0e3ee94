"""Clock trust, skew against the upload server, and re-stamping of batches taken with a wrong clock.

Boards without an RTC boot in 1970 or on a stale saved clock, and many machines never
report kernel synchronisation (``STA_UNSYNC`` stays set), so the upload server's ``Date``
header is a time source in its own right (design §6). CLOCK_BOOTTIME never steps, so
``true wall = boottime + offset`` holds for the whole boot: once the offset is known, every
batch of this boot gets a correct time from its boottime. A batch of an earlier boot taken
with an untrusted clock cannot be fixed and is parked, never uploaded with a wrong time.

A ``Date`` header has one-second resolution and is produced somewhere between sending the
request and receiving the answer, so one observation bounds the offset to an interval
(``[D - recv, D + 1 - sent]`` in boottime); intersecting several observations narrows it
to well under a second.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_tz
from typing import Any
from urllib.parse import urlsplit

from belabox_metrics.platform import boundedhttp


@dataclass(frozen=True)
class TimeFacts:
    threshold_ms: int
    synchronized: bool  # the wall clock can be trusted right now
    source: str = "none"  # "kernel" | "server" | "none"
    skew_ms: int | None = None  # local minus server, None when never measured (W21)
    last_error: str | None = None  # of the last skew check


log = logging.getLogger(__name__)

NS = 1_000_000_000
# adjtimex(2): the clock state TIME_ERROR and the status bits that mean "not synchronised".
TIME_ERROR = 5
STA_UNSYNC = 0x0040
STA_CLOCKERR = 0x1000
# How far CLOCK_BOOTTIME may drift from true time, used to widen old observations. Cheap
# crystals are within ±50 ppm; boottime of an NTP-disciplined kernel is far better.
DRIFT_PPM = 100.0
MAX_OBSERVATIONS = 32
MAX_OBSERVATION_AGE_S = 24 * 3600.0
RETRY_UNTRUSTED_S = 30.0  # skew check retry while no time source exists: batches are waiting


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only `modes` (0 = read) and `status` are used.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_reserved", ctypes.c_int * 11)]


_libc: ctypes.CDLL | None = None
# systemd-timesyncd creates this once it has synchronised the clock (it lives on /run, so
# it speaks for this boot only); systemd.exec(5): ProtectClock=yes denies adjtimex(2)
# even for reading, and the shipped unit sets it.
TIMESYNC_FLAG = "run/systemd/timesync/synchronized"


def adjtimex_synced() -> bool | None:
    """The kernel's NTP state via adjtimex(2) in read-only mode; None when the call is denied.

    A unit whose ``SystemCallFilter=`` omits ``@clock`` without ``SystemCallErrorNumber=``
    would kill the process with SIGSYS here instead; such a unit must not use this probe.
    """
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        tx = _Timex()
        state = _libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & (STA_UNSYNC | STA_CLOCKERR)


def kernel_clock_synced(rootfs: str = "/", probe: Callable[[], bool | None] = adjtimex_synced) -> bool | None:
    """Whether the system clock is NTP-synchronised: adjtimex(2) when allowed, else
    systemd-timesyncd's flag file; None when neither can tell."""
    state = probe()
    if state is not None:
        return state
    return True if os.path.exists(os.path.join(rootfs, TIMESYNC_FLAG)) else None


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def read_boot_id(procfs: str) -> str:
    try:
        with open(os.path.join(procfs, "sys/kernel/random/boot_id"), encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch from an HTTP Date (IMF-fixdate, RFC 850 or asctime), or None."""
    parts = parsedate_tz(value)
    if parts is None:
        return None
    y, mo, d, h, mi, s = parts[:6]
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s <= 61):
        return None
    days = _days_from_civil(y, mo, d)
    return days * 86400 + h * 3600 + mi * 60 + s - (parts[9] or 0)  # asctime has no zone: GMT


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: exact for any year, no dependence on the local zone.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    port = p.port or {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme, (p.hostname or "").lower(), port


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


@dataclass(frozen=True)
class _Bound:
    lo_ns: int  # true wall minus boottime is within [lo, hi] ...
    hi_ns: int
    at_boot_ns: int  # ... as of this boottime


class Timekeeper:
    """Thread-safe enough for one writer per method: the agent stamps and checks, the uploader
    corrects and observes; each update replaces whole values."""

    def __init__(self, cfg: Any, *, procfs: str | None = None, selfmetrics: Any = None,
                 wall: Callable[[], float] = time.time, boottime: Callable[[], int] = boottime_ns,
                 monotonic: Callable[[], float] = time.monotonic,
                 kernel_synced: Callable[[], bool | None] | None = None):
        self.reconfigure(cfg)
        if kernel_synced is None:
            rootfs = cfg.host.rootfs
            kernel_synced = lambda: kernel_clock_synced(rootfs)  # noqa: E731
        self._selfmetrics = selfmetrics
        self._wall, self._boot, self._mono, self._kernel = wall, boottime, monotonic, kernel_synced
        procfs = procfs or cfg.host.procfs
        self.boot_id = read_boot_id(procfs)
        if not self.boot_id:
            # Without a boot id an earlier boot cannot be told apart: treat every earlier
            # process as one, so its untrusted batches are parked rather than mis-stamped.
            self.boot_id = "unknown-" + os.urandom(16).hex()  # uuid4 would import platform
            log.warning("time: cannot read the boot id under %s; untrusted batches of earlier runs "
                        "will be parked", procfs)
        self._bounds: list[_Bound] = []  # newest first
        self._kernel_cache: tuple[float, bool] | None = None
        self._last_attempt: float | None = None
        self.last_error: str | None = None
        self._warned_skew = False

    def reconfigure(self, cfg: Any) -> None:
        """Take the monitoring settings of a reloaded config; measurements are kept."""
        self.threshold_ms = cfg.monitoring.clock_skew_warn_threshold_ms
        self.check_interval = cfg.monitoring.clock_skew_check_interval
        self.upload_url = cfg.remote.url
        self.timeout = min(cfg.remote.timeout, 10.0)

    # --- what the clock says ---------------------------------------------------------------

    def kernel_synced(self) -> bool:
        now = self._mono()
        if self._kernel_cache is None or now - self._kernel_cache[0] >= 1.0:
            self._kernel_cache = (now, bool(self._kernel()))
        return self._kernel_cache[1]

    def offset_ns(self) -> tuple[int, int] | None:
        """(true wall minus boottime, uncertainty) in ns from the server, or None."""
        bounds = self._bounds
        if not bounds:
            return None
        now = self._boot()
        lo, hi = -(2**62), 2**62
        for b in bounds:
            widen = int(abs(now - b.at_boot_ns) * DRIFT_PPM / 1e6)
            lo, hi = max(lo, b.lo_ns - widen), min(hi, b.hi_ns + widen)
        return (lo + hi) // 2, (hi - lo) // 2

    @property
    def skew_seconds(self) -> float | None:
        """Local clock minus server time (positive: local ahead), None when never measured."""
        off = self.offset_ns()
        if off is None:
            return None
        return (self._wall() * NS - self._boot() - off[0]) / NS

    @property
    def source(self) -> str:
        if self.kernel_synced():
            return "kernel"
        return "server" if self._bounds else "none"

    @property
    def synchronized(self) -> bool:
        return self._trusted(self._wall(), self._boot())

    def _trusted(self, wall_s: float, boot_ns: int) -> bool:
        if self.kernel_synced():
            return True
        off = self.offset_ns()
        # A step of the wall clock shows at once as a change of wall minus boottime.
        return off is not None and abs(wall_s * NS - boot_ns - off[0]) <= self.threshold_ms * 1_000_000

    def stamp(self) -> tuple[int, str, int, bool]:
        """(wall_ms, boot_id, boottime_ns, clock_synced) for a batch collected now."""
        boot = self._boot()
        wall = self._wall()
        return int(wall * 1000), self.boot_id, boot, self._trusted(wall, boot)

    def now_ms(self) -> int | None:
        """The best known true time now (the wall clock when trusted, else boottime plus the
        server offset), or None while no time source exists. The uploader judges "in the
        future" against this, never the raw wall clock (on a box booted in 1970 every
        corrected time would look like one), and waits while it is None: until then neither
        a timestamp nor correct()'s None can be trusted."""
        boot, wall = self._boot(), self._wall()
        if self._trusted(wall, boot):
            return int(wall * 1000)
        off = self.offset_ns()
        return (boot + off[0]) // 1_000_000 if off is not None else None

    # --- re-stamping -------------------------------------------------------------------------

    def correct(self, s: Any) -> int | None:
        """The wall_ms to upload a batch slice with, or None to hold it back (park).

        A slice of this boot is re-stamped from its boottime once an offset is known (from the
        server, or from the kernel once it is synchronised); until then, and forever for an
        untrusted slice of an earlier boot, the answer is None.
        """
        if s.clock_synced:
            return s.wall_ms
        if not s.boot_id or s.boot_id != self.boot_id:
            return None
        if self.kernel_synced():
            offset = int(self._wall() * NS) - self._boot()
        else:
            off = self.offset_ns()
            if off is None:
                return None
            offset = off[0]
        fixed = (s.boottime_ns + offset) // 1_000_000
        return s.wall_ms if abs(fixed - s.wall_ms) <= self.threshold_ms else fixed

    def can_restamp(self, boot_id: str) -> bool:
        """True when untrusted batches of ``boot_id`` can be given a correct time now (this
        boot, with a time source): batches parked while waiting for one can be unparked."""
        return boot_id == self.boot_id and (self.kernel_synced() or bool(self._bounds))

    # --- measuring ---------------------------------------------------------------------------

    def observe_response(self, date_header: str | None, t_sent_wall: float, t_recv_wall: float) -> bool:
        """Learn from any server answer. Times are this Timekeeper's wall clock (seconds) just
        before sending and just after the answer's headers; True when the Date was usable."""
        delta = self._wall() - self._boot() / NS  # wall minus boottime right now
        return self._observe(date_header, int((t_sent_wall - delta) * NS), int((t_recv_wall - delta) * NS))

    def _observe(self, date_header: str | None, sent_ns: int, recv_ns: int) -> bool:
        date = parse_http_date(date_header) if date_header else None
        if date is None or recv_ns < sent_ns:
            return False
        new = _Bound(date * NS - recv_ns, (date + 1) * NS - sent_ns, recv_ns)
        kept = [new]
        lo, hi = new.lo_ns, new.hi_ns
        for b in self._bounds[:MAX_OBSERVATIONS - 1]:
            age = recv_ns - b.at_boot_ns
            widen = int(abs(age) * DRIFT_PPM / 1e6)
            blo, bhi = b.lo_ns - widen, b.hi_ns + widen
            if age > MAX_OBSERVATION_AGE_S * NS or blo > hi or bhi < lo:
                # Too old, or the server's clock stepped: older observations no longer apply.
                break
            lo, hi = max(lo, blo), min(hi, bhi)
            kept.append(b)
        self._bounds = kept
        self.last_error = None
        self._publish()
        return True

    def check_due(self, now_mono: float | None = None) -> bool:
        now = self._mono() if now_mono is None else now_mono
        if self._last_attempt is None:
            return True
        wait = self.check_interval if self.source != "none" else min(self.check_interval, RETRY_UNTRUSTED_S)
        return now - self._last_attempt >= wait

    def check_skew(self, url: str, client: boundedhttp.Client | None = None,
                   token: str | None = None) -> float | None:
        """GET ``url`` and learn the offset from its Date header; the skew in seconds or None.

        The HTTP status does not matter when a Date header is present (a 401 from an auth
        proxy still carries the server's time). A ``token`` is sent only to the upload
        server's own origin, never to another host (W22); none is needed for a Date.
        """
        self._last_attempt = self._mono()
        headers = {"User-Agent": "metrics-collector"}
        if token and self.upload_url and _origin(url) == _origin(self.upload_url):
            headers["Authorization"] = f"Bearer {token}"
        # Checks are minutes apart, longer than servers keep a connection open: a new one each
        # time, and only the headers are read (the body would add to the measured interval).
        own = client is None
        http = boundedhttp.Client() if client is None else client
        sent = self._boot()
        try:
            resp = http.request("GET", url, headers=headers, budget=self.timeout, max_body=0)
            recv = self._boot()
            date, status = resp.headers.get("Date"), resp.status
        except boundedhttp.FetchError as e:  # one line of our own words: no URL, no token
            self.last_error = _one_line(e)
            log.warning("time: skew check against %s failed: %s", url, self.last_error)
            self._publish()
            return None
        finally:
            if own:
                http.close()
        if not date:
            self.last_error = f"no Date header in the answer (HTTP {status})"
        elif not self._observe(date, sent, recv):
            self.last_error = f"unparseable Date header {date[:64]!r} (HTTP {status})"
        if self.last_error:
            log.warning("time: skew check against %s: %s", url, self.last_error)
            self._publish()
            return None
        return self.skew_seconds

    # --- reporting ---------------------------------------------------------------------------

    def facts(self) -> TimeFacts:
        """For health.time_health; also refreshes the clock gauges."""
        self._publish()
        skew = self.skew_seconds
        return TimeFacts(threshold_ms=self.threshold_ms, synchronized=self.synchronized, source=self.source,
                         skew_ms=None if skew is None else int(skew * 1000), last_error=self.last_error)

    def _publish(self) -> None:
        skew = self.skew_seconds
        if self._selfmetrics is not None:
            if skew is not None:  # only a measured value, never a fake 0 (W21)
                self._selfmetrics.set("metrics_collector_clock_skew_seconds", round(skew, 3))
            self._selfmetrics.set("metrics_collector_clock_synchronized", 1.0 if self.synchronized else 0.0)
        over = skew is not None and abs(skew) * 1000 > self.threshold_ms
        if over and not self._warned_skew:
            side = "ahead of" if skew > 0 else "behind"
            log.warning("time: local clock is %.3fs %s the server; batches of this boot are re-stamped "
                        "from boottime", abs(skew), side)
        self._warned_skew = over
