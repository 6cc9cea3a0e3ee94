"""``diagnose --bundle FILE.tar.gz``: everything support needs, with identities and tokens removed.

Contents: the report (text and JSON), the effective config, ``udevadm info --export-db``,
``mmcli -L -J`` and ``-m N -J``, the board profile and a small capture of the sysfs and
procfs files the collectors read, the unit's recent journal, the kernel log's tail, the
running agent's ``/metrics``, spool statistics, and a manifest of what could not be
collected. Every file passes through one ``redact.Redactor``: JSON as values (then
serialised, so it stays JSON), text as text.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import shutil
import tarfile
import time
from typing import Any

import yaml

from belabox_metrics import config as configmod
from belabox_metrics.diagnose import devices as diagnose_devices
from belabox_metrics.diagnose import gather as diagnose
from belabox_metrics.diagnose import render as diagnose_report
from belabox_metrics.diagnose import secrets as diagnose_secrets
from belabox_metrics.platform import recorded
from belabox_metrics.redact import Redactor

# Per captured file; sysfs attributes are tiny, procfs files like mounts stay well below.
MAX_FILE_BYTES = 64 * 1024
MAX_CAPTURED_FILES = 800
KERNEL_LINES = 200
KMSG = "/dev/kmsg"
# Relative to procfs / sysfs. Globs are expanded one level at a time; no recursion into
# sysfs's devices/ tree, whose symlink web would pull in thousands of files.
PROCFS_FILES = ("cpuinfo", "meminfo", "loadavg", "uptime", "version", "stat", "mounts", "diskstats",
                "net/dev", "pressure/cpu", "pressure/memory", "pressure/io", "device-tree/model",
                "device-tree/compatible")
SYSFS_FILES = (
    "class/thermal/thermal_zone*/type", "class/thermal/thermal_zone*/temp",
    "class/hwmon/hwmon*/name", "class/hwmon/hwmon*/temp*_input", "class/hwmon/hwmon*/temp*_label",
    "class/net/*/address", "class/net/*/operstate", "class/net/*/carrier", "class/net/*/type",
    "class/net/*/uevent", "class/net/*/statistics/rx_bytes", "class/net/*/statistics/tx_bytes",
    "class/net/*/statistics/rx_errors", "class/net/*/statistics/tx_errors",
    "block/*/size", "block/*/stat", "block/*/uevent", "block/*/queue/rotational",
    "devices/system/cpu/cpu*/cpufreq/scaling_cur_freq", "devices/system/cpu/cpu*/cpufreq/scaling_max_freq",
    "devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", "devices/system/cpu/cpu*/cpufreq/scaling_governor",
    "class/devfreq/*/cur_freq", "class/devfreq/*/governor",
    "class/power_supply/*/uevent",
)


def _glob_under(root: str, pattern: str) -> list[str]:
    """Relative paths under root matching pattern, segment by segment (follows no loops)."""
    paths = [""]
    for seg in pattern.split("/"):
        nxt = []
        for base in paths:
            full = os.path.join(root, base)
            if any(ch in seg for ch in "*?["):
                try:
                    names = sorted(os.listdir(full))
                except OSError:
                    continue
                nxt.extend(os.path.join(base, n) for n in names if fnmatch.fnmatch(n, seg))
            elif os.path.lexists(os.path.join(full, seg)):
                nxt.append(os.path.join(base, seg))
        paths = nxt
    return paths


def capture_tree(root: str, patterns: tuple[str, ...], limit: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for pattern in patterns:
        for rel in _glob_under(root, pattern):
            if len(out) >= limit:
                return out
            try:
                with open(os.path.join(root, rel), "rb") as fh:
                    data = fh.read(MAX_FILE_BYTES)
            except OSError:
                continue
            # device-tree strings are NUL-separated.
            out[rel] = data.replace(b"\x00", b"\n").decode("utf-8", "replace")
    return out


class _Bundle:
    def __init__(self, redactor: Redactor):
        self.red = redactor
        self.files: dict[str, str] = {}
        self.notes: list[str] = []

    def add(self, name: str, text: str) -> None:
        self.files[name] = self.red.text(text)

    def add_json(self, name: str, value: Any) -> None:
        # Values are redacted, then serialised: a text pass over JSON would rewrite numbers.
        self.files[name] = json.dumps(self.red.tree(value), indent=2, sort_keys=True, default=str) + "\n"

    def tool(self, name: str, argv: list[str], timeout: float = diagnose.SUBPROCESS_TIMEOUT,
             as_json: bool = False) -> str | None:
        """Run a tool and keep its output; JSON output is redacted by key too (ModemManager
        may list own numbers without the plus that the text patterns look for)."""
        rc, out, err = diagnose.run_tool(argv, timeout)
        if rc != 0:
            last = (err.strip().splitlines() or [""])[-1]
            self.notes.append(f"{name}: `{' '.join(argv)}` exited {rc}: {self.red.text(last)}")
            return None
        try:
            if not as_json:
                raise ValueError
            self.add_json(name, json.loads(out))
        except ValueError:
            self.add(name, out)
        if err.strip():
            self.add(name + ".stderr", err)
        return out


def collect(report: dict[str, Any], args, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The bundle's files, name -> redacted text."""
    cfg, problems = diagnose.load_config(args)
    b = _Bundle(diagnose_secrets.redactor(cfg, environ))
    b.add("report.txt", diagnose_report.render(report, width=80, colour=False))
    b.add_json("report.json", report)
    from belabox_metrics.spool.history.fetch import bundle_page  # the last day's key signals (issue 15)
    b.add("timeline.html", bundle_page(cfg, (report.get("spool") or {}).get("path"), time.time()))
    plain = b.red.config(configmod.to_plain(cfg))
    b.add("config-effective.yaml", f"# effective configuration from {cfg.source}\n"
          + "".join(f"# problem: {p}\n" for p in problems)
          + yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))
    if shutil.which("udevadm"):
        b.tool("udev-db.txt", ["udevadm", "info", "--export-db"])
    else:
        b.notes.append("udev-db.txt: udevadm not installed")
    _modems(b, cfg)
    procfs, sysfs, _ = diagnose_devices.roots(cfg, args)
    b.add_json("hardware/profile.json", report.get("board") or {})
    for rel, text in capture_tree(procfs, PROCFS_FILES, MAX_CAPTURED_FILES).items():
        b.add(f"hardware/procfs/{rel}", text)
    for rel, text in capture_tree(sysfs, SYSFS_FILES, MAX_CAPTURED_FILES).items():
        b.add(f"hardware/sysfs/{rel}", text)
    if shutil.which("journalctl"):
        b.tool("journal.txt", ["journalctl", "-u", diagnose.UNIT, "-n", "200", "--no-pager", "-o", "short-iso"])
    else:
        b.notes.append("journal.txt: journalctl not installed")
    kernel_log(b, procfs)
    _metrics(b, report)
    b.add_json("spool.json", report.get("spool") or {})
    sysd = (report.get("service") or {}).get("systemd")
    if sysd:
        b.add_json("systemd.json", sysd)
    b.add("MANIFEST.txt", f"metrics-collector diagnose bundle, {report.get('generated', '')}\n"
          + ("Identifiers (IMEI, ICCID, IMSI, phone numbers, MAC addresses, serials) and secrets (tokens, URL "
             "passwords and query values, secret-named extra labels) are redacted.\n\n" if b.red.identifiers else
             "Secrets (tokens, URL passwords and query values, secret-named extra labels) are redacted; identifiers "
             "are shown (modem.expose_identifiers: true).\n\n")
          + "".join(f"{n}\n" for n in sorted(b.files))
          + ("\nnot collected:\n" + "".join(f"- {n}\n" for n in b.notes) if b.notes else ""))
    return b.files


