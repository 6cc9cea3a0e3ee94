"""The belabox collector on hardware/edge/duplicate-ipv4, the board trees, and trees
derived from them."""

from __future__ import annotations

import json
import os

import pytest

from belabox_metrics import config as configmod
from belabox_metrics.collectors import CollectorContext
from belabox_metrics.collectors.belabox.collector import BelaboxCollector, bond_links, duplicate_ipv4
from belabox_metrics.devices.model import DeviceInfo, Node
from belabox_metrics.devices.registry import DeviceRegistry
from tests.support.proctree import STREAM_TREE, copy_stream_tree


def _ctx(root, registry=None, cfg=None) -> CollectorContext:
    return CollectorContext(config=cfg or configmod.Config(), procfs=str(root / "proc"), sysfs=str(root / "sys"),
                            rootfs=str(root / "root"), registry=registry)


def _values(samples, name):
    return {s.labels: s.value for s in samples if s.name == name}


def _one(samples, name, **labels):
    want = tuple(sorted(labels.items()))
    vals = [s.value for s in samples if s.name == name and s.labels == want]
    assert len(vals) == 1, f"{name}{labels}: {vals}"
    return vals[0]


def test_running_stream_tree():
    c = BelaboxCollector(_ctx(STREAM_TREE))
    out = c.collect()
    assert c.problems == []
    for p in ("belaUI", "belacoder", "srtla_send"):
        assert _one(out, "belabox_process_up", process=p) == 1
        assert _one(out, "belabox_process_restarts_total", process=p) == 0
    tck = os.sysconf("SC_CLK_TCK")
    assert _one(out, "belabox_process_cpu_seconds_total", process="belacoder") == (98000 + 12000) / tck
    assert _one(out, "belabox_process_resident_memory_bytes", process="belaUI") == 68432 * 1024
    assert _one(out, "belabox_process_start_time_seconds", process="srtla_send") == 1_700_000_000 + 45000 / tck
    assert _one(out, "belabox_encoder_bitrate_bps") == 6_000_000
    assert _one(out, "belabox_encoder_min_bitrate_bps") == 300_000
    assert _values(out, "belabox_bond_link_info") == {
        (("address", "10.64.12.7"), ("device", "wwan0")): 1.0,
        (("address", "192.168.1.50"), ("device", "eth0")): 1.0,
    }
    assert _one(out, "belabox_bond_links") == 2
    assert _one(out, "belabox_stream_max_bitrate_bps") == 6_000_000
    assert _one(out, "belabox_stream_latency_seconds") == 2.0
    info = _values(out, "belabox_stream_config_info")
    assert len(info) == 1
    labels = dict(next(iter(info)))
    assert labels["pipeline"] == "rk3588/h265_hdmi_1080p30"
    assert labels["audio_source"] == "HDMI" and labels["audio_codec"] == "opus"
    # Two HiLink sticks share 192.168.8.100; docker0 and lo are not physical.
    assert _values(out, "belabox_network_duplicate_address") == {
        (("device", "eth0"),): 0.0, (("device", "eth1"),): 1.0, (("device", "eth2"),): 1.0,
        (("device", "wwan0"),): 0.0}


def test_a_pid_change_between_cycles_counts_one_restart(tmp_path):
    root = copy_stream_tree(tmp_path / "tree")
    c = BelaboxCollector(_ctx(root))
    c.collect()
    os.rename(root / "proc" / "1502", root / "proc" / "1777")
    stat = root / "proc" / "1777" / "stat"
    stat.write_text(stat.read_text().replace("1502 (", "1777 (", 1).replace(" 45210 ", " 47000 "))
    out = c.collect()
    assert _one(out, "belabox_process_restarts_total", process="belacoder") == 1
    assert _one(out, "belabox_process_restarts_total", process="srtla_send") == 0
    out = c.collect()  # same PID again: no further restart
    assert _one(out, "belabox_process_restarts_total", process="belacoder") == 1


