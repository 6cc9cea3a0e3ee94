"""The modem collector against the real `mmcli` talking to a dbusmock ModemManager.

Three modems on three technologies (LTE, 5G NR, UMTS), values changed at run time, a
modem that vanishes between `-L` and `-m N`, signal polling setup, caps and identifiers.
mmcli's stderr must stay empty: a wrongly typed mock property shows up only there.
"""

from __future__ import annotations

import logging

import dbus
import pytest

from belabox_metrics.collectors.modem.collector import ModemCollector
from belabox_metrics.devices.model import modem_key
from belabox_metrics.health.registry import Registry as HealthRegistry
from tests.devices.conftest import make_ctx

QUECTEL_USB = "/devices/platform/fc800000.usb/usb1/1-1"
IMEI0, IMEI1, IMEI2 = "860000000000000", "860000000000001", "860000000000002"
LTE, NR5G, UMTS = 1 << 14, 1 << 15, 1 << 5


def _sig(**values):
    return dbus.Dictionary({k: dbus.Double(v) for k, v in values.items()}, signature="sv")


EMPTY = dbus.Dictionary({}, signature="sv")


def add_three(mm):
    mm.add_modem("0", Modem__Device=dbus.String("/sys" + QUECTEL_USB))
    mm.add_modem("1", Modem__Manufacturer=dbus.String("Quectel"), Modem__Model=dbus.String("RM520N-GL"),
                 Modem__AccessTechnologies=dbus.UInt32(NR5G),
                 Signal__Lte=EMPTY, Signal__Nr5g=_sig(rsrp=-88.0, rsrq=-11.0, snr=21.5),
                 Modem3gpp__OperatorName=dbus.String("Vodafone.de"))
    mm.add_modem("2", Modem__Manufacturer=dbus.String("huawei"), Modem__Model=dbus.String("E3372"),
                 Modem__AccessTechnologies=dbus.UInt32(UMTS), Modem__State=dbus.Int32(8),
                 Modem3gpp__RegistrationState=dbus.UInt32(5),
                 Signal__Lte=EMPTY, Signal__Umts=_sig(rssi=-71.0, rscp=-80.0, ecio=-6.0))


@pytest.fixture
def sysfs(generic_sysfs):
    for name, rx, tx in (("wwan1", "1000", "2000"), ("wwan2", "3000", "4000")):
        stats = generic_sysfs / "class" / "net" / name / "statistics"
        stats.mkdir(parents=True)
        (stats / "rx_bytes").write_text(rx + "\n")
        (stats / "tx_bytes").write_text(tx + "\n")
    return generic_sysfs


def values(samples, name):
    return {tuple((k, v) for k, v in s.labels if k not in ("modem",)): s.value
            for s in samples if s.name == name}


def by_modem(samples, name):
    return {s.label("modem"): s for s in samples if s.name == name}