def kernel_log(b: _Bundle, procfs: str, journalctl: str = "journalctl", kmsg: str = KMSG) -> None:
    """kernel.txt: the kernel log's last lines, from the journal, else /dev/kmsg (or, for a
    recorded tree, its kernel-journal.jsonl); kernel.unavailable.txt says why when neither."""
    if not recorded.is_live_procfs(procfs):
        path = recorded.beside(procfs, recorded.KERNEL_JOURNAL)
        try:
            b.add("kernel.txt", journal_lines_text(path, KERNEL_LINES))
            return
        except OSError as e:
            b.add("kernel.unavailable.txt", f"recorded tree: cannot read {path}: {e.strerror or e}\n")
            return
    why = []
    if shutil.which(journalctl):
        rc, out, err = diagnose.run_tool([journalctl, "-k", "-n", str(KERNEL_LINES), "--no-pager", "-o", "short-iso"])
        if rc == 0 and out.strip() and "-- No entries --" not in out:
            b.add("kernel.txt", out)
            return
        why.append(f"journalctl -k exited {rc}: {(err.strip().splitlines() or ['no entries'])[-1]}")
    else:
        why.append("journalctl not installed")
    try:
        b.add("kernel.txt", read_kmsg(kmsg, KERNEL_LINES))
        b.notes.append("kernel.txt: from " + kmsg + " (" + why[0] + ")")
    except OSError as e:
        why.append(f"{kmsg}: {e.strerror or e}")
        b.add("kernel.unavailable.txt", "; ".join(why) + "\n")
        b.notes.append("kernel.txt: " + "; ".join(why))


