"""python-dbusmock template for ModemManager 1.20, written for belabox-metrics tests.

Debian's dbusmock has no ModemManager template and PyPI's is too thin for ``mmcli``
(no Signal interface, objects under ``Modems/`` instead of ``Modem/``), see
feasibility.md §4. Every property carries its exact D-Bus type: mmcli shows a
wrongly typed property as ``--`` with only a warning on stderr.

Mock methods (on org.freedesktop.DBus.Mock):
  AddModem(index s, overrides a{sv}) -> o   Modem/<index> with SIM/<index> and Bearer/<index>;
      override keys are "<Interface>.<Property>" with Interface one of Modem, Modem3gpp,
      Signal, Sim, Bearer (e.g. "Signal.Lte", "Modem.State"); "Sim.Present" false leaves
      the modem without a SIM.
  RemoveModem(index s)                      the modem, its SIM and bearer vanish.
  VanishAfterNextList(index s)              the next GetManagedObjects still lists the
      modem, then it is removed: a modem that disappears between ``-L`` and ``-m N``.
"""

import dbus
from dbusmock import MOCK_IFACE, OBJECT_MANAGER_IFACE, mockobject

BUS_NAME = "org.freedesktop.ModemManager1"
MAIN_OBJ = "/org/freedesktop/ModemManager1"
MAIN_IFACE = "org.freedesktop.ModemManager1"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

MODEM_IFACE = "org.freedesktop.ModemManager1.Modem"
IFACES = {
    "Modem": MODEM_IFACE,
    "Modem3gpp": MODEM_IFACE + ".Modem3gpp",
    "Signal": MODEM_IFACE + ".Signal",
    "Sim": "org.freedesktop.ModemManager1.Sim",
    "Bearer": "org.freedesktop.ModemManager1.Bearer",
}
MODEM_PREFIX = MAIN_OBJ + "/Modem/"

# MMModemAccessTechnology bits, MMModemMode bits, MMModemPortType values
LTE, NR5G, UMTS = 1 << 14, 1 << 15, 1 << 5
MODE_2G, MODE_3G, MODE_4G, MODE_5G = 2, 4, 8, 16
PORT_NET, PORT_AT, PORT_QMI = 2, 3, 6


def _signal(**values):
    return dbus.Dictionary({k: dbus.Double(v) for k, v in values.items()}, signature="sv")


def _modem_props(index, sim_path, bearer_path):
    return {
        "Sim": dbus.ObjectPath(sim_path),
        "SimSlots": dbus.Array([], signature="o"),
        "PrimarySimSlot": dbus.UInt32(0),
        "Bearers": dbus.Array([dbus.ObjectPath(bearer_path)], signature="o"),
        "SupportedCapabilities": dbus.Array([dbus.UInt32(4)], signature="u"),
        "CurrentCapabilities": dbus.UInt32(4),
        "MaxBearers": dbus.UInt32(1),
        "MaxActiveBearers": dbus.UInt32(1),
        "MaxActiveMultiplexedBearers": dbus.UInt32(0),
        "Manufacturer": dbus.String("Quectel"),
        "Model": dbus.String("EC25"),
        "Revision": dbus.String("EC25EFAR06A06M4G"),
        "CarrierConfiguration": dbus.String("ROW_Generic_3GPP"),
        "CarrierConfigurationRevision": dbus.String("06010821"),
        "HardwareRevision": dbus.String("10000"),
        "DeviceIdentifier": dbus.String(f"d7f9b2c1e0a4{index}"),
        "Device": dbus.String(f"/sys/devices/platform/usb{index}"),
        "Drivers": dbus.Array(["qmi_wwan", "option"], signature="s"),
        "Plugin": dbus.String("quectel"),
        "PrimaryPort": dbus.String(f"cdc-wdm{index}"),
        "Ports": dbus.Array([dbus.Struct((f"cdc-wdm{index}", dbus.UInt32(PORT_QMI)), signature="su"),
                             dbus.Struct((f"wwan{index}", dbus.UInt32(PORT_NET)), signature="su")],
                            signature="(su)"),
        "EquipmentIdentifier": dbus.String(f"86{int(index):013d}"),
        "UnlockRequired": dbus.UInt32(1),  # MM_MODEM_LOCK_NONE
        "UnlockRetries": dbus.Dictionary({dbus.UInt32(2): dbus.UInt32(3)}, signature="uu"),
        "State": dbus.Int32(11),  # connected
        "StateFailedReason": dbus.UInt32(0),
        "AccessTechnologies": dbus.UInt32(LTE),
        "SignalQuality": dbus.Struct((dbus.UInt32(67), dbus.Boolean(True)), signature="ub"),
        "OwnNumbers": dbus.Array([], signature="s"),
        "PowerState": dbus.UInt32(3),
        "SupportedModes": dbus.Array([dbus.Struct((dbus.UInt32(MODE_2G | MODE_3G | MODE_4G),
                                                   dbus.UInt32(MODE_4G)), signature="uu")],
                                     signature="(uu)"),
        "CurrentModes": dbus.Struct((dbus.UInt32(MODE_2G | MODE_3G | MODE_4G), dbus.UInt32(MODE_4G)),
                                    signature="uu"),
        "SupportedBands": dbus.Array([dbus.UInt32(31), dbus.UInt32(33)], signature="u"),
        "CurrentBands": dbus.Array([dbus.UInt32(31), dbus.UInt32(33)], signature="u"),
        "SupportedIpFamilies": dbus.UInt32(7),
    }


