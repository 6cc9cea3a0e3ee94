"""Pure mmcli JSON parsing. The data/mmcli/*.json files were printed by the real mmcli
1.20.4 against tests/devices/mm_template.py; the rest are hand-made broken variants."""

from __future__ import annotations

import json

import pytest

from belabox_metrics.collectors.modem.parse import (
    MmcliFormatError,
    ModemStatus,
    parse_modem,
    parse_modem_list,
    parse_signal,
    parse_sim,
    sim_locked,
)
from tests.devices.conftest import HERE

DATA = HERE / "data" / "mmcli"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_list_sorted_numerically():
    assert parse_modem_list(read("list.json")) == [
        "/org/freedesktop/ModemManager1/Modem/0", "/org/freedesktop/ModemManager1/Modem/1"]
    text = json.dumps({"modem-list": [f"/org/freedesktop/ModemManager1/Modem/{i}" for i in (10, 2, 1)]})
    assert [p.rsplit("/", 1)[1] for p in parse_modem_list(text)] == ["1", "2", "10"]
    assert parse_modem_list('{"modem-list": []}') == []


def test_modem():
    m = parse_modem(read("modem-0.json"))
    assert m == ModemStatus(
        path="/org/freedesktop/ModemManager1/Modem/0", manufacturer="Quectel", model="EC25",
        revision="EC25EFAR06A06M4G", equipment_id="860000000000000", device="/sys/devices/platform/usb0",
        drivers=("qmi_wwan", "option"), ports=(("cdc-wdm0", "qmi"), ("wwan0", "net")), state="connected",
        access_techs=("lte",), signal_quality=67.0, operator_name="Telekom.de", registration="home",
        sim_path="/org/freedesktop/ModemManager1/SIM/0", unlock_required=None)
    assert m.index == "0" and m.net_ports == ("wwan0",)
    assert sim_locked(m) is False


def test_modem_without_sim_and_locked():
    m = parse_modem(read("modem-1-no-sim.json"))
    assert (m.state, m.sim_path, m.unlock_required) == ("failed", None, "sim-pin")
    assert sim_locked(m) is True


def test_signal():
    report = parse_signal(read("signal-0.json"))
    assert report.rate == 5
    assert report.values == {"lte": {"rssi": -65.0, "rsrq": -9.0, "rsrp": -95.0, "snr": 12.5}}


def test_signal_5g_section_is_5gnr():
    text = json.dumps({"modem": {"signal": {"5g": {"rsrp": "-90.00", "rsrq": "--", "snr": "20.00"},
                                            "refresh": {"rate": "0"}}}})
    report = parse_signal(text)
    assert report.values == {"5gnr": {"rsrp": -90.0, "snr": 20.0}} and report.rate == 0


def test_sim():
    sim = parse_sim(read("sim-0.json"))
    assert (sim.active, sim.iccid, sim.operator_name) == (True, "89490200000000000000", "Telekom.de")


def test_unknowns_are_absent_not_zero():
    text = json.dumps({"modem": {"dbus-path": "/org/freedesktop/ModemManager1/Modem/3", "generic": {
        "signal-quality": {"value": "--", "recent": "no"}, "state": "--", "access-technologies": [],
        "ports": "--", "sim": "--", "manufacturer": 7}, "3gpp": {"registration-state": "--"}}})
    m = parse_modem(text)
    assert (m.signal_quality, m.state, m.registration, m.manufacturer, m.sim_path) == (None,) * 5
    assert m.ports == () and m.access_techs == ()
    assert sim_locked(m) is None
    nan = json.dumps({"modem": {"signal": {"lte": {"rssi": "nan", "rsrp": "inf", "snr": "x"}}}})
    assert parse_signal(nan).values == {}


@pytest.mark.parametrize("parser,text", [
    (parse_modem_list, ""), (parse_modem_list, "{"), (parse_modem_list, "[]"),
    (parse_modem_list, '{"modem-list": [1]}'), (parse_modem_list, '{"modem-list": "x"}'),
    (parse_modem, '{"modem": {}}'), (parse_modem, '{"modem": []}'), (parse_modem, "null"),
    (parse_signal, '{"modem": {}}'), (parse_signal, '{"modem": {"signal": "x"}}'),
    (parse_sim, '{"sim": 3}'), (parse_sim, "error: couldn't find SIM"),
])
def test_malformed(parser, text):
    with pytest.raises(MmcliFormatError):
        parser(text)
