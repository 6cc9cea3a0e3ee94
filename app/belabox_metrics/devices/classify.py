"""Which devices are disks, uplinks and modems: a pure function of the device records.

Decisions come from udev properties first (our 70-belabox-metrics.rules sets
``BELABOX_METRICS_KIND``; udev's own ``ID_BUS``, ``ID_MODEL``, ``ID_NET_DRIVER``) and from
sysfs topology and attributes second, never from kernel names: names change between
kernels and with systemd's renaming (belabox-image.md §1.7).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

from belabox_metrics.devices.disks import disk as _disk
from belabox_metrics.devices.model import (
    DeviceInfo,
    Disk,
    Excluded,
    Inventory,
    Modem,
    NetIf,
    Node,
    modem_key,
)

KIND_PROPERTY = "BELABOX_METRICS_KIND"

# USB drivers that only ever drive cellular modems (network, control or serial side).
MODEM_DRIVERS = frozenset({
    "qmi_wwan", "qmi_wwan_q", "cdc_mbim", "huawei_cdc_ncm", "cdc_wdm", "option", "qcserial",
    "sierra", "sierra_net",
})
# Ethernet-over-USB drivers: a "router-class" modem (HiLink) when the vendor makes modems,
# a phone tether (rndis/ncm/ipheth) or a USB Ethernet adapter (cdc_ether) otherwise.
ROUTER_DRIVERS = frozenset({"cdc_ether", "rndis_host", "cdc_ncm"})
TETHER_DRIVERS = frozenset({"rndis_host", "cdc_ncm", "ipheth", "cdc_eem"})
# USB vendor ids of cellular modem makers. Only these tell a cdc_ether HiLink stick from a
# USB Ethernet adapter (belabox-image.md §6.2). Keep in sync with 70-belabox-metrics.rules.
CELLULAR_VENDORS = {
    "12d1": "Huawei", "2c7c": "Quectel", "1199": "Sierra Wireless", "19d2": "ZTE",
    "1bc7": "Telit", "2cb7": "Fibocom", "1e0e": "SIMCom", "1546": "u-blox", "3566": "Brovi",
    "1410": "Novatel", "1e2d": "Cinterion", "2dee": "MeiG", "1bbb": "Alcatel/TCL",
    "1435": "Wistron NeWeb", "0bdb": "Ericsson",
}

# PCIe (M.2) modem drivers: the MHI controller and its clients (Qualcomm SDX modems from
# Quectel, Sierra, Foxconn, Telit...), Intel's iosm and MediaTek's t7xx. Their control ports
# are `wwan` class devices (wwan0mbim0, wwan0at0), their network side a DEVTYPE=wwan netdev.
# Keep in sync with 70-belabox-metrics.rules.
PCI_MODEM_DRIVERS = frozenset({"mhi-pci-generic", "mhi_net", "mhi_wwan_mbim", "mhi_wwan_ctrl", "iosm",
                               "mtk_t7xx"})
# PCI vendor ids (vendor or subsystem vendor) of M.2 modems, for a name where PCI has no strings.
PCI_VENDORS = {
    "1eac": "Quectel", "18d7": "Sierra Wireless", "17cb": "Qualcomm", "1269": "Thales", "105b": "Foxconn",
    "1bc7": "Telit", "8086": "Intel", "14c3": "MediaTek", "2cb7": "Fibocom",
}

# Legacy gadget drivers; configfs gadgets bind as "configfs-gadget.<name>".
GADGET_DRIVERS = frozenset({"g_ether", "g_multi", "g_cdc", "g_ncm"})

ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_CAN = "1", "772", "280"
# Topology read from the device path, for trees whose parents carry no records (copied or
# reconstructed sysfs): the kernel's own directory names, not device names.
_USB_DEVICE = re.compile(r"^(.*/usb\d+(?:/\d+-[\d.]+)+)/\d+-[\d.]+:\d+\.\d+/")
# The PCI function of a PCIe modem: the one holding its MHI controller or WWAN device.
_PCI_MODEM = re.compile(r"^(.*/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/(?:mhi\d+|wwan)/")


def classify(devices: Iterable[DeviceInfo], equipment: Mapping[str, str] | None = None) -> Inventory:
    """Sort device records into disks, interfaces, modems and excluded items, each with a reason.

    ``equipment`` maps a modem's USB identity (``base_identity``) to the equipment id
    ModemManager reported, so the modem key follows the IMEI once it is known.
    """
    devs = sorted(devices, key=lambda d: d.devpath)
    usb_devices = {d.devpath: d for d in devs if d.subsystem == "usb" and d.devtype == "usb_device"}
    groups: dict[str, list[DeviceInfo]] = defaultdict(list)
    pci_nodes: dict[str, Node] = {}
    for d in devs:
        if d.subsystem in ("net", "tty", "usbmisc", "wwan"):
            usb = _usb_parent(d)
            if usb is not None:
                groups[usb.devpath].append(d)
                continue
            pci = _pci_parent(d)
            if pci is not None:
                groups[pci.devpath].append(d)
                # The richest copy of the PCI function (a reconstructed tree may lack its record).
                if len(pci.attrs) >= len(pci_nodes.get(pci.devpath, pci).attrs):
                    pci_nodes[pci.devpath] = pci

    modem_reasons = {}
    parents: dict[str, Node] = dict(pci_nodes)
    for path, members in groups.items():
        if path in pci_nodes:
            reason = _pci_modem_reason(members)
        elif path in usb_devices:
            parents[path] = _usb_node(path, usb_devices)
            reason = _modem_reason(parents[path], usb_devices.get(path), members)
        else:
            continue  # the USB device's own record is still on its way: no identity, no key yet
        if reason:
            modem_reasons[path] = reason
    keys = _modem_keys(modem_reasons, parents, equipment or {})

    disks: list[Disk] = []
    netifs: list[NetIf] = []
    excluded: list[Excluded] = []
    for d in devs:
        if d.subsystem == "block":
            item = _disk(d)
            (disks if isinstance(item, Disk) else excluded).append(item)
        elif d.subsystem == "net":
            usb = _usb_parent(d)
            group = usb or _pci_parent(d)
            in_modem = group is not None and group.devpath in modem_reasons
            item = _netif(d, usb, keys.get(group.devpath) if in_modem and group else None,
                          group.devpath if in_modem and group else None)
            (netifs if isinstance(item, NetIf) else excluded).append(item)
        elif d.subsystem in ("tty", "usbmisc"):
            usb = _usb_parent(d)
            if usb is not None and usb.devpath not in modem_reasons:
                excluded.append(Excluded(d.name, "port", f"USB serial port of {_vidpid(usb)}, not a modem"))

    modems: dict[str, Modem] = {}
    for path, reason in modem_reasons.items():
        members = groups[path]
        node = parents[path]
        nets = tuple(sorted(n.name for n in netifs if n.usb_path == path and n.kind == "modem"))
        ports = tuple(sorted(m.name for m in members if _is_port(m)))
        if path in pci_nodes:
            modems[path] = _pci_modem(keys[path], node, members, nets, ports, reason)
            continue
        drivers = [_driver(m) for m in members if m.subsystem == "net"] or [_driver(m) for m in members]
        modems[path] = Modem(
            key=keys[path], usb_path=path,
            vendor_id=node.attrs.get("idVendor"), product_id=node.attrs.get("idProduct"),
            manufacturer=_usb_text(node, usb_devices.get(path), "manufacturer", "ID_VENDOR"),
            model=_usb_text(node, usb_devices.get(path), "product", "ID_MODEL"),
            driver=next((x for x in drivers if x), None),
            interfaces=nets, ports=ports, reason=reason,
        )
    return Inventory(
        disks=tuple(sorted(disks, key=lambda x: x.name)),
        interfaces=tuple(sorted(netifs, key=lambda x: x.name)),
        modems=tuple(sorted(modems.values(), key=lambda m: m.usb_path)),
        excluded=tuple(sorted(excluded, key=lambda e: (e.kind, e.name))),
    )


# --- modems -------------------------------------------------------------------------------

def _usb_parent(d: DeviceInfo) -> Node | None:
    """The USB device a netdev or port belongs to: the one right above its USB interface.

    Checking the interface-device adjacency keeps a half-read record (parents not yet
    complete while a hot-plug is in progress) from being pinned on the root hub.
    """
    iface = d.parent("usb", "usb_interface")
    usb = d.parent("usb", "usb_device")
    if iface is None or usb is None or iface.devpath.rsplit("/", 1)[0] != usb.devpath:
        return None
    return usb


def _pci_parent(d: DeviceInfo) -> Node | None:
    """The PCI function of an M.2/PCIe modem a netdev or WWAN port belongs to.

    Only devices of the kernel's modem plumbing qualify (an MHI channel or controller, a
    WWAN device, or DEVTYPE=wwan), so a PCIe WiFi card or NVMe disk is never grouped.
    """
    chain = [p.subsystem for p in d.parents]
    wwanish = d.subsystem == "wwan" or d.devtype == "wwan" or "mhi" in chain or "wwan" in chain
    pci = d.parent("pci")
    if wwanish and pci is not None:
        return pci
    m = _PCI_MODEM.match(d.devpath)
    if m is None:
        return None
    # A tree without parent records: the path alone says where the modem's PCI function is.
    return next((p for p in d.parents if p.devpath == m.group(1)), Node(m.group(1), "pci"))


def _is_port(d: DeviceInfo) -> bool:
    # A WWAN device (wwan0) only holds its ports (wwan0mbim0, wwan0at0) and links.
    return d.subsystem in ("tty", "usbmisc") or (d.subsystem == "wwan" and d.devtype != "wwan_dev")


def _pci_modem_reason(members: list[DeviceInfo]) -> str | None:
    for m in members:
        if m.prop(KIND_PROPERTY) in ("modem", "modem-port"):
            return f"udev rule: {KIND_PROPERTY}={m.prop(KIND_PROPERTY)} on {m.name}"
    for m in members:
        if m.subsystem == "wwan" and _is_port(m):
            return f"WWAN port {m.name} of a PCIe modem ({_pci_driver(m) or 'driver unknown'})"
    for m in members:
        if m.subsystem == "net" and m.devtype == "wwan":
            return f"wwan network device {m.name} of a PCIe modem ({_pci_driver(m) or 'driver unknown'})"
    for m in members:
        drv = _pci_driver(m)
        if drv in PCI_MODEM_DRIVERS:
            return f"modem driver {drv} on {m.name}"
    return None


def _pci_driver(d: DeviceInfo) -> str | None:
    """The nearest driver below the PCI function (mhi_net), else the PCI function's own."""
    return d.driver or next((p.driver for p in d.parents if p.driver), None)


