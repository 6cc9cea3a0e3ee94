"""Interface addresses from rtnetlink, if_inet6 and recorded `ip -j addr` output."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from belabox_metrics.collectors.belabox import ifaddrs
from belabox_metrics.platform import recorded


def _rtattr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * ((4 - len(raw) % 4) % 4)


def _newaddr(index: int, address: str, label: str | None, peer: str | None = None) -> bytes:
    body = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, index)
    body += _rtattr(ifaddrs.IFA_ADDRESS, socket.inet_aton(peer or address))
    body += _rtattr(ifaddrs.IFA_LOCAL, socket.inet_aton(address))
    if label:
        body += _rtattr(ifaddrs.IFA_LABEL, label.encode() + b"\0")
    return struct.pack("=IHHII", 16 + len(body), ifaddrs.RTM_NEWADDR, 2, 1, 0) + body


def test_parse_netlink_dump_with_local_and_peer_addresses():
    data = _newaddr(3, "192.168.8.100", "eth1") + _newaddr(7, "10.64.0.2", "ppp0", peer="10.64.0.1")
    data += struct.pack("=IHHII", 20, ifaddrs.NLMSG_DONE, 2, 1, 0) + b"\0" * 4
    msgs = ifaddrs.parse_netlink(data)
    assert [t for t, _ in msgs] == [ifaddrs.RTM_NEWADDR, ifaddrs.RTM_NEWADDR, ifaddrs.NLMSG_DONE]
    assert ifaddrs.parse_ifaddrmsg(msgs[0][1]) == (socket.AF_INET, 3, "192.168.8.100", "eth1")
    # On point-to-point links IFA_ADDRESS is the peer; the local address is IFA_LOCAL.
    assert ifaddrs.parse_ifaddrmsg(msgs[1][1])[2] == "10.64.0.2"


def test_parse_netlink_drops_a_truncated_tail():
    data = _newaddr(3, "192.168.8.100", "eth1")
    assert len(ifaddrs.parse_netlink(data + data[:10])) == 1
    assert ifaddrs.parse_netlink(b"\xff" * 3) == []


def test_live_netlink_lists_loopback():
    # The real kernel: every network namespace has lo with 127.0.0.1.
    assert "127.0.0.1" in ifaddrs.netlink_ipv4().get("lo", [])


def test_parse_if_inet6():
    text = ("00000000000000000000000000000001 01 80 10 80       lo\n"
            "fe80000000000000021e06fffe3a1b2c 02 40 20 80     eth0\n"
            "short line\n")
    assert ifaddrs.parse_if_inet6(text) == {"lo": ["::1"], "eth0": ["fe80::21e:6ff:fe3a:1b2c"]}


def test_parse_ip_json():
    doc = [{"ifname": "eth1", "addr_info": [{"family": "inet", "local": "192.168.8.100"},
                                            {"family": "inet6", "local": "fe80::1"}]},
           {"ifname": "wwan0", "addr_info": []}, {"nonsense": 1}]
    assert ifaddrs.parse_ip_json(json.dumps(doc)) == {"eth1": ["192.168.8.100"]}
    with pytest.raises(ValueError):
        ifaddrs.parse_ip_json('{"not": "a list"}')


def test_read_addresses_from_a_recorded_tree(tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "if_inet6").write_text("fe800000000000000000000000000001 03 40 20 80     eth1\n")
    (tmp_path / "ip-addr.json").write_text(json.dumps(
        [{"ifname": "eth1", "addr_info": [{"family": "inet", "local": "192.168.8.100"}]}]))
    assert ifaddrs.read_addresses(str(proc)) == ({"eth1": ["192.168.8.100", "fe80::1"]}, None)
    (tmp_path / "ip-addr.json").write_text("garbage")
    addrs, problem = ifaddrs.read_addresses(str(proc))
    assert addrs == {"eth1": ["fe80::1"]} and "ip-addr.json" in problem


def test_live_procfs_detection(tmp_path):
    assert recorded.is_live_procfs("/proc")
    assert not recorded.is_live_procfs(str(tmp_path))