def test_three_technologies(mm, sysfs, generic_registry):
    add_three(mm)
    collector = ModemCollector(make_ctx(sysfs, generic_registry))
    samples = collector.collect()
    assert not collector.recent_stderr, list(collector.recent_stderr)
    assert collector.status[0] == "ok", collector.status

    k0, k1, k2 = (modem_key(f"imei:{i}") for i in (IMEI0, IMEI1, IMEI2))
    hilink = next(m for m in generic_registry.modems() if m.vendor_id == "12d1")
    info = by_modem(samples, "belabox_modem_info")
    assert set(info) == {k0, k1, k2, hilink.key}
    assert dict(info[k0].labels) == {"modem": k0, "manufacturer": "Quectel", "model": "EC25",
                                     "firmware": "EC25EFAR06A06M4G", "interface": "wwan0",
                                     "operator": "Telekom.de", "access_tech": "lte",
                                     "driver": "qmi_wwan", "bus": "usb", "bus_path": "1-1"}
    assert info[k1].label("access_tech") == "5gnr" and info[k1].label("operator") == "Vodafone.de"
    assert info[k2].label("access_tech") == "umts"
    # The HiLink stick has no ModemManager side: its USB identity and its counters only.
    assert dict(info[hilink.key].labels) == {"modem": hilink.key, "manufacturer": "HUAWEI MOBILE",
                                             "model": "HUAWEI MOBILE", "interface": "eth1",
                                             "driver": "cdc_ether", "bus": "usb", "bus_path": "1-2"}
    # ModemManager's modems without a sysfs device here still say where ModemManager found them.
    assert (info[k1].label("bus"), info[k1].label("bus_path")) == ("usb", "usb1")
    present = {k: s.value for k, s in by_modem(samples, "belabox_modem_present").items()}
    assert present == {k0: 1, k1: 1, k2: 1, hilink.key: 1}
    assert [s.value for s in samples if s.name == "belabox_modemmanager_up"] == [1]

    state = by_modem(samples, "belabox_modem_state")
    assert (state[k0].value, state[k1].value, state[k2].value) == (11, 11, 8)
    assert hilink.key not in state
    assert by_modem(samples, "belabox_modem_signal_quality_percent")[k0].value == 67
    reg = by_modem(samples, "belabox_modem_registration_state")
    assert (reg[k0].value, reg[k0].label("state")) == (1, "home")
    assert (reg[k2].value, reg[k2].label("state")) == (5, "roaming")

    def radio(metric, key):
        return {s.label("access_tech"): s.value for s in samples if s.name == metric and s.label("modem") == key}

    assert radio("belabox_modem_rssi_dbm", k0) == {"lte": -65.0}
    assert radio("belabox_modem_rsrp_dbm", k0) == {"lte": -95.0}
    assert radio("belabox_modem_rsrq_db", k0) == {"lte": -9.0}
    assert radio("belabox_modem_snr_db", k0) == {"lte": 12.5}
    # 5G reports no RSSI; only what the modem gives is exported.
    assert radio("belabox_modem_rssi_dbm", k1) == {}
    assert radio("belabox_modem_rsrp_dbm", k1) == {"5gnr": -88.0}
    assert radio("belabox_modem_snr_db", k1) == {"5gnr": 21.5}
    assert radio("belabox_modem_rssi_dbm", k2) == {"umts": -71.0}
    assert radio("belabox_modem_rsrp_dbm", k2) == {}

    assert {k: s.value for k, s in by_modem(samples, "belabox_modem_sim_present").items()} == {k0: 1, k1: 1, k2: 1}
    assert {k: s.value for k, s in by_modem(samples, "belabox_modem_sim_locked").items()} == {k0: 0, k1: 0, k2: 0}

    def counter(metric, key):
        s = next(s for s in samples if s.name == metric and s.label("modem") == key)
        return s.label("interface"), s.value

    assert counter("belabox_modem_receive_bytes_total", k0) == ("wwan0", 123456)
    assert counter("belabox_modem_transmit_bytes_total", k0) == ("wwan0", 654321)
    assert counter("belabox_modem_receive_bytes_total", k2) == ("wwan2", 3000)
    assert counter("belabox_modem_transmit_bytes_total", hilink.key) == ("eth1", 4444000)

    # Discovery learned the IMEI: its key for the Quectel is now the one the series carry.
    quectel = next(m for m in generic_registry.modems() if m.usb_path == QUECTEL_USB)
    assert quectel.key == k0
    # No raw identifier in any label without modem.expose_identifiers.
    for s in samples:
        for _, v in s.labels:
            assert IMEI0 not in v and "8949020" not in v


def test_changes_seen_by_next_collection(mm, sysfs, generic_registry):
    add_three(mm)
    collector = ModemCollector(make_ctx(sysfs, generic_registry))
    collector.collect()
    k0 = modem_key(f"imei:{IMEI0}")
    mm.set("0", "Signal", "Lte", _sig(rssi=-80.0, rsrp=-110.0, rsrq=-14.0, snr=2.0))
    mm.set("0", "Modem", "SignalQuality", dbus.Struct((dbus.UInt32(33), True), signature="ub", variant_level=1))
    mm.set("0", "Modem", "State", dbus.Int32(8))
    mm.set("0", "Modem", "UnlockRequired", dbus.UInt32(2))  # sim-pin
    samples = collector.collect()
    assert not collector.recent_stderr, list(collector.recent_stderr)
    got = {s.name: s.value for s in samples if s.label("modem") == k0 and s.name != "belabox_modem_info"
           and s.label("access_tech") in (None, "lte")}
    assert got["belabox_modem_rssi_dbm"] == -80.0
    assert got["belabox_modem_rsrp_dbm"] == -110.0
    assert got["belabox_modem_snr_db"] == 2.0
    assert got["belabox_modem_signal_quality_percent"] == 33
    assert got["belabox_modem_state"] == 8
    assert got["belabox_modem_sim_locked"] == 1


def test_modem_vanishing_between_list_and_query(mm, sysfs, generic_registry, caplog):
    add_three(mm)
    mm.vanish_after_next_list("1")
    health = HealthRegistry()
    collector = ModemCollector(make_ctx(sysfs, generic_registry), health=health)
    with caplog.at_level(logging.DEBUG, logger="belabox_metrics.collectors.modem.collector"):
        samples = collector.collect()
    assert "modem 1 vanished between -L and -m" in caplog.text  # listed, then gone
    keys = set(by_modem(samples, "belabox_modem_info"))
    assert modem_key(f"imei:{IMEI1}") not in keys
    assert {modem_key(f"imei:{IMEI0}"), modem_key(f"imei:{IMEI2}")} <= keys
    assert not collector.recent_stderr, list(collector.recent_stderr)
    # A modem leaving is normal life, not a collector problem.
    assert health.get("collector.modem").status == "ok", health.get("collector.modem").message
    assert collector.ctx.selfmetrics.total("metrics_collector_collector_errors_total") == 0


