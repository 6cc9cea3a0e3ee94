"""Finding belaUI, belacoder and srtla_send in procfs, and counting their restarts."""

from __future__ import annotations

import pytest

from belabox_metrics.collectors.belabox import procs
from tests.support.proctree import stat_line, write_process


def test_parse_stat_survives_a_comm_with_spaces_and_parentheses():
    st = procs.parse_stat(stat_line(42, "a) b (c", utime=150, stime=25, starttime=9876))
    assert (st.utime, st.stime, st.starttime) == (150, 25, 9876)


@pytest.mark.parametrize("text", ["", "42 (x", "42 (x) S 1 2 3"])
def test_parse_stat_rejects_short_lines(text):
    with pytest.raises(ValueError):
        procs.parse_stat(text)


def test_parse_vmrss_and_btime():
    assert procs.parse_vmrss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n") == 2048 * 1024
    assert procs.parse_vmrss_bytes("Name:\tkthreadd\nThreads:\t1\n") is None
    assert procs.parse_btime("cpu 1 2 3\nbtime 1700000000\n") == 1700000000
    assert procs.parse_btime("cpu 1 2 3\n") is None


@pytest.mark.parametrize(("comm", "argv", "expected"), [
    ("belacoder", ["/usr/bin/belacoder", "p", "127.0.0.1", "9000"], "belacoder"),
    ("srtla_send", ["/usr/bin/srtla_send", "9000"], "srtla_send"),
    ("node", ["/usr/bin/nodejs", "./belaUI.js"], "belaUI"),
    ("nodejs", ["nodejs", "/opt/belaUI/belaUI.js"], "belaUI"),
    ("belaUI", ["/opt/belaUI/belaUI"], "belaUI"),  # CeraLive's compiled binary
    ("node", ["/usr/bin/node", "server.js"], None),
    ("gst-launch-1.0", ["/usr/bin/belacoder", "x"], "belacoder"),  # renamed main thread
    ("bash", ["bash", "-c", "belacoder"], None),
])
def test_identify(comm, argv, expected):
    assert procs.identify(comm, argv) == expected


def test_scan_finds_each_process_once_preferring_the_oldest(tmp_path):
    write_process(tmp_path, 100, "node", ["/usr/bin/nodejs", "./belaUI.js"], starttime=500)
    write_process(tmp_path, 200, "belacoder", ["/usr/bin/belacoder"], utime=300, stime=100, starttime=900,
                  rss_kb=1000)
    # A restart caught half-way: the new belacoder is already there, the old not yet reaped.
    write_process(tmp_path, 150, "belacoder", ["/usr/bin/belacoder"], starttime=800)
    write_process(tmp_path, 300, "sshd", ["/usr/sbin/sshd"])
    (tmp_path / "self").mkdir()  # non-numeric entries are not processes
    found = procs.scan(str(tmp_path))
    assert set(found) == {"belaUI", "belacoder"}
    assert found["belaUI"].pid == 100
    assert found["belacoder"].pid == 150


def test_a_zombie_is_not_running(tmp_path):
    d = write_process(tmp_path, 100, "belacoder", ["/usr/bin/belacoder"])
    (d / "stat").write_text(stat_line(100, "belacoder", state="Z"))
    (d / "cmdline").write_bytes(b"")
    assert procs.scan(str(tmp_path)) == {}


def test_scan_skips_a_process_that_vanishes_mid_read(tmp_path):
    d = write_process(tmp_path, 100, "belacoder", ["/usr/bin/belacoder"])
    (d / "stat").unlink()
    assert procs.scan(str(tmp_path)) == {}


def _found(pid, starttime):
    return procs.Found("belacoder", pid, procs.ProcStat(0, 0, starttime), None)


def test_restart_tracker_counts_identity_changes_only():
    t = procs.RestartTracker()
    t.observe("belacoder", _found(100, 5000))
    t.observe("belacoder", _found(100, 5000))
    assert t.restarts["belacoder"] == 0
    t.observe("belacoder", _found(101, 5300))
    assert t.restarts["belacoder"] == 1
    t.observe("belacoder", None)  # gone for a cycle
    t.observe("belacoder", _found(140, 5900))  # back with a new PID: one more restart
    assert t.restarts["belacoder"] == 2
    t.observe("belacoder", _found(140, 7000))  # PID reused by a new process
    assert t.restarts["belacoder"] == 3
    assert t.restarts["srtla_send"] == 0