def _3gpp_props(index):
    return {
        "Imei": dbus.String(f"86{int(index):013d}"),
        "RegistrationState": dbus.UInt32(1),  # home
        "OperatorCode": dbus.String("26201"),
        "OperatorName": dbus.String("Telekom.de"),
        "EnabledFacilityLocks": dbus.UInt32(0),
        "SubscriptionState": dbus.UInt32(0),
        "EpsUeModeOperation": dbus.UInt32(0),
        "Pco": dbus.Array([], signature="(ubay)"),
        "InitialEpsBearer": dbus.ObjectPath("/"),
        "InitialEpsBearerSettings": dbus.Dictionary({}, signature="sv"),
        "PacketServiceState": dbus.UInt32(2),  # attached
        "Nr5gRegistrationSettings": dbus.Dictionary({}, signature="sv"),
    }


def _signal_props():
    empty = dbus.Dictionary({}, signature="sv")
    return {
        "Rate": dbus.UInt32(5),
        "RssiThreshold": dbus.UInt32(0),
        "ErrorRateThreshold": dbus.Boolean(False),
        "Cdma": empty, "Evdo": empty, "Gsm": empty, "Umts": empty,
        "Lte": _signal(rssi=-65.0, rsrq=-9.0, rsrp=-95.0, snr=12.5),
        "Nr5g": empty,
    }


def _sim_props(index):
    return {
        "Active": dbus.Boolean(True),
        "SimIdentifier": dbus.String(f"894902{int(index):014d}"),
        "Imsi": dbus.String(f"26201{int(index):010d}"),
        "Eid": dbus.String(""),
        "OperatorIdentifier": dbus.String("26201"),
        "OperatorName": dbus.String("Telekom.de"),
        "EmergencyNumbers": dbus.Array([], signature="s"),
        "PreferredNetworks": dbus.Array([], signature="(su)"),
        "Gid1": dbus.ByteArray(b""),
        "Gid2": dbus.ByteArray(b""),
        "SimType": dbus.UInt32(1),
        "EsimStatus": dbus.UInt32(0),
        "Removability": dbus.UInt32(1),
    }


def _bearer_props(index):
    return {
        "Interface": dbus.String(f"wwan{index}"),
        "Connected": dbus.Boolean(True),
        "Suspended": dbus.Boolean(False),
        "Multiplexed": dbus.Boolean(False),
        "Ip4Config": dbus.Dictionary({"method": dbus.UInt32(3)}, signature="sv"),
        "Ip6Config": dbus.Dictionary({}, signature="sv"),
        "Stats": dbus.Dictionary({}, signature="sv"),
        "IpTimeout": dbus.UInt32(20),
        "BearerType": dbus.UInt32(1),
        "ProfileId": dbus.Int32(-1),
        "Properties": dbus.Dictionary({"apn": dbus.String("internet")}, signature="sv"),
    }


