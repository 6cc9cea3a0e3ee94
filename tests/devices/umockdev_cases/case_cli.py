"""`metrics-collector devices` as a child process under the same umockdev testbed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

from tests.support.cli import cli_argv, cli_env

from .conftest import plug, unplug


def _env(testbed) -> dict[str, str]:
    # The child inherits the preload from LD_PRELOAD; UMOCKDEV_DIR points it at our testbed.
    return cli_env({"UMOCKDEV_DIR": testbed.get_root_dir()})


class Lines:
    """Lines of a pipe, read by a thread so the test can wait with a timeout."""

    def __init__(self, stream):
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.q.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no matching line within {timeout}s; saw: {seen[-20:]}")


def test_devices_json(testbed, udev_dir):
    result = subprocess.run(cli_argv("devices", "--json", "--udev-dir", udev_dir), env=_env(testbed),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["discovery"]["mode"] == "udev"
    assert [(i["name"], i["kind"]) for i in data["interfaces"]] == [
        ("eth0", "ethernet"), ("eth1", "modem"), ("usb1", "tether"), ("wlan0", "wifi"), ("wwan0", "modem")]
    assert [d["name"] for d in data["disks"]] == ["mmcblk0", "mmcblk1", "nvme0n1"]
    assert {m["vendor_id"] for m in data["modems"]} == {"2c7c", "12d1"}
    assert {(e["name"], e["kind"]) for e in data["excluded"]} >= {("usb0", "interface"), ("mmcblk0boot0", "disk")}
    assert all(e["reason"] for e in data["excluded"])


def _is(line: str, action: str, kind: str, name: str) -> bool:
    event = json.loads(line)
    return (event["action"], event["kind"], event["name"]) == (action, kind, name)


def _watch(testbed, *args):
    proc = subprocess.Popen(cli_argv("devices", "--watch", *args), env=_env(testbed), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, Lines(proc.stdout), Lines(proc.stderr)


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_json_sees_a_plugged_modem(testbed, udev_dir):
    proc, out, err = _watch(testbed, "--json", "--udev-dir", udev_dir)
    try:
        err.wait_for(lambda line: line.startswith("watching: udev"), 15)
        # What is there already arrives first, as adds.
        out.wait_for(lambda line: json.loads(line)["name"] == "wwan0", 5)
        start = time.monotonic()
        plug(testbed, "wwan1")
        line = out.wait_for(lambda line: json.loads(line)["kind"] == "modem"
                            and json.loads(line)["item"]["interfaces"] == ["wwan1"], 5)
        assert time.monotonic() - start < 1.0
        event = json.loads(line)
        assert event["action"] == "add" and event["item"]["vendor_id"] == "2c7c"
        unplug(testbed, "wwan1")
        out.wait_for(lambda line: _is(line, "remove", "interface", "wwan1"), 5)
    finally:
        rc = _stop(proc)
    assert rc == 0


def test_watch_text_without_udev(testbed, udev_dir):
    proc, out, err = _watch(testbed, "--udev-dir", os.path.join(udev_dir, "absent"))
    try:
        err.wait_for(lambda line: "udev not running: sysfs rescans every 5s" in line, 15)
        plug(testbed, "wwan1")
        line = out.wait_for(lambda line: line.split()[:3] == ["add", "interface", "wwan1"], 5)
        assert "modem" in line
        unplug(testbed, "wwan1")
        out.wait_for(lambda line: line.split()[:3] == ["remove", "interface", "wwan1"], 5)
    finally:
        rc = _stop(proc)
    assert rc == 0