def test_signal_setup_once_per_appearance(mm, sysfs, generic_registry):
    mm.add_modem("0", Modem__Device=dbus.String("/sys" + QUECTEL_USB), Signal__Rate=dbus.UInt32(0),
                 Signal__Lte=EMPTY)
    collector = ModemCollector(make_ctx(sysfs, generic_registry, signal_setup_rate=7))
    collector.collect()
    assert int(mm.get("0", "Signal", "Rate")) == 7
    mm.set("0", "Signal", "Rate", dbus.UInt32(0))  # e.g. the modem reset its polling
    collector.collect()
    assert mm.calls("0", "Setup") == 1, "signal setup must be bounded to once per appearance"
    # The modem leaves and comes back (ModemManager gives it a new index): set up again.
    mm.remove_modem("0")
    collector.collect()
    mm.add_modem("3", Modem__Device=dbus.String("/sys" + QUECTEL_USB), Signal__Rate=dbus.UInt32(0))
    collector.collect()
    assert mm.calls("3", "Setup") == 1
    assert int(mm.get("3", "Signal", "Rate")) == 7
    assert not collector.recent_stderr, list(collector.recent_stderr)


def test_no_signal_setup_when_disabled(mm, sysfs, generic_registry):
    mm.add_modem("0", Signal__Rate=dbus.UInt32(0))
    collector = ModemCollector(make_ctx(sysfs, generic_registry))  # signal_setup_rate defaults to 0
    collector.collect()
    assert mm.calls("0", "Setup") == 0
    assert not collector.recent_stderr, list(collector.recent_stderr)


def test_caps_drop_and_count(mm, sysfs, generic_registry):
    add_three(mm)
    ctx = make_ctx(sysfs, generic_registry, max_modems=2)
    collector = ModemCollector(ctx)
    samples = collector.collect()
    assert len(by_modem(samples, "belabox_modem_info")) == 2
    assert ctx.selfmetrics.value("metrics_collector_dropped_series_total", {"reason": "max_modems"}) > 0
    assert collector.status[0] == "degraded" and "modem.max_modems (2)" in collector.status[1]

    assert not collector.recent_stderr, list(collector.recent_stderr)
    ctx = make_ctx(sysfs, generic_registry, max_series=10)
    collector = ModemCollector(ctx)
    samples = collector.collect()
    assert len(samples) == 10
    assert not collector.recent_stderr, list(collector.recent_stderr)
    assert ctx.selfmetrics.value("metrics_collector_dropped_series_total", {"reason": "max_series"}) > 0


def test_identifiers_only_when_configured(mm, sysfs, generic_registry):
    add_three(mm)
    collector = ModemCollector(make_ctx(sysfs, generic_registry, expose_identifiers=True))
    samples = collector.collect()
    assert not collector.recent_stderr, list(collector.recent_stderr)
    k0 = modem_key(f"imei:{IMEI0}")
    assert by_modem(samples, "belabox_modem_info")[k0].label("imei") == IMEI0
    assert by_modem(samples, "belabox_modem_sim_present")[k0].label("iccid") == "89490200000000000000"


def test_modem_without_sim(mm, sysfs, generic_registry):
    mm.add_modem("0", Sim__Present=dbus.Boolean(False), Modem__State=dbus.Int32(-1),
                 Modem__StateFailedReason=dbus.UInt32(2))  # sim-missing
    collector = ModemCollector(make_ctx(sysfs, generic_registry))
    samples = collector.collect()
    k0 = modem_key(f"imei:{IMEI0}")
    assert by_modem(samples, "belabox_modem_sim_present")[k0].value == 0
    assert k0 not in by_modem(samples, "belabox_modem_sim_locked")
    assert by_modem(samples, "belabox_modem_state")[k0].value == -1
    assert not collector.recent_stderr, list(collector.recent_stderr)


def test_mmcli_warnings_are_kept(mm, sysfs, generic_registry):
    """The empty-stderr checks above can fail: a wrongly typed property makes mmcli warn."""
    mm.add_modem("0", Modem__State=dbus.UInt32(11))  # MM's State is int32
    collector = ModemCollector(make_ctx(sysfs, generic_registry))
    samples = collector.collect()
    assert any(line.startswith("mmcli -m 0 -J: ") and "property State of type u" in line
               for line in collector.recent_stderr), list(collector.recent_stderr)
    assert modem_key(f"imei:{IMEI0}") not in by_modem(samples, "belabox_modem_state")  # shown as --
