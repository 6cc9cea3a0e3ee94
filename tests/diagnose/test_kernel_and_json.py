"""diagnose's kernel events (from a recorded kernel journal) and a bundle whose JSON is JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from belabox_metrics.diagnose import bundle as diagnose_bundle
from belabox_metrics.diagnose import kernel as diagnose_kernel
from belabox_metrics.redact import Redactor
from belabox_metrics.samples import sample
from tests.support.cli import REPO, cli_env


def _config(tmp_path, board: str, extra: str = "") -> str:
    tree = REPO / "hardware" / board
    path = tmp_path / "config.yaml"
    path.write_text(f"""device_id: box-k
storage:
  path: {tmp_path}/data/metrics.db
health:
  listen_addr: 127.0.0.1:9
host:
  procfs: {tree / "proc"}
  sysfs: {tree / "sys"}
  rootfs: {tree / "root"}
modem:
  mmcli_path: {tmp_path}/no-mmcli
{extra}""")
    return str(path)


def _diagnose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "belabox_metrics", "diagnose", "--rate-seconds", "0", *args],
                          env=cli_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("board", "expected"), [
    ("jetson-nano", [("2023-11-15T09:36:40Z", "under_voltage", "soctherm"),
                     ("2023-11-15T09:36:40Z", "under_voltage", "soctherm"),
                     ("2023-11-15T11:37:01Z", "under_voltage", "soctherm"),
                     ("2023-11-15T11:37:02Z", "usb_disconnect", "1-2")]),
    ("rk3588-orangepi5plus", [("2023-11-17T19:41:40Z", "hdmirx_signal_lost", "hdmirx"),
                              ("2023-11-17T19:41:40Z", "hdmirx_signal_lost", "hdmirx"),
                              ("2023-11-17T20:11:10Z", "hdmirx_audio_underflow", "hdmirx"),
                              ("2023-11-17T20:11:42Z", "hdmirx_invalid_timing", "hdmirx"),
                              ("2023-11-17T21:03:20Z", "usb_disconnect", "5-1"),
                              ("2023-11-17T21:05:01Z", "usb_reset", "3-1")]),
])
def test_diagnose_shows_the_recorded_kernel_events_with_times(tmp_path, board, expected):
    cfg = _config(tmp_path, board)
    res = _diagnose("--json", "--config", cfg)
    assert res.returncode in (0, 1, 2) and res.stderr == "", res.stderr
    ke = json.loads(res.stdout)["kernel_events"]
    assert [(e["time"], e["kind"], e["device"]) for e in ke["recent"]] == expected
    assert ke["source"].endswith(f"hardware/{board}/kernel-journal.jsonl") and ke["problems"] == []
    kinds = {}
    for _, kind, _ in expected:
        kinds[kind] = kinds.get(kind, 0) + 1
    assert ke["counts"] == dict(sorted(kinds.items()))
    text = _diagnose("--config", cfg).stdout
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Kernel"))
    for when, kind, device in expected:
        assert any(line.strip() == f"{when} {kind} {device}" for line in lines[start:]), (when, kind, text)


def test_kernel_events_off_by_config_say_so(tmp_path):
    cfg = _config(tmp_path, "jetson-nano", "belabox:\n  kernel_events: false\n")
    res = _diagnose("--config", cfg)
    assert "Kernel     not watched: belabox.kernel_events is false" in res.stdout


def test_running_agent_counts_win_over_the_lines():
    samples = [sample("belabox_kernel_events_total", 5, {"kind": "usb_disconnect", "device": "1-1"}),
               sample("belabox_kernel_events_total", 2, {"kind": "usb_disconnect", "device": "1-2", "modem": "ab"}),
               sample("belabox_kernel_events_total", 1, {"kind": "under_voltage", "device": "soctherm"})]
    counts = diagnose_kernel.counts_from_metrics(samples)
    assert counts == {"usb_disconnect": 7, "under_voltage": 1}
    out = diagnose_kernel.summarise([{"time_us": 1700048222400000, "kind": "usb_disconnect", "device": "1-2",
                                      "modem": "ab", "message": "usb 1-2: USB disconnect, device number 4"}],
                                    counts, source="journalctl -k (this boot)")
    assert out["counts"] == {"under_voltage": 1, "usb_disconnect": 7}
    assert out["counted_from"] == "the running agent (this boot)"
    assert out["recent"][0]["time"] == "2023-11-15T11:37:02Z" and out["recent"][0]["modem"] == "ab"
    assert diagnose_kernel.counts_from_metrics([sample("node_load1", 1.0)]) is None


def test_kernel_log_reason_file_when_neither_journal_nor_kmsg_can_be_read(tmp_path):
    b = diagnose_bundle._Bundle(Redactor.of())
    diagnose_bundle.kernel_log(b, "/proc", journalctl=str(tmp_path / "no-journalctl"),
                               kmsg=str(tmp_path / "no-kmsg"))
    assert "kernel.txt" not in b.files
    reason = b.files["kernel.unavailable.txt"]
    assert reason.count("\n") == 1 and "journalctl not installed" in reason and "no-kmsg" in reason


def test_kernel_log_of_a_recorded_tree_is_its_journal(tmp_path):
    b = diagnose_bundle._Bundle(Redactor.of())
    diagnose_bundle.kernel_log(b, str(REPO / "hardware" / "jetson-nano" / "proc"))
    text = b.files["kernel.txt"]
    assert "2023-11-15T11:37:01Z kernel: soctherm: OC ALARM 0x00000001" in text
    assert len(text.splitlines()) == 7


def test_every_json_file_of_a_bundle_parses_and_keeps_its_numbers(tmp_path):
    """A text pass over serialised JSON once turned 9.0123456789012345 into 9.<redacted>."""
    cfg = _config(tmp_path, "rk3588-rock5b")
    report = {"generated": "2026-01-01T00:00:00Z", "status": "ok", "service": {"state": "not running"},
              "spool": {"oldest_age_seconds": 9.0123456789012345, "pending_bytes": 123456789012345,
                        "path": f"{tmp_path}/data/metrics.db"},
              "board": {"id": "x", "ratio": 40.123456789012345},
              "devices": {"temperatures": [{"sensor": "soc", "celsius": 51.12345678901234}]}}
    files = diagnose_bundle.collect(report, SimpleNamespace(config=cfg), environ={})
    jsons = [n for n in files if n.endswith((".json", ".jsonl"))]
    assert {"report.json", "spool.json", "hardware/profile.json"} <= set(jsons)
    for name in jsons:
        text = files[name]
        docs = [json.loads(line) for line in text.splitlines() if line.strip()] if name.endswith(".jsonl") \
            else [json.loads(text)]
        assert docs, name
    assert json.loads(files["spool.json"])["oldest_age_seconds"] == 9.0123456789012345
    assert json.loads(files["report.json"])["board"]["ratio"] == 40.123456789012345
    assert "kernel.txt" in files and "usb 6-1: reset high-speed USB device" in files["kernel.txt"]
    assert "metrics.txt: the agent is not running" in files["MANIFEST.txt"]


def test_render_without_events_names_the_source_and_its_problem():
    from belabox_metrics.diagnose.render import render
    text = render({"status": "ok", "kernel_events": {"source": "journalctl -k (this boot)", "counts": {},
                                                     "recent": [], "problems": ["not in group systemd-journal"]}})
    assert "Kernel     no events that matter in journalctl -k (this boot)" in text
    assert "problem: not in group systemd-journal" in text