def load(mock, parameters):
    mock.AddProperties(MAIN_IFACE, {"Version": dbus.String(parameters.get("Version", "1.20.4"))})
    mock.AddMethods(MAIN_IFACE, [
        ("ScanDevices", "", "", ""),
        ("SetLogging", "s", "", ""),
        ("ReportKernelEvent", "a{sv}", "", ""),
        ("InhibitDevice", "sb", "", ""),
    ])
    mock.vanish_after_list = set()
    # mmcli treats every managed object as a modem: SIM and bearer objects must not be
    # listed (with them, `mmcli -i 0` crashes, feasibility.md Addendum).
    mock.AddMethod(OBJECT_MANAGER_IFACE, "GetManagedObjects", "", "a{oa{sa{sv}}}", _managed_objects)


def _managed_objects(self):
    ret = {dbus.ObjectPath(k): obj.props for k, obj in mockobject.objects.items()
           if k.startswith(MODEM_PREFIX)}
    for index in sorted(self.vanish_after_list):
        _remove(self, index)
    self.vanish_after_list.clear()
    return ret


def _apply_overrides(objs, overrides):
    for key, value in overrides.items():
        iface, _, prop = key.partition(".")
        if iface not in IFACES or not prop:
            raise dbus.exceptions.DBusException(f"bad override key {key!r}",
                                                name="org.freedesktop.DBus.Mock.NameError")
        if iface == "Sim" and prop == "Present":
            continue
        target = objs[iface]
        if prop not in target:
            raise dbus.exceptions.DBusException(f"unknown property {key!r}",
                                                name="org.freedesktop.DBus.Mock.NameError")
        target[prop] = value


@dbus.service.method(MOCK_IFACE, in_signature="sa{sv}", out_signature="o")
def AddModem(self, index, overrides):
    modem_path = MODEM_PREFIX + index
    sim_path = MAIN_OBJ + "/SIM/" + index
    bearer_path = MAIN_OBJ + "/Bearer/" + index
    has_sim = bool(overrides.get("Sim.Present", True))
    props = {
        "Modem": _modem_props(index, sim_path if has_sim else "/", bearer_path),
        "Modem3gpp": _3gpp_props(index),
        "Signal": _signal_props(),
        "Sim": _sim_props(index),
        "Bearer": _bearer_props(index),
    }
    _apply_overrides(props, overrides)

    if has_sim:
        self.AddObject(sim_path, IFACES["Sim"], props["Sim"], [])
    self.AddObject(bearer_path, IFACES["Bearer"], props["Bearer"], [
        ("Connect", "", "", ""), ("Disconnect", "", "", ""),
    ])
    self.AddObject(modem_path, MODEM_IFACE, props["Modem"], [
        ("Enable", "b", "", ""),
        ("ListBearers", "", "ao", f"ret = [dbus.ObjectPath('{bearer_path}')]"),
    ])
    modem = mockobject.objects[modem_path]
    modem.AddProperties(IFACES["Modem3gpp"], props["Modem3gpp"])
    modem.AddProperties(IFACES["Signal"], props["Signal"])
    modem.AddMethods(IFACES["Signal"], [
        ("Setup", "u", "", f"self.props['{IFACES['Signal']}']['Rate'] = dbus.UInt32(args[0])"),
        ("SetupThresholds", "a{sv}", "", ""),
    ])
    self.object_manager_emit_added(modem_path)
    return modem_path


def _remove(self, index):
    modem_path = MODEM_PREFIX + index
    if modem_path in mockobject.objects:
        self.EmitSignal(OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas",
                        [dbus.ObjectPath(modem_path), list(mockobject.objects[modem_path].props)])
        self.RemoveObject(modem_path)
    for path in (MAIN_OBJ + "/SIM/" + index, MAIN_OBJ + "/Bearer/" + index):
        if path in mockobject.objects:
            self.RemoveObject(path)


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="")
def RemoveModem(self, index):
    _remove(self, index)


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="")
def VanishAfterNextList(self, index):
    self.vanish_after_list.add(index)