def _hex(value: str | None) -> str | None:
    return value[2:] if value and value.startswith("0x") else value


def _pci_modem(key: str, pci: Node, members: list[DeviceInfo], nets: tuple[str, ...],
               ports: tuple[str, ...], reason: str) -> Modem:
    vendor, sub_vendor = _hex(pci.attrs.get("vendor")), _hex(pci.attrs.get("subsystem_vendor"))
    name = PCI_VENDORS.get(sub_vendor or "") or PCI_VENDORS.get(vendor or "")
    net_drivers = [_pci_driver(m) for m in members if m.subsystem == "net"]
    return Modem(
        key=key, usb_path=pci.devpath, vendor_id=vendor, product_id=_hex(pci.attrs.get("device")),
        manufacturer=name, model=None,
        driver=next((x for x in [*net_drivers, pci.driver] if x), None),
        interfaces=nets, ports=ports, reason=reason, bus="pci",
    )


def _usb_node(usb_path: str, usb_devices: Mapping[str, DeviceInfo]) -> Node:
    # The USB device's own record, not a member's copy of its parents: that copy was taken
    # when the member appeared, possibly before the parent's attributes were complete.
    d = usb_devices[usb_path]
    return Node(d.devpath, d.subsystem, d.devtype, d.driver, d.attrs)