def journal_lines_text(path: str, limit: int) -> str:
    """``journalctl -o json`` lines as ``time message`` text, the last ``limit`` of them."""
    from belabox_metrics.health.registry import rfc3339
    from belabox_metrics.platform.kmsg import journal_message
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            msg = journal_message(entry)
            if msg is None:
                continue
            try:
                when = rfc3339(int(entry.get("__REALTIME_TIMESTAMP")) / 1e6)
            except (TypeError, ValueError):
                when = "?"
            out.append(f"{when} kernel: {msg}\n")
    return "".join(out[-limit:])


def read_kmsg(path: str, limit: int) -> str:
    """The kernel ring buffer's records (``prio,seq,usec,flags;message``) as ``[seconds] message``.
    Non-blocking: each read returns one record; EAGAIN means the end is reached."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    lines: list[str] = []
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == 32:  # EPIPE: the record was overwritten while we read; go on
                    continue
                raise
            if not rec:
                break
            head, _, msg = rec.decode("utf-8", "replace").partition(";")
            fields = head.split(",")
            usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            lines.append(f"[{usec / 1e6:12.6f}] {msg.splitlines()[0] if msg else ''}\n")
            del lines[:-limit]
    finally:
        os.close(fd)
    return "".join(lines)


def _metrics(b: _Bundle, report: dict[str, Any]) -> None:
    """metrics.txt: what the running agent's /metrics says now."""
    svc = report.get("service") or {}
    if svc.get("state") != "running":
        b.notes.append("metrics.txt: the agent is not running")
        return
    try:
        status, text = diagnose.http_get(f"{svc.get('url')}/metrics")
    except OSError as e:
        b.notes.append(f"metrics.txt: {b.red.text(str(e))}")
        return
    if status != 200:
        b.notes.append(f"metrics.txt: /metrics answered HTTP {status}")
        return
    b.add("metrics.txt", text)


def _modems(b: _Bundle, cfg: configmod.Config) -> None:
    mmcli = cfg.modem.mmcli_path
    if not (os.path.isabs(mmcli) and os.access(mmcli, os.X_OK)) and not shutil.which(mmcli):
        b.notes.append(f"mmcli: {mmcli} not installed")
        return
    timeout = max(cfg.modem.mmcli_timeout, 1.0)
    listing = b.tool("mmcli/list.json", [mmcli, "-L", "-J"], timeout, as_json=True)
    if listing is None:
        return
    try:
        paths = json.loads(listing).get("modem-list") or []
    except (ValueError, AttributeError):
        b.notes.append("mmcli/list.json: not JSON")
        return
    for path in paths[:cfg.modem.max_modems]:
        index = str(path).rstrip("/").rsplit("/", 1)[-1]
        if index.isdigit():
            b.tool(f"mmcli/modem-{index}.json", [mmcli, "-m", index, "-J"], timeout, as_json=True)


def write_bundle(dest: str, report: dict[str, Any], args, environ: dict[str, str] | None = None) -> None:
    """Write atomically, mode 0600: the bundle is redacted, but still a box's inventory."""
    files = collect(report, args, environ)
    top = "belabox-diag-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = f"{dest}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            now = time.time()
            for name, text in sorted(files.items()):
                data = text.encode("utf-8")
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(data), now, 0o644
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, dest)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def _suppress():
    import contextlib
    return contextlib.suppress(OSError)
