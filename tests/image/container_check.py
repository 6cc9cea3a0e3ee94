#!/usr/bin/python3
"""Runs inside the booted container (belabox-check.service): inspect the collector, power off.

Copied into the image by tests/image/test_boot.py with its parameters in
/etc/belabox-check.json; writes /out/<tag>.json and /out/<tag>-journal.txt on the bound
host folder. Standard library only: it runs on the image's python3.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import time
import urllib.error
import urllib.request

COLLECTOR = "metrics-collector.service"
FIRSTBOOT = "metrics-collector-firstboot.service"
PROVISION = "metrics-collector-provision.service"
PROPS = ["ActiveState", "SubState", "Result", "NRestarts", "MainPID", "StatusText", "ExecMainStatus",
         "ConditionResult", "WatchdogUSec", "MemoryMax", "CPUQuotaPerSecUSec", "User"]
PATHS = ["/etc/belabox-metrics", "/etc/belabox-metrics/api-token", "/etc/belabox-metrics/config.yaml",
         "/var/lib/belabox-metrics", "/var/lib/belabox-metrics/api-token",
         "/var/lib/belabox-metrics/.firstboot-done"]

def read(path: str, mode: str = "r"):
    with open(path, mode) as fh:
        return fh.read()


params = json.loads(read("/etc/belabox-check.json"))
tag = params["tag"]
res: dict = {"errors": [], "tag": tag}


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def show(unit: str) -> dict:
    out = sh("systemctl", "show", unit, "-p", ",".join(PROPS)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait(what: str, pred, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling; the last error is reported
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.5)
    res["errors"].append(f"timed out waiting for {what} (last: {last!r})")
    return None


def describe(path: str):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return {"mode": oct(stat.S_IMODE(st.st_mode)), "user": pwd.getpwuid(st.st_uid).pw_name,
            "group": grp.getgrgid(st.st_gid).gr_name, "dir": stat.S_ISDIR(st.st_mode)}


def process(pid: str) -> dict:
    info = {}
    try:
        env = read(f"/proc/{pid}/environ", "rb").split(b"\0")
        info["env"] = {k: v for k, _, v in (e.decode().partition("=") for e in env if e)
                       if k in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY",
                                "WATCHDOG_USEC", "NOTIFY_SOCKET")}
        for line in read(f"/proc/{pid}/status").splitlines():
            if line.startswith(("Uid:", "Gid:", "Groups:")):
                key, _, value = line.partition(":")
                info[key] = value.split()
    except OSError as e:
        info["error"] = str(e)
    return info


def health():
    return get_json(f"http://127.0.0.1:{params['health_port']}/health")


def proxy_seen():
    _, seen = get_json(f"http://127.0.0.1:{params['proxy_port']}/_seen")
    return seen if seen.get("ok", 0) >= params.get("min_uploads", 1) else None


try:
    state = wait("the collector to settle", lambda: show(COLLECTOR).get("ActiveState") in ("active", "failed")
                 and show(COLLECTOR)["ActiveState"], 120)
    if state == "active":
        res["health_first"] = wait("the health endpoint", health, 90)
        res["uploads"] = wait("uploads through the proxy", proxy_seen, 120)
    else:
        res["errors"].append(f"{COLLECTOR} is {state}, not active")
    res["collector"] = show(COLLECTOR)
    res["firstboot"] = show(FIRSTBOOT)
    res["provision"] = show(PROVISION)
    res["files"] = {p: describe(p) for p in PATHS}
    res["metrics_user"] = list(pwd.getpwnam("metrics")[2:4])
    res["machine_id"] = read("/etc/machine-id").strip()
    cred_dir = f"/run/credentials/{COLLECTOR}"
    res["credentials"] = {n: read(os.path.join(cred_dir, n)) for n in sorted(os.listdir(cred_dir))} \
        if os.path.isdir(cred_dir) else None
    res["process"] = process(res["collector"].get("MainPID", "0"))
    # belabox-tmp.conf: belaUI's /tmp files, created after the service started, are visible
    # to it read-only beside its private /tmp.
    pid = res["collector"].get("MainPID", "0")
    with open("/tmp/belacoder_br", "w") as fh:
        fh.write("4500\n")
    seen = f"/proc/{pid}/root/run/belabox-metrics/host-tmp/belacoder_br"
    res["host_tmp"] = {"seen": os.path.exists(seen) and read(seen) == "4500\n",
                       "private_tmp_clean": not os.path.exists(f"/proc/{pid}/root/tmp/belacoder_br")}
    if params.get("reload"):
        before = res["collector"]["MainPID"]
        r = sh("systemctl", "reload", COLLECTOR)
        time.sleep(3)
        after = show(COLLECTOR)
        res["reload"] = {"rc": r.returncode, "stderr": r.stderr, "pid_before": before, "after": after,
                         "health": health()}
    # Kernel events: what the container's journal holds of the kernel transport, what /dev/kmsg is
    # here, and what the collector made of it (read as the unprivileged service user).
    kmsg = None
    try:
        st = os.stat("/dev/kmsg")
        kmsg = {"char": stat.S_ISCHR(st.st_mode), "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                "realpath": os.path.realpath("/dev/kmsg")}
    except OSError as e:
        kmsg = {"error": type(e).__name__}
    kernel_lines = sh("journalctl", "-k", "-b", "-o", "json", "--no-pager").stdout.splitlines()
    _, body = health() if state == "active" else (None, {})
    metrics_text = ""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{params['health_port']}/metrics", timeout=3) as r:
            metrics_text = r.read().decode()
    except OSError as e:
        res["errors"].append(f"/metrics: {e}")
    res["kernel"] = {"journal_kernel_entries": len(kernel_lines), "kmsg": kmsg,
                     "health": (body or {}).get("components", {}).get("collector.kernel_events"),
                     "metric_lines": [x for x in metrics_text.splitlines()
                                      if x.startswith("belabox_kernel_events_total")]}
    if params.get("reseed"):
        # Token rotation while the collector runs: a new seed, imported by hand as an operator
        # would; the importer restarts the collector, whose credential copy is made at start.
        before = show(COLLECTOR)
        with open("/boot/firmware/belabox-metrics.yaml", "w") as fh:
            fh.write(params["reseed"])
        r = sh("metrics-collector", "provision-import")
        _, seen = get_json(f"http://127.0.0.1:{params['proxy_port']}/_seen")
        def restarted_collector():
            c = show(COLLECTOR)
            return c["ActiveState"] == "active" and c["MainPID"] not in ("0", before["MainPID"]) and c
        restarted = wait("the collector restarted by the importer", restarted_collector, 60)
        after_ok = wait("an upload after the restart",
                        lambda: (lambda s2: s2["ok"] > seen["ok"] + 1 and s2)(
                            get_json(f"http://127.0.0.1:{params['proxy_port']}/_seen")[1]), 60)
        res["reseed"] = {"rc": r.returncode, "stderr": r.stderr, "pid_before": before["MainPID"],
                         "after": restarted, "uploads": after_ok}
    if params.get("stall"):
        # The test hook stalls the agent's loop: WATCHDOG=1 stops, systemd must kill and restart it.
        pid_before = show(COLLECTOR)["MainPID"]
        r = sh("systemctl", "kill", "-s", "SIGUSR2", "--kill-who=main", COLLECTOR)
        restarted = wait("a watchdog restart",
                         lambda: (lambda c: c["NRestarts"] != "0" and c["ActiveState"] == "active"
                                  and c["MainPID"] not in ("0", pid_before) and c)(show(COLLECTOR)), 90)
        res["stall"] = {"rc": r.returncode, "stderr": r.stderr, "pid_before": pid_before,
                        "after": restarted or show(COLLECTOR)}
    res["health"] = health() if state == "active" else None
except Exception as e:  # noqa: BLE001 - report, never hang the boot
    res["errors"].append(f"{type(e).__name__}: {e}")
finally:
    journal = sh("journalctl", "-b", "--no-pager", "-o", "short-monotonic",
                 "-u", COLLECTOR, "-u", FIRSTBOOT, "-u", PROVISION, "-u", "systemd-sysusers.service",
                 "-u", "systemd-tmpfiles-setup.service").stdout
    with open(f"/out/{tag}-journal.txt", "w") as fh:
        fh.write(journal)
    with open(f"/out/{tag}.json", "w") as fh:
        json.dump(res, fh, indent=2, default=str)
    sh("systemctl", "--no-block", "poweroff")
