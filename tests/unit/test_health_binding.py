"""A busy health port: collection goes on, the holder is named, the server binds once it frees."""

from __future__ import annotations

import os
import socket
import time

import requests

from belabox_metrics.health.binding import COMPONENT, HealthBinding, listening_inodes, port_holder
from belabox_metrics.health.registry import DEGRADED, OK, Registry

TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:238C 00000000:0000 0A 00000000:00000000 00:00000000 00000000   112        0 40721 1 0
   1: 0100007F:238C 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   112        0 40999 1 0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0
"""


def test_listening_inodes_reads_only_listeners_on_the_port():
    assert listening_inodes(TABLE, 9100) == [40721]
    assert listening_inodes(TABLE, 22) == [1234]
    assert listening_inodes(TABLE, 80) == []
    assert listening_inodes("garbage\nnot a table", 9100) == []


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_port_holder_names_this_process():
    s = _listener()
    try:
        with open("/proc/self/comm") as f:
            comm = f.read().strip()
        assert port_holder(s.getsockname()[1], "/proc") == f"{comm} (PID {os.getpid()})"
    finally:
        s.close()


def test_busy_port_is_retried_and_bound_once_free(tmp_path):
    holder = _listener()
    port = holder.getsockname()[1]
    reg = Registry()
    binding = HealthBinding(f"127.0.0.1:{port}", reg, lambda: "x 1\n", retry_initial=0.1, retry_max=0.4)
    try:
        assert binding.start() is False
        comp = reg.get(COMPONENT)
        assert comp.status == DEGRADED and f"(PID {os.getpid()})" in comp.message
        assert "held by" in binding.problem and binding.port is None
        time.sleep(0.5)
        assert binding.port is None  # still busy: still retrying, not given up
        holder.close()
        t0 = time.monotonic()
        while binding.port is None and time.monotonic() - t0 < 3:
            time.sleep(0.05)
        assert binding.port == port, "not bound within 3 s of the port freeing"
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
        comp = reg.get(COMPONENT)
        assert comp.status == OK and "held by" in comp.message and binding.problem is None
    finally:
        holder.close()
        binding.stop()


def test_free_port_binds_at_once_without_a_component():
    reg = Registry()
    binding = HealthBinding("127.0.0.1:0", reg, lambda: "")
    try:
        assert binding.start() is True and binding.port
        assert reg.get(COMPONENT) is None
    finally:
        binding.stop()
