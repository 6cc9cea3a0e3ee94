"""``metrics-collector queue stats|export|drain|vacuum``: look into and act on the spool.

The agent holds the spool exclusively while it runs (fewer flash writes): then ``stats`` reports
the agent's own figures from its /metrics, and ``export``, ``drain`` and ``vacuum`` refuse with
exit 75 naming its PID. With the agent stopped, ``stats`` and ``export`` open the file read-only
and never remove anything; ``drain`` and ``vacuum`` take the agent's lock and write.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime, timezone

from belabox_metrics import config as configmod
from belabox_metrics import exitcodes
from belabox_metrics.commands.common import load_config
from belabox_metrics.diagnose.render import human_bytes, human_duration
from belabox_metrics.diagnose.secrets import redactor
from belabox_metrics.platform import lock
from belabox_metrics.redact import secret_labels
from belabox_metrics.spool import export as queue_export
from belabox_metrics.spool import view as spool_view


def setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    st = sub.add_parser("stats", help="pending and parked samples, bytes, age and drops (works while the agent runs)")
    st.add_argument("--json", action="store_true")
    ex = sub.add_parser("export", help="write what is pending without removing it (read-only; agent stopped)")
    ex.add_argument("--since", metavar="WHEN", help="RFC 3339 time, Unix seconds, or a duration ago (2h)")
    ex.add_argument("--until", metavar="WHEN", help="same forms as --since")
    ex.add_argument("--format", choices=("jsonl", "prometheus"), default="jsonl",
                    help="jsonl: VictoriaMetrics /api/v1/import lines (default); prometheus: text with timestamps")
    ex.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    sub.add_parser("drain", help="upload the whole backlog now, unthrottled, with progress (agent stopped)")
    sub.add_parser("vacuum", help="compact the spool file (agent stopped)")
    for q in sub.choices.values():
        q.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file")


def parse_when(text: str, now: float) -> int:
    """Milliseconds since the epoch from ``2024-01-15T10:30:00Z``, ``1705314600`` or ``2h`` (ago)."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return int(float(t) * 1000)
    if re.fullmatch(r"[0-9.]+(ns|us|ms|s|m|h)([0-9.]+(ns|us|ms|s|m|h))*", t):
        return int((now - configmod.parse_duration(t)) * 1000)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2024-01-15T10:30:00Z, Unix seconds, or 2h for two hours ago)"
                         ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _config(args: argparse.Namespace) -> configmod.Config:
    return load_config(args)


def spool_path(cfg: configmod.Config) -> str:
    """The file the agent uses (its data-path rules), else the first candidate that exists."""
    from belabox_metrics.diagnose import gather as diagnose
    candidates = [p for p, _, _ in diagnose.data_paths(cfg, dict(os.environ))]
    for p in candidates:
        if lock.is_held(lock.lock_path_for(p)):
            return p
    return next((p for p in candidates if os.path.exists(p)), candidates[0])


def main(args: argparse.Namespace) -> int:
    cfg = _config(args)  # a ConfigError becomes exit 78 in cli.main
    action = args.queue_command
    db = spool_path(cfg)
    pid = lock.read_pid(lock.lock_path_for(db))
    try:
        if action == "stats":
            try:
                return _stats(cfg, db, args)
            except spool_view.SpoolLocked:
                return _stats_from_agent(cfg, db, args, pid)
        if action == "export":
            try:
                return _export(cfg, db, args)
            except spool_view.SpoolLocked:
                print(f"queue export: the agent (PID {pid or '?'}) holds the spool exclusively: stop it "
                      "(systemctl stop metrics-collector) to export; `queue stats` works while it runs",
                      file=sys.stderr)
                return exitcodes.RUNNING
        held = lock.is_held(lock.lock_path_for(db))
        if held:
            print(f"queue {action}: the agent (PID {pid or '?'}) is running: stop it first "
                  f"(systemctl stop metrics-collector); only `queue stats` works while it runs", file=sys.stderr)
            return exitcodes.RUNNING
        return _drain(cfg, db) if action == "drain" else _vacuum(cfg, db)
    except spool_view.SpoolUnreadable as e:
        print(f"queue {action}: {e}", file=sys.stderr)
        return exitcodes.FAILURE
    except ValueError as e:
        print(f"queue {action}: {e}", file=sys.stderr)
        return exitcodes.USAGE