def test_a_missing_belacoder_is_up_0_not_an_error(tmp_path):
    root = copy_stream_tree(tmp_path / "tree")
    for f in (root / "proc" / "1502").iterdir():
        f.unlink()
    (root / "proc" / "1502").rmdir()
    c = BelaboxCollector(_ctx(root))
    out = c.collect()
    assert c.problems == []
    assert _one(out, "belabox_process_up", process="belacoder") == 0
    assert _one(out, "belabox_process_restarts_total", process="belacoder") == 0
    assert not [s for s in out if s.name == "belabox_process_cpu_seconds_total" and s.label("process") == "belacoder"]


def test_files_under_the_host_tmp_bind_win(tmp_path):
    root = copy_stream_tree(tmp_path / "tree")
    bind = root / "root" / "run" / "belabox-metrics" / "host-tmp"
    bind.mkdir(parents=True)
    (bind / "belacoder_br").write_text("300000\n4500000\n")
    out = BelaboxCollector(_ctx(root)).collect()
    assert _one(out, "belabox_encoder_bitrate_bps") == 4_500_000


def test_not_a_belabox(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "sys").mkdir()
    c = BelaboxCollector(_ctx(tmp_path))
    out = c.collect()
    assert c.problems == []
    assert {s.name for s in out} == {"belabox_process_up", "belabox_process_restarts_total"}


def test_malformed_belaui_files_degrade_without_stopping_the_rest(tmp_path):
    root = copy_stream_tree(tmp_path / "tree")
    (root / "root" / "opt" / "belaUI" / "setup.json").write_text("{ not json")
    (root / "root" / "opt" / "belaUI" / "config.json").write_text(json.dumps(["x"]))
    c = BelaboxCollector(_ctx(root))
    out = c.collect()
    assert any("setup.json" in p for p in c.problems)
    assert any("config.json" in p for p in c.problems)
    assert _one(out, "belabox_process_up", process="belacoder") == 1
    assert _one(out, "belabox_encoder_bitrate_bps") == 6_000_000  # belaUI's default path still works


def test_discovery_decides_the_candidate_interfaces():
    usb = "/devices/platform/fc800000.usb/usb1/1-1"
    usb_node = Node(usb, "usb", "usb_device", "usb", {"idVendor": "12d1", "idProduct": "14dc"})
    reg = DeviceRegistry()
    reg.replace_all([
        DeviceInfo("usb", usb, "1-1", "usb_device", "usb", attrs=usb_node.attrs),
        DeviceInfo("net", f"{usb}/1-1:1.0/net/eth1", "eth1", None, "cdc_ether", flags=frozenset({"device"}),
                   parents=(Node(f"{usb}/1-1:1.0", "usb", "usb_interface", "cdc_ether"), usb_node)),
    ])
    assert [i.name for i in reg.interfaces()] == ["eth1"]
    out = BelaboxCollector(_ctx(STREAM_TREE, registry=reg)).collect()
    # eth2 is not among discovery's interfaces, so eth1 has nobody to share with.
    assert _values(out, "belabox_network_duplicate_address") == {(("device", "eth1"),): 0.0}


def test_duplicate_ipv4_pure():
    addrs = {"eth1": ["192.168.8.100", "fe80::1"], "eth2": ["192.168.8.100", "fe80::1"], "lo": ["127.0.0.1"],
             "wlan0": ["10.1.1.2"], "usb0": ["127.0.0.1"]}
    assert duplicate_ipv4(addrs, ["eth1", "eth2", "wlan0", "usb0"]) == {"eth1": True, "eth2": True, "wlan0": False}


@pytest.mark.parametrize(("ips", "expected"), [
    (["10.0.0.2"], [("wwan0", "10.0.0.2")]),
    (["10.9.9.9"], [("unknown", "10.9.9.9")]),
    (["192.168.8.100"], [("eth1", "192.168.8.100"), ("eth2", "192.168.8.100")]),
])
def test_bond_links_pure(ips, expected):
    addrs = {"wwan0": ["10.0.0.2"], "eth1": ["192.168.8.100"], "eth2": ["192.168.8.100"]}
    assert bond_links(ips, addrs) == expected
