"""The ``diagnose`` report as text for an 80-column SSH terminal; pure, from the report dict.

ASCII only (a serial console or a minimal locale must show it), every line wrapped to
``width``, colour only when the caller says so (a TTY without NO_COLOR).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

LABEL_WIDTH = 11
SHOWN_KERNEL_LINES = 8  # the text report's last kernel events; --json keeps them all
_RANK = {"ok": 0, "degraded": 1, "error": 2}
_COLOURS = {"ok": "32", "degraded": "33", "error": "31", "running": "32", "not running": "31"}


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def human_bits(bps: float | None) -> str:
    if bps is None:
        return "?"
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if bps < 1000 or unit == "Gbit/s":
            return f"{bps:.0f} {unit}" if unit == "bit/s" else f"{bps:.1f} {unit}"
        bps /= 1000.0
    return f"{bps:.1f} Gbit/s"


def _num(n: float | int | None) -> str:
    return "?" if n is None else f"{int(n):,}"


class _Out:
    def __init__(self, width: int, colour: bool):
        self.width = max(40, width)
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, word: str, status: str | None = None) -> str:
        code = _COLOURS.get(status or word)
        if not self.colour or code is None:
            return word
        return f"\x1b[{code}m{word}\x1b[0m"

    def row(self, label: str, text: str, *, painted: Mapping[str, str] | None = None, hang: int = 0) -> None:
        """One labelled entry, wrapped under the content column. ``painted`` maps words that
        get colour after wrapping, so escape codes never count towards the width."""
        first = label.ljust(LABEL_WIDTH)[:LABEL_WIDTH]
        wrapped = textwrap.wrap(text, width=self.width, initial_indent=first,
                                subsequent_indent=" " * (LABEL_WIDTH + hang), break_long_words=True,
                                break_on_hyphens=False) or [first.rstrip()]
        for line in wrapped:
            for word, status in (painted or {}).items():
                line = line.replace(word, self.paint(word, status), 1)
            self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(report: Mapping[str, Any], width: int = 80, colour: bool = False) -> str:
    out = _Out(width, colour)
    status = report.get("status", "error")
    generated = re.sub(r"\.\d+(?=Z|[+-]\d\d:\d\d$)", "", str(report.get("generated", "")))  # whole seconds
    head = f"diagnose, device {report.get('device_id') or '?'}  {generated}"
    verdict = status.upper()
    room = out.width - len(verdict) - 1
    if len(head) > room:  # never cut the time: it goes with the verdict to a line of their own
        out.lines.append(f"diagnose, device {report.get('device_id') or '?'}"[:out.width])
        head = generated
    out.lines.append(head.ljust(room) + " " + out.paint(verdict, status))
    _service(out, report.get("service") or {})
    _components(out, report.get("components") or {})
    _spool(out, report.get("spool") or {})
    _uploads(out, report.get("uploads") or {}, report.get("spool") or {})
    _clock(out, report.get("clock") or {})
    _devices(out, report.get("devices") or {})
    _kernel(out, report.get("kernel_events") or {})
    board = report.get("board") or {}
    if board:
        out.row("Board", board.get("text") or "unknown board profile")
    cfg = report.get("config") or {}
    problems = cfg.get("problems") or []
    out.row("Config", f"{cfg.get('source', '?')}: " + ("ok" if not problems else f"{len(problems)} problem(s)"),
            painted={"ok": "ok"} if not problems else {"problem(s)": "error"})
    for p in problems:
        out.row("", "- " + p)
    for p in report.get("problems") or []:
        out.row("Problem", f"{p.get('severity', '')}: {p.get('text', '')}",
                painted={p.get("severity", ""): p.get("severity", "")})
    return out.text()


def _service(out: _Out, svc: Mapping[str, Any]) -> None:
    state = svc.get("state", "not running")
    if state == "running":
        bits = ["running"]
        if svc.get("pid"):
            bits.append(f"PID {svc['pid']}")
        if svc.get("uptime_seconds") is not None:
            bits.append(f"up {human_duration(svc['uptime_seconds'])}")
        bits.append(f"health {svc.get('health_status', '?')} at {svc.get('url', '?')}")
        out.row("Service", ", ".join(bits), painted={"running": "running"})
    else:
        out.row("Service", f"not running: {svc.get('reason', 'unknown')}", painted={"not running": "not running"})
    sysd = svc.get("systemd")
    if sysd:
        out.row("systemd", ", ".join(f"{k}={v}" for k, v in sysd.items()))


def _components(out: _Out, comps: Mapping[str, Any]) -> None:
    if not comps:
        return
    name_w = min(24, max(len(n) for n in comps))
    # Worst first: on a small screen the component that explains the verdict must be on top.
    order = sorted(comps.items(), key=lambda kv: (-_RANK.get(kv[1].get("status"), 3), kv[0]))
    for i, (name, c) in enumerate(order):
        st = c.get("status", "?")
        text = f"{st:<8} {name:<{name_w}} {c.get('message', '')}"
        out.row("Health" if i == 0 else "", text, painted={st: st}, hang=min(9 + name_w + 1, 30))


def _spool(out: _Out, sp: Mapping[str, Any]) -> None:
    if not sp:
        return
    if sp.get("error"):
        out.row("Spool", f"{sp.get('path', '?')}: {sp['error']}")
        return
    where = "persistent" if sp.get("persistent", True) else f"VOLATILE: {sp.get('reason') or 'not on flash'}"
    out.row("Spool", f"{sp.get('path', '?')} ({where}; read from {sp.get('source', '?')})")
    pending = f"{_num(sp.get('pending_samples'))} samples pending, {human_bytes(sp.get('pending_bytes'))}"
    if sp.get("oldest_age_seconds") is not None:
        pending += f", oldest {human_duration(sp['oldest_age_seconds'])} old"
    out.row("", pending)
    size = f"database {human_bytes(sp.get('db_size_bytes'))}, WAL {human_bytes(sp.get('wal_size_bytes'))}"
    out.row("", size)
    if sp.get("parked_samples"):
        out.row("", parked_line(sp))
    dropped = {k: v for k, v in (sp.get("dropped") or {}).items() if v}
    out.row("", "dropped: " + (", ".join(f"{k} {_num(v)}" for k, v in sorted(dropped.items())) or "none"))


PARK_WORDS = {"clock_unverified": "clock not verified yet, sent once it is",
              "earlier_boot_unfixable": "earlier boot without a trusted clock, dropped after parked_max_age"}


def parked_line(sp: Mapping[str, Any]) -> str:
    """``parked: 3,354 samples, 41 KB, oldest 5m old (clock_unverified 3,354: ...)``"""
    text = f"parked: {_num(sp.get('parked_samples'))} samples"
    if sp.get("parked_bytes") is not None:
        text += f", {human_bytes(sp.get('parked_bytes'))}"
    if sp.get("oldest_parked_age_seconds") is not None:
        text += f", oldest {human_duration(sp['oldest_parked_age_seconds'])} old"
    reasons = [f"{r} {_num(n)}: {PARK_WORDS.get(r, r)}" for r, n in sorted((sp.get("parked_by_reason") or {}).items())]
    return text + (f" ({'; '.join(reasons)})" if reasons else "")


def _uploads(out: _Out, up: Mapping[str, Any], sp: Mapping[str, Any]) -> None:
    if not up:
        return
    if up.get("url") is None:
        out.row("Uploads", "disabled: remote.url is not set (spool only)")
        return
    if up.get("status"):
        out.row("Uploader", f"{up['status']}: {up.get('message') or ''}", painted={up["status"]: up["status"]})
    parts = [f"to {up['url']}"]
    if up.get("last_success"):
        ago = f" ({human_duration(up['since_success_seconds'])} ago)" if up.get("since_success_seconds") else ""
        parts.append(f"last success {up['last_success']}{ago}")
    else:
        parts.append("no success seen")
    out.row("Uploads", "; ".join(parts))
    if up.get("last_error") or up.get("http_status"):
        err = up.get("last_error") or ""
        status = f"HTTP {up['http_status']}: " if up.get("http_status") and not err.startswith("HTTP ") else ""
        out.row("", f"last error: {status}{err}")
    if "refused the token" in (up.get("message") or ""):
        out.row("", "check the token in /etc/belabox-metrics/api-token matches the fleet server; on the "
                    "server: belabox-fleet register <device_id> (or rotate) and copy the new token here")
    if up.get("failures"):
        out.row("", "failures since start: " + ", ".join(f"{k} {_num(v)}" for k, v in sorted(up["failures"].items())))
    est = up.get("drain_estimate_seconds")
    rate = up.get("max_bytes_per_second")
    if est is not None:
        parked = sp.get("parked_samples")
        empty = f"backlog: nothing pending, {_num(parked)} samples parked (see Spool)" if parked else "backlog: empty"
        out.row("", f"backlog drains in ~{human_duration(est)} at {human_bytes(rate)}/s (remote.max_bytes_per_second)"
                if est else empty)
    elif rate == 0:
        out.row("", "backlog drain rate: unthrottled (remote.max_bytes_per_second: 0)")


def _clock(out: _Out, clk: Mapping[str, Any]) -> None:
    if not clk:
        return
    sync = clk.get("synchronised")
    text = {True: "synchronised", False: "NOT synchronised", None: "sync state unknown"}[sync]
    if clk.get("skew_ms") is not None:
        text += f", skew {clk['skew_ms']:.0f} ms"
    if clk.get("message"):
        text += f" ({clk['message']})"
    out.row("Clock", text)


def _kernel(out: _Out, ke: Mapping[str, Any]) -> None:
    """Counts per kind, then the last few event lines with their times (newest last)."""
    if not ke:
        return
    if ke.get("disabled"):
        out.row("Kernel", f"not watched: {ke['disabled']}")
        return
    counts = {k: v for k, v in (ke.get("counts") or {}).items() if v}
    if counts:
        out.row("Kernel", ", ".join(f"{k} {_num(v)}" for k, v in counts.items())
                + f" (counted from {ke.get('counted_from') or '?'})")
    else:
        out.row("Kernel", f"no events that matter in {ke.get('source') or '?'}")
    recent = ke.get("recent") or []
    for e in recent[-SHOWN_KERNEL_LINES:]:
        where = e.get("device") or "?"
        if e.get("modem"):
            where += f" (modem {e['modem']})"
        out.row("", f"{e.get('time') or '?'} {e.get('kind')} {where}", hang=2)
    if len(recent) > SHOWN_KERNEL_LINES:
        out.row("", f"({len(recent) - SHOWN_KERNEL_LINES} earlier lines in --json)")
    for p in ke.get("problems") or []:
        out.row("", f"problem: {p}")


def _devices(out: _Out, dev: Mapping[str, Any]) -> None:
    if not dev:
        return
    src = dev.get("source")
    modems = dev.get("modems") or []
    if not modems:
        out.row("Modems", "none")
    for i, m in enumerate(modems):
        bits = [m.get("operator") or "operator ?", m.get("technology") or "tech ?"]
        if m.get("signal_percent") is not None:
            bits.append(f"signal {m['signal_percent']:.0f}%")
        if m.get("rsrp_dbm") is not None:
            bits.append(f"RSRP {m['rsrp_dbm']:.0f} dBm")
        out.row("Modems" if i == 0 else "", f"{m['modem']}: " + ", ".join(bits))
    if modems and dev.get("modemmanager_up") == 0:  # once, not per modem
        out.row("", "ModemManager not running: radio metrics unavailable")
    for i, d in enumerate(dev.get("filesystems") or []):
        used = f"{d['used_percent']:.0f}% used" if d.get("used_percent") is not None else "usage ?"
        free = f"{human_bytes(d.get('avail_bytes'))} free of {human_bytes(d.get('size_bytes'))}"
        text = f"{d['mountpoint']} {used}, {free}"
        out.row("Disks" if i == 0 else "", text)
    for i, n in enumerate(dev.get("interfaces") or []):
        carrier = {1.0: "carrier up", 0.0: "NO carrier"}.get(n.get("carrier"), "carrier ?")
        text = f"{n['device']} {carrier}"
        if n.get("rx_bps") is not None or n.get("tx_bps") is not None:
            text += f", rx {human_bits(n.get('rx_bps'))}, tx {human_bits(n.get('tx_bps'))}"
        out.row("Network" if i == 0 else "", text)
    st = dev.get("stream")
    if st:
        procs = st.get("processes") or {}
        bits = []
        for name, p in procs.items():
            state = "up" if p.get("up") else "DOWN"
            restarts = p.get("restarts")
            bits.append(f"{name} {state}" + (f" ({restarts} restarts)" if restarts else ""))
        out.row("Stream", ", ".join(bits))
        extra = []
        if st.get("bitrate_bps") is not None:
            extra.append(f"bitrate {human_bits(st['bitrate_bps'])}")
        if st.get("links"):
            extra.append("bonded over " + " ".join(st["links"]))
        if st.get("duplicates"):
            extra.append("DUPLICATE IPv4 on " + " ".join(st["duplicates"]))
        if extra:
            out.row("", ", ".join(extra))
    temps = dev.get("temperatures") or []
    if temps:
        out.row("Temps", ", ".join(f"{t['sensor']} {t['celsius']:.0f}C" for t in temps))
    if src:
        out.row("", f"(devices from {src})")