def _driver(d: DeviceInfo) -> str | None:
    """The USB interface driver behind a netdev or port (udev's ID_*_DRIVER first)."""
    prop = d.prop("ID_USB_DRIVER") or d.prop("ID_NET_DRIVER")
    if prop:
        return prop
    iface = d.parent("usb", "usb_interface")
    if iface is not None and iface.driver:
        return iface.driver
    return next((p.driver for p in d.parents if p.driver), None)


def _modem_reason(usb: Node, usb_dev: DeviceInfo | None, members: list[DeviceInfo]) -> str | None:
    if usb_dev is not None and usb_dev.prop(KIND_PROPERTY) == "modem":
        return f"udev rule: {KIND_PROPERTY}=modem on the USB device"
    for m in members:
        if m.prop(KIND_PROPERTY) in ("modem", "modem-port"):
            return f"udev rule: {KIND_PROPERTY}={m.prop(KIND_PROPERTY)} on {m.name}"
    for m in members:
        if m.subsystem == "net" and m.devtype == "wwan":
            return f"wwan network device {m.name} ({_driver(m) or 'driver unknown'})"
    for m in members:
        drv = _driver(m)
        if drv in MODEM_DRIVERS:
            return f"modem driver {drv} on {m.name}"
    vendor = usb.attrs.get("idVendor") or (usb_dev.prop("ID_VENDOR_ID") if usb_dev else None)
    if vendor in CELLULAR_VENDORS:
        for m in members:
            drv = _driver(m)
            if m.subsystem == "net" and drv in ROUTER_DRIVERS:
                return (f"{drv} network device of cellular vendor {vendor} ({CELLULAR_VENDORS[vendor]}): "
                        "router-class modem without a control port")
    return None