def _stats(cfg: configmod.Config, db: str, args) -> int:
    st = spool_view.read_stats(db, cfg.storage)
    plain = {k: getattr(st, k) for k in ("path", "pending_batches", "pending_samples", "pending_bytes",
                                         "oldest_wall_ms", "newest_wall_ms", "db_size_bytes", "wal_size_bytes",
                                         "parked_batches", "parked_samples") if hasattr(st, k)}
    plain["dropped"] = dict(st.dropped)
    now = time.time()
    # The same names and figures as `diagnose --json` and the agent's /metrics.
    plain["oldest_age_seconds"] = max(0.0, now - st.oldest_wall_ms / 1000) if st.oldest_wall_ms else None
    plain["parked_bytes"] = st.parked_bytes
    plain["parked_by_reason"] = dict(sorted(st.parked_by_reason.items()))
    plain["oldest_parked_age_seconds"] = (max(0.0, now - st.oldest_parked_wall_ms / 1000)
                                          if st.oldest_parked_wall_ms else None)
    if args.json:
        print(json.dumps(redactor(cfg).tree(plain), indent=2, sort_keys=True))
        return exitcodes.OK
    age = f", oldest {human_duration(plain['oldest_age_seconds'])} old" if st.oldest_wall_ms else ""
    print(f"spool      {redactor(cfg).text(st.path)}")
    print(f"pending    {st.pending_samples:,} samples in {st.pending_batches:,} batches, "
          f"{human_bytes(st.pending_bytes)}{age}")
    print(f"parked     {_parked(plain)}")
    print(f"file       database {human_bytes(st.db_size_bytes)}, WAL {human_bytes(st.wal_size_bytes)}")
    dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(st.dropped.items()) if v) or "none"
    print(f"dropped    {dropped}")
    return exitcodes.OK


def _stats_from_agent(cfg: configmod.Config, db: str, args, pid: int | None) -> int:
    """The running agent's own spool figures (its /metrics), when it holds the file exclusively."""
    from belabox_metrics.diagnose import facts as diagnose_facts
    from belabox_metrics.diagnose import gather as diagnose
    from belabox_metrics.health.scrape import parse_exposition
    url = diagnose.health_url(cfg, None) + "/metrics"
    try:
        _, text = diagnose.http_get(url)
    except OSError as e:
        print(redactor(cfg).text(f"queue stats: the agent (PID {pid or '?'}) holds {db} and {url} does not "
                                 f"answer ({e})"), file=sys.stderr)
        return exitcodes.FAILURE
    live = diagnose_facts.spool_from_metrics(parse_exposition(text).samples)
    if live is None:
        print(f"queue stats: {url} has no spool figures", file=sys.stderr)
        return exitcodes.FAILURE
    plain = {"path": db, "source": f"the running agent (PID {pid or '?'})",
             **{k: v for k, v in live.items() if k != "dropped"}, "dropped": live["dropped"]}
    if args.json:
        print(json.dumps(redactor(cfg).tree(plain), indent=2, sort_keys=True))
        return exitcodes.OK
    age = live.get("oldest_age_seconds")
    print(f"spool      {db} (from the running agent, PID {pid or '?'})")
    print(f"pending    {int(live['pending_samples']):,} samples, {human_bytes(live.get('pending_bytes'))}"
          + (f", oldest {human_duration(age)} old" if age else ""))
    print(f"parked     {_parked(live)}")
    sizes = f"database {human_bytes(live.get('db_size_bytes'))}, WAL {human_bytes(live.get('wal_size_bytes'))}"
    print(f"file       {sizes}")
    dropped = ", ".join(f"{k} {int(v):,}" for k, v in sorted(live["dropped"].items()) if v) or "none"
    print(f"dropped    {dropped}")
    return exitcodes.OK


def _parked(sp: dict) -> str:
    if not sp.get("parked_samples"):
        return "none"
    from belabox_metrics.diagnose.render import parked_line
    return parked_line(sp).removeprefix("parked: ")


def _device_id(cfg: configmod.Config) -> str:
    if cfg.device_id != "auto":
        return cfg.device_id
    from belabox_metrics.platform import device_id as device_id_mod
    return device_id_mod.derive_device_id(cfg, cfg.host.procfs, cfg.host.sysfs, cfg.host.rootfs)


def _export(cfg: configmod.Config, db: str, args) -> int:
    now = time.time()
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now) if args.until else None
    device_id = _device_id(cfg)
    # Secret-named extra labels (redact.SECRET_NAME) are exported as <redacted>: an export is
    # output, and it is read by people before it is re-imported anywhere.
    extra = secret_labels(cfg.remote.extra_labels)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    count = 0
    try:
        with spool_view.open_readonly(db, cfg.storage) as spool:
            for sl in spool.iter_pending(since, until):
                samples = sl.samples
                if since is not None or until is not None:  # a slice may straddle the window
                    samples = [s for s in samples if (since is None or s.ts_ms >= since)
                               and (until is None or s.ts_ms < until)]
                if args.format == "jsonl":
                    out.writelines(queue_export.jsonl_lines(samples, device_id, extra))
                else:
                    out.writelines(queue_export.prometheus_lines(samples, device_id, extra))
                count += len(samples)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {count:,} samples", file=sys.stderr)
    return exitcodes.OK


