"""Addresses of network interfaces, without psutil.

No procfs file maps an IPv4 address to its interface (``net/fib_trie`` lists local addresses
but not their devices), so IPv4 comes from rtnetlink: an ``RTM_GETADDR`` dump
(rtnetlink(7), linux/if_addr.h). IPv6 comes from ``<procfs>/net/if_inet6``, whose lines name
the device. A recorded board tree cannot carry a netlink socket: there IPv4 comes from
``ip -j addr show`` saved as ``ip-addr.json`` beside the tree's ``proc`` directory
(``scripts/capture-hardware`` style), and the IPv6 file is the tree's own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct

from belabox_metrics.platform import recorded
from belabox_metrics.platform.files import read_optional

# rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")

Addresses = dict[str, list[str]]


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_netlink(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each message in a netlink datagram; a truncated tail is dropped."""
    out, pos = [], 0
    while pos + _NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            break
        out.append((mtype, data[pos + _NLMSGHDR.size:pos + length]))
        pos += _align(length)
    return out


def parse_ifaddrmsg(payload: bytes) -> tuple[int, int, str | None, str | None]:
    """(family, ifindex, address, label) of one RTM_NEWADDR payload. For IPv4 the local
    address is IFA_LOCAL; IFA_ADDRESS is the peer on point-to-point links."""
    family, _plen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload, 0)
    attrs: dict[int, bytes] = {}
    pos = _align(_IFADDRMSG.size)
    while pos + _RTATTR.size <= len(payload):
        alen, atype = _RTATTR.unpack_from(payload, pos)
        if alen < _RTATTR.size or pos + alen > len(payload):
            break
        attrs[atype] = payload[pos + _RTATTR.size:pos + alen]
        pos += _align(alen)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    address = None
    if raw is not None and family == socket.AF_INET and len(raw) == 4:
        address = socket.inet_ntop(socket.AF_INET, raw)
    elif raw is not None and family == socket.AF_INET6 and len(raw) == 16:
        address = socket.inet_ntop(socket.AF_INET6, raw)
    label = attrs.get(IFA_LABEL)
    return family, index, address, label.split(b"\0", 1)[0].decode("ascii", "replace") if label else None


def netlink_ipv4(timeout: float = 1.0) -> Addresses:
    """IPv4 addresses per interface from the kernel, now. Raises OSError when netlink is
    not available (e.g. RestrictAddressFamilies without AF_NETLINK)."""
    out: Addresses = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.settimeout(timeout)
        s.bind((0, 0))
        req = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        s.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(req), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
        while True:
            for mtype, payload in parse_netlink(s.recv(65536)):
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", payload, 0)[0] if len(payload) >= 4 else 0
                    raise OSError(errno, "RTM_GETADDR failed")
                if mtype != RTM_NEWADDR:
                    continue
                family, index, address, label = parse_ifaddrmsg(payload)
                if family != socket.AF_INET or address is None:
                    continue
                name = (label or "").split(":", 1)[0]  # "eth0:1" is an alias of eth0
                if not name:
                    try:
                        name = socket.if_indextoname(index)
                    except OSError:
                        continue
                out.setdefault(name, []).append(address)


def parse_if_inet6(text: str) -> Addresses:
    """<procfs>/net/if_inet6: ``<32 hex address> <ifindex> <prefixlen> <scope> <flags> <name>``
    (net/ipv6/addrconf.c if6_seq_show)."""
    out: Addresses = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        try:
            addr = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
        except ValueError:
            continue
        out.setdefault(parts[5], []).append(addr)
    return out


def parse_ip_json(text: str, family: str = "inet") -> Addresses:
    """``ip -j addr show`` output (iproute2): the ``local`` of each ``addr_info`` entry of
    ``family``. Raises ValueError for text that is not that JSON."""
    doc = json.loads(text)
    if not isinstance(doc, list):
        raise ValueError("ip -j addr output is a JSON list")
    out: Addresses = {}
    for link in doc:
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            continue
        for info in link.get("addr_info") or ():
            if isinstance(info, dict) and info.get("family") == family and isinstance(info.get("local"), str):
                out.setdefault(link["ifname"], []).append(info["local"])
    return out


def read_addresses(procfs: str) -> tuple[Addresses, str | None]:
    """Every interface's addresses (IPv4 first), and a problem or None. Missing sources
    give fewer addresses, not an error: a board without IPv6 has no if_inet6."""
    problem = None
    out: Addresses = {}
    if recorded.is_live_procfs(procfs):
        try:
            out = netlink_ipv4()
        except OSError as e:
            problem = f"cannot list IPv4 addresses over netlink: {e.strerror or e}"
    else:
        saved = read_optional(recorded.beside(procfs, recorded.IP_ADDR))
        if saved is not None:
            try:
                out = parse_ip_json(saved)
            except ValueError:
                problem = f"{recorded.IP_ADDR} beside the procfs tree is not `ip -j addr` output"
    v6 = read_optional(os.path.join(procfs, "net", "if_inet6"))
    if v6:
        for name, addrs in parse_if_inet6(v6).items():
            out.setdefault(name, []).extend(addrs)
    return out, problem