def base_identity(devices: Iterable[DeviceInfo], usb_path: str) -> str | None:
    """The device-side identity of a modem: a USB modem's serial when it has one, else
    vendor:product plus the port path (stable as long as it stays in the same socket); a
    PCIe modem's PCI ids plus its slot."""
    devices = list(devices)
    for d in devices:
        if d.devpath == usb_path and d.subsystem == "usb":
            return _base_identity(Node(d.devpath, d.subsystem, d.devtype, d.driver, d.attrs))
    for d in devices:
        pci = _pci_parent(d) if d.subsystem in ("net", "wwan") else None
        if pci is not None and pci.devpath == usb_path:
            return _base_identity(pci)
    return None


def _base_identity(usb: Node) -> str:
    if usb.subsystem == "pci":
        # PCI has no serial: the ids and the slot (fixed on a board) identify the modem.
        ids = ":".join(_hex(usb.attrs.get(a)) or "" for a in ("vendor", "device", "subsystem_vendor",
                                                              "subsystem_device"))
        return f"pci:{ids}:slot:{usb.devpath.rsplit('/', 1)[-1]}"
    vidpid = f"{usb.attrs.get('idVendor', '')}:{usb.attrs.get('idProduct', '')}"
    serial = (usb.attrs.get("serial") or "").strip()
    if serial:
        return f"usb:{vidpid}:serial:{serial}"
    return f"usb:{vidpid}:port:{usb.devpath.rsplit('/', 1)[-1]}"