# --- drain ---------------------------------------------------------------------------------

def progress_line(done: int, total: int, nbytes: int, elapsed: float, width: int = 80) -> str:
    """``[#####.....]  45%  90,000/200,000 samples  1.2 MB  50,000/s  ETA 2s`` fitted to width."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = human_duration((total - done) / rate) if rate > 0 and total > done else ("0s" if done >= total else "?")
    pct = 100.0 * done / total if total else 100.0
    tail = (f" {pct:3.0f}% {done:,}/{total:,} samples {human_bytes(nbytes)} {rate:,.0f}/s ETA {eta}")
    bar_w = max(10, min(24, width - len(tail) - 3))
    filled = int(bar_w * pct / 100)
    return ("[" + "#" * filled + "." * (bar_w - filled) + "]" + tail)[:width]


class ProgressPrinter:
    """A redrawn bar on a TTY; plain lines at most once a second otherwise (logs, pipes, ssh -T).
    Called with upload.DrainProgress after every accepted request."""

    def __init__(self, total: int, stream=sys.stderr, clock=time.monotonic):
        self.total = total
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.clock = clock
        self.last = -1.0
        self.line = ""

    def __call__(self, progress) -> None:
        done = progress.sent_samples + progress.dropped_samples
        total = max(self.total, done + progress.pending_samples) if self.total else done + progress.pending_samples
        now = self.clock()
        if done < total and now - self.last < (0.1 if self.tty else 1.0):
            return
        self.last = now
        self.line = progress_line(done, total, progress.wire_bytes, progress.elapsed_s)
        self.stream.write(("\r" if self.tty else "") + self.line + ("" if self.tty else "\n"))
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()


def _drain(cfg: configmod.Config, db: str) -> int:
    from belabox_metrics.health import registry as health
    from belabox_metrics.health.selfmetrics import SelfMetrics
    from belabox_metrics.platform.clock import Timekeeper
    from belabox_metrics.platform.token_file import TokenSource
    from belabox_metrics.spool.store import Spool
    from belabox_metrics.upload.uploader import Uploader
    if not cfg.remote.url:
        print("queue drain: remote.url is not set: nowhere to upload to", file=sys.stderr)
        return exitcodes.CONFIG
    try:
        with lock.InstanceLock(lock.lock_path_for(db)):
            sm = SelfMetrics()
            spool = Spool.open(db, cfg.storage, selfmetrics=sm)
            try:
                before = spool.stats()
                printer = ProgressPrinter(before.pending_samples)
                # The agent's clock rules apply here too: batches taken with an unverified clock
                # are corrected from the server's Date, or parked, never sent with wrong times.
                clock = Timekeeper(cfg, selfmetrics=sm)
                up = Uploader(cfg, spool, health.Registry(), sm, device_id=_device_id(cfg), token=TokenSource(cfg),
                              timekeeper=clock)
                try:
                    result = up.drain(progress=printer, rate_limit=False)
                finally:
                    printer.finish()
                after = spool.stats()
            finally:
                spool.close()
    except lock.AlreadyRunning as e:
        print(f"queue drain: the agent (PID {e.pid or '?'}) is running: stop it first", file=sys.stderr)
        return exitcodes.RUNNING
    sent = before.pending_samples - after.pending_samples
    parked = f"; {after.parked_samples:,} parked (clock not verified: they wait for a time source)" \
        if after.parked_samples else ""
    print(f"drained {sent:,} samples; {after.pending_samples:,} still pending{parked}", file=sys.stderr)
    if result.error:
        print(f"queue drain: stopped: {result.error}", file=sys.stderr)
        return exitcodes.FAILURE
    # Parked data is not drained: a drain that leaves it is not done.
    return exitcodes.OK if after.pending_samples == 0 and not after.parked_samples else exitcodes.FAILURE


def _vacuum(cfg: configmod.Config, db: str) -> int:
    from belabox_metrics.spool.store import Spool
    if not os.path.exists(db):
        print(f"queue vacuum: {db}: no spool file", file=sys.stderr)
        return exitcodes.FAILURE
    try:
        with lock.InstanceLock(lock.lock_path_for(db)):
            spool = Spool.open(db, cfg.storage)
            try:
                before = spool.stats()
                spool.vacuum()
                after = spool.stats()
            finally:
                spool.close()
    except lock.AlreadyRunning as e:
        print(f"queue vacuum: the agent (PID {e.pid or '?'}) is running: stop it first", file=sys.stderr)
        return exitcodes.RUNNING
    print(f"vacuumed {db}: {human_bytes(before.db_size_bytes + before.wal_size_bytes)} -> "
          f"{human_bytes(after.db_size_bytes + after.wal_size_bytes)}")
    return exitcodes.OK
