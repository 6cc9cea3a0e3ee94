"""DeviceRegistry and classification edge cases, on hand-built device records."""

from __future__ import annotations

import threading

from belabox_metrics.devices.classify import base_identity, classify
from belabox_metrics.devices.model import DeviceInfo, Node, modem_key
from belabox_metrics.devices.registry import DeviceRegistry

HCD = "/devices/platform/fc800000.usb/usb1"


def usb_device(port: str, vid: str, pid: str, serial: str | None = None, **props) -> DeviceInfo:
    attrs = {"idVendor": vid, "idProduct": pid, "manufacturer": "Maker", "product": "Thing"}
    if serial:
        attrs["serial"] = serial
    return DeviceInfo("usb", f"{HCD}/{port}", port, "usb_device", "usb", dict(props), attrs)


def _parents(port: str, driver: str, vid: str, pid: str, serial: str | None) -> tuple[Node, ...]:
    attrs = {"idVendor": vid, "idProduct": pid}
    if serial:
        attrs["serial"] = serial
    return (Node(f"{HCD}/{port}/{port}:1.0", "usb", "usb_interface", driver),
            Node(f"{HCD}/{port}", "usb", "usb_device", "usb", attrs),
            Node(HCD, "usb", "usb_device", "usb", {"idVendor": "1d6b"}))


def netdev(name: str, port: str, driver: str, vid: str, pid: str = "0001", serial: str | None = None,
           devtype: str | None = None, arphrd: str = "1", **props) -> DeviceInfo:
    return DeviceInfo("net", f"{HCD}/{port}/{port}:1.0/net/{name}", name, devtype, None, dict(props),
                      {"type": arphrd, "ifindex": "9", "iflink": "9"}, frozenset({"device"}),
                      _parents(port, driver, vid, pid, serial))


def tty(name: str, port: str, driver: str, vid: str) -> DeviceInfo:
    return DeviceInfo("tty", f"{HCD}/{port}/{port}:1.0/{name}/tty/{name}", name, None, None, {}, {},
                      frozenset({"device"}),
                      (Node(f"{HCD}/{port}/{port}:1.0/{name}", "usb-serial", None, driver + "1"),)
                      + _parents(port, driver, vid, "0001", None))


def test_usb_ethernet_adapter_is_ethernet_but_hilink_is_a_modem():
    inv = classify([usb_device("1-1", "0b95", "1790"), netdev("eth1", "1-1", "cdc_ether", "0b95"),
                    usb_device("1-2", "12d1", "14dc"), netdev("eth2", "1-2", "cdc_ether", "12d1")])
    assert {n.name: n.kind for n in inv.interfaces} == {"eth1": "ethernet", "eth2": "modem"}
    assert [m.interfaces for m in inv.modems] == [("eth2",)]


def test_usb_serial_adapter_is_not_a_modem():
    inv = classify([usb_device("1-1", "0403", "6001"), tty("ttyUSB0", "1-1", "ftdi_sio", "0403"),
                    usb_device("1-2", "1e0e", "9001"), tty("ttyUSB1", "1-2", "option", "1e0e")])
    assert [(m.vendor_id, m.interfaces, m.ports) for m in inv.modems] == [("1e0e", (), ("ttyUSB1",))]
    assert [(e.name, e.kind) for e in inv.excluded] == [("ttyUSB0", "port")]


def test_udev_rule_properties_override():
    inv = classify([
        usb_device("1-1", "0b95", "1790"),
        netdev("eth1", "1-1", "ax88179_178a", "0b95", BELABOX_METRICS_KIND="ignore"),
        usb_device("1-2", "0bda", "8153", BELABOX_METRICS_KIND="modem"),
        netdev("eth2", "1-2", "r8152", "0bda"),
    ])
    assert [(e.name, e.reason) for e in inv.excluded] == [("eth1", "udev rule: BELABOX_METRICS_KIND=ignore")]
    assert [n.kind for n in inv.interfaces] == ["modem"]
    assert "udev rule" in inv.modems[0].reason


def test_keys_stable_across_renames_and_distinct_for_shared_serials():
    a = classify([usb_device("1-1", "2c7c", "0125"), netdev("wwan0", "1-1", "qmi_wwan", "2c7c", "0125")])
    b = classify([usb_device("1-1", "2c7c", "0125"), netdev("wwan5", "1-1", "qmi_wwan", "2c7c", "0125")])
    assert a.modems[0].key == b.modems[0].key
    # Two sticks with one factory serial still get two keys.
    serial = "0123456789ABCDEF"
    both = classify([
        usb_device("1-1", "12d1", "14dc", serial), netdev("eth1", "1-1", "cdc_ether", "12d1", "14dc", serial),
        usb_device("1-2", "12d1", "14dc", serial), netdev("eth2", "1-2", "cdc_ether", "12d1", "14dc", serial),
    ])
    assert len({m.key for m in both.modems}) == 2
    # A serial follows the stick to another port.
    moved = classify([usb_device("1-3", "12d1", "14dc", serial),
                      netdev("eth9", "1-3", "cdc_ether", "12d1", "14dc", serial)])
    assert moved.modems[0].key == both.modems[0].key


def test_registry_changes_subscribers_and_equipment_ids():
    reg = DeviceRegistry()
    seen = []
    unsubscribe = reg.subscribe(lambda c: seen.append((c.action, c.kind, c.name)))
    reg.subscribe(lambda c: 1 / 0)  # a broken subscriber must not stop the others
    usb, net = usb_device("1-1", "2c7c", "0125"), netdev("wwan0", "1-1", "qmi_wwan", "2c7c", "0125")
    reg.replace_all([usb, net])
    key = reg.modems()[0].key
    assert ("add", "modem", key) in seen and ("add", "interface", "wwan0") in seen

    seen.clear()
    reg.learn_equipment_id(usb.devpath, "861234567890123")
    new_key = modem_key("imei:861234567890123")
    assert reg.modems()[0].key == new_key
    assert ("remove", "modem", key) in seen and ("add", "modem", new_key) in seen
    assert ("change", "interface", "wwan0") in seen
    assert base_identity([usb, net], usb.devpath) == "usb:2c7c:0125:port:1-1"

    seen.clear()
    reg.remove(usb.devpath)  # the USB device takes its netdev along
    assert reg.modems() == [] and reg.interfaces() == []
    assert ("remove", "interface", "wwan0") in seen

    # Back under another name: the learned IMEI still applies, so the key is the same.
    reg.update_many([usb, netdev("wwan3", "1-1", "qmi_wwan", "2c7c", "0125")])
    assert reg.modems()[0].key == new_key
    snap = reg.snapshot()
    assert "861234567890123" not in repr(snap)
    unsubscribe()
    seen.clear()
    reg.remove(usb.devpath)
    assert seen == []


def test_registry_is_safe_across_threads():
    reg = DeviceRegistry()
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                for m in reg.modems():
                    assert m.interfaces
                reg.snapshot()
            except Exception as e:  # pragma: no cover - the assertion below reports it
                errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(200):
        port = f"1-{i % 5 + 1}"
        reg.update_many([usb_device(port, "2c7c", "0125"), netdev(f"wwan{i % 5}", port, "qmi_wwan", "2c7c")])
        if i % 3 == 0:
            reg.remove(f"{HCD}/{port}")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