def _modem_keys(reasons: Mapping[str, str], parents: Mapping[str, Node],
                equipment: Mapping[str, str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for usb_path in sorted(reasons):
        base = _base_identity(parents[usb_path])
        eid = equipment.get(base)
        key = modem_key(f"imei:{eid}" if eid else base)
        if key in taken:
            # Two sticks with one factory serial (cheap modems share them): the port tells apart.
            key = modem_key(f"{base}@{usb_path.rsplit('/', 1)[-1]}")
        taken.add(key)
        keys[usb_path] = key
    return keys


def _usb_text(usb: Node, usb_dev: DeviceInfo | None, attr: str, prop: str) -> str | None:
    value = usb.attrs.get(attr) or (usb_dev.prop(prop) if usb_dev else None)
    return value.strip().replace("_", " ") if value else None


def _vidpid(usb: Node) -> str:
    return f"{usb.attrs.get('idVendor', '?')}:{usb.attrs.get('idProduct', '?')}"


# --- network interfaces -------------------------------------------------------------------

def _netif(d: DeviceInfo, usb: Node | None, modem_key_: str | None,
           modem_path: str | None = None) -> NetIf | Excluded:
    kind_prop = d.prop(KIND_PROPERTY)
    on_usb = _USB_DEVICE.match(d.devpath)
    usb_path = modem_path or (usb.devpath if usb is not None else (on_usb.group(1) if on_usb else None))
    if kind_prop == "ignore":
        return Excluded(d.name, "interface", f"udev rule: {KIND_PROPERTY}=ignore")
    if ("/gadget" in d.devpath or d.parent("gadget") is not None or d.parent("udc") is not None
            or _is_gadget_driver(_driver(d))):
        return Excluded(d.name, "interface", "USB gadget: this board's own side of a USB link to a host")
    if "device" not in d.flags:
        return Excluded(d.name, "interface", _virtual_reason(d))
    if d.attrs.get("type") == ARPHRD_CAN:
        return Excluded(d.name, "interface", "CAN bus interface, not an IP uplink")
    if modem_key_ is not None:
        return NetIf(d.name, d.devpath, "modem", usb_path, modem_key_,
                     f"network interface of modem {modem_key_} ({_driver(d) or 'driver unknown'})")
    if d.devtype == "wwan":
        return NetIf(d.name, d.devpath, "modem", usb_path, None, "wwan network device")
    if kind_prop in ("modem", "tether", "ethernet", "wifi"):
        return NetIf(d.name, d.devpath, kind_prop, usb_path, None, f"udev rule: {KIND_PROPERTY}={kind_prop}")
    drv = _driver(d)
    if d.devtype == "wlan" or "wireless" in d.flags or "phy80211" in d.flags:
        return NetIf(d.name, d.devpath, "wifi", usb_path, None, f"wireless LAN ({drv or 'driver unknown'})")
    if drv in TETHER_DRIVERS:  # USB-only drivers: no need to see the USB device itself
        source = f" from {_vidpid(usb)}" if usb is not None else ""
        return NetIf(d.name, d.devpath, "tether", usb_path, None, f"USB tethering ({drv}){source}")
    if d.attrs.get("type", ARPHRD_ETHER) == ARPHRD_ETHER:
        where = f"USB {_vidpid(usb)}" if usb is not None else ("USB" if usb_path else "on-board")
        return NetIf(d.name, d.devpath, "ethernet", usb_path, None, f"Ethernet, {where} ({drv or 'driver unknown'})")
    return NetIf(d.name, d.devpath, "other", usb_path, None, f"hardware link type {d.attrs.get('type')}")


def _is_gadget_driver(driver: str | None) -> bool:
    return driver is not None and (driver.startswith("configfs-gadget") or driver in GADGET_DRIVERS)


def _virtual_reason(d: DeviceInfo) -> str:
    if d.attrs.get("type") == ARPHRD_LOOPBACK:
        return "loopback"
    if d.devtype == "bridge" or "bridge" in d.flags:
        return "bridge (virtual)"
    if "bonding" in d.flags or d.devtype == "bond":
        return "bond (virtual)"
    if "tun_flags" in d.flags:
        return "tun/tap tunnel (virtual)"
    drv = d.prop("ID_NET_DRIVER")
    if drv == "veth" or (d.attrs.get("iflink") and d.attrs.get("iflink") != d.attrs.get("ifindex")):
        return "veth or other paired virtual link (containers)"
    if d.devtype:
        return f"{d.devtype} (virtual)"
    return "virtual: no hardware device behind it"
