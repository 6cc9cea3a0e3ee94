"""overlays/common/usr/lib/udev/rules.d/70-belabox-metrics.rules, checked two ways.

udevd cannot run here (no `udevadm verify` in systemd 252 either), so a small evaluator
with udev's documented matching rules (udev(7): KERNELS/SUBSYSTEMS/DRIVERS/ATTRS must all
match on one device of the parent chain) applies the file to the generic board's devices.
The result must agree with the Python classifier, and feeding the properties back must
not change what discovery decides (properties first, sysfs fallback, same answer).
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import pytest

from belabox_metrics.devices import classify as classify_mod
from belabox_metrics.devices.classify import classify
from belabox_metrics.devices.sysfsscan import SysfsScanner, parse_uevent
from tests.devices.conftest import GENERIC, REPO
from tests.devices.umockdev_tree import materialize

RULES = REPO / "overlays/common/usr/lib/udev/rules.d/70-belabox-metrics.rules"
TOKEN = re.compile(r'^(?P<key>[A-Z]+)(?:\{(?P<attr>[^}]+)\})?(?P<op>==|!=|=|\+=|:=)"(?P<value>[^"]*)"$')
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "DEVPATH", "KERNEL", "ENV", "ATTR", "TEST"}
PARENT_KEYS = {"SUBSYSTEMS", "DRIVERS", "ATTRS"}


def parse_rules(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    rules = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = []
        for part in re.split(r',\s*(?=[A-Z]+(?:\{[^}]*\})?(?:==|!=|=|\+=|:=)")', line):
            m = TOKEN.match(part.strip())
            assert m, f"{RULES.name}:{n}: cannot parse {part!r}"
            key, attr, op, value = m["key"], m["attr"], m["op"], m["value"]
            assert key in MATCH_KEYS | PARENT_KEYS | {"GOTO", "LABEL"}, f"line {n}: unknown key {key}"
            if key in MATCH_KEYS | PARENT_KEYS:
                assert op in ("==", "!=") or key == "ENV", f"line {n}: {key} needs == or !="
            tokens.append((key, attr, op, value))
        rules.append(tokens)
    return rules


def _glob(pattern: str, value: str | None) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


class Dev:
    """One device of a materialized tree, as udev sees it."""

    def __init__(self, root: Path, path: Path):
        self.root, self.path = root, Path(os.path.realpath(path))
        self.env = parse_uevent((self.path / "uevent").read_text())
        self.env["SUBSYSTEM"] = os.path.basename(os.readlink(self.path / "subsystem"))
        self.env["DEVPATH"] = "/" + str(self.path.relative_to(root))

    def chain(self):
        p = self.path
        while p != self.root and str(p).startswith(str(self.root)):
            if (p / "uevent").exists():
                yield p
            p = p.parent

    @staticmethod
    def facts(p: Path, key: str, attr: str | None) -> str | None:
        if key == "SUBSYSTEMS":
            return os.path.basename(os.readlink(p / "subsystem")) if (p / "subsystem").is_symlink() else None
        if key == "DRIVERS":
            if (p / "driver").is_symlink():
                return os.path.basename(os.readlink(p / "driver"))
            return parse_uevent((p / "uevent").read_text()).get("DRIVER")
        f = p / attr
        return f.read_text().strip() if f.is_file() else None


def evaluate(rules, dev: Dev) -> dict[str, str]:
    env = dict(dev.env, ACTION="add")
    skip_to = None
    for tokens in rules:
        if skip_to is not None:
            if ("LABEL", None, "=", skip_to) in tokens:
                skip_to = None
            continue
        ok = True
        parents = [t for t in tokens if t[0] in PARENT_KEYS]
        for key, attr, op, value in tokens:
            if key not in MATCH_KEYS or op not in ("==", "!="):
                continue
            if key == "ENV":
                actual = env.get(attr)
            elif key == "ATTR":
                actual = Dev.facts(dev.path, "ATTR", attr)
            elif key == "TEST":
                actual = value if (dev.path / value).exists() else None
            elif key == "KERNEL":
                actual = dev.path.name
            else:
                actual = env.get(key)
            if _glob(value, actual) != (op == "=="):
                ok = False
        if ok and parents:
            ok = any(all(_glob(v, Dev.facts(p, k, a)) == (op == "==") for k, a, op, v in parents)
                     for p in dev.chain())
        if not ok:
            continue
        for key, attr, op, value in tokens:
            if key == "ENV" and op == "=":
                env[attr] = value
            elif key == "GOTO":
                skip_to = value
    return {k: v for k, v in env.items() if k == "BELABOX_METRICS_KIND"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return materialize(GENERIC, tmp_path_factory.mktemp("rules") / "sys", strip_udev=True)


def _devices(tree: Path):
    for sub in ("net", "block", "tty", "usbmisc", "wwan"):
        for entry in sorted((tree / "class" / sub).iterdir()) if (tree / "class" / sub).is_dir() else ():
            yield Dev(tree, entry)
    for entry in sorted((tree / "bus" / "usb" / "devices").iterdir()):
        dev = Dev(tree, entry)
        if dev.env.get("DEVTYPE") == "usb_device":
            yield dev


def test_header_and_syntax():
    text = RULES.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# SPDX-License-Identifier: ")
    assert lines[1].startswith("# ") and len(lines[1]) > 10
    rules = parse_rules(text)
    labels = {t[3] for r in rules for t in r if t[0] == "LABEL"}
    gotos = {t[3] for r in rules for t in r if t[0] == "GOTO"}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"
    # parse_rules admits no RUN/NAME/OWNER keys; and nothing of ModemManager's is touched.
    assigned = {t[1] for r in rules for t in r if t[0] == "ENV" and t[2] == "="}
    assert assigned == {"BELABOX_METRICS_KIND", ".BELABOX_METRICS_CELLULAR"}


def test_lists_mirror_the_classifier():
    text = RULES.read_text()
    vendor_lists = re.findall(r'ATTRS?\{idVendor\}=="([^"]+)"', text)
    assert vendor_lists and all(set(v.split("|")) == set(classify_mod.CELLULAR_VENDORS) for v in vendor_lists)
    ports = re.search(r'LABEL="belabox_metrics_port"\nDRIVERS=="([^"]+)"', text)[1]
    assert set(ports.split("|")) == set(classify_mod.MODEM_DRIVERS)
    router = re.search(r'CELLULAR\}=="1", DRIVERS=="([^"]+)"', text)[1]
    assert set(router.split("|")) == set(classify_mod.ROUTER_DRIVERS)
    pci = re.search(r'\nDRIVERS=="(mhi[^"]+)"', text)[1]
    assert set(pci.split("|")) == set(classify_mod.PCI_MODEM_DRIVERS)


def test_rules_agree_with_the_classifier(tree):
    rules = parse_rules(RULES.read_text())
    kinds = {("usb:" if d.env["SUBSYSTEM"] == "usb" else "") + d.path.name:
             evaluate(rules, d).get("BELABOX_METRICS_KIND") for d in _devices(tree)}
    assert {k: v for k, v in kinds.items() if v} == {
        "wwan0": "modem", "eth1": "modem", "usb1": "tether", "usb0": "ignore",
        "cdc-wdm0": "modem-port", "ttyUSB0": "modem-port", "ttyUSB1": "modem-port",
        "ttyUSB2": "modem-port", "ttyUSB3": "modem-port",
        "mmcblk0": "disk", "mmcblk1": "disk", "nvme0n1": "disk", "sda": "disk",
        "mmcblk0boot0": "ignore", "mmcblk0boot1": "ignore",
        "usb:1-1": "modem", "usb:1-2": "modem",
    }


def test_properties_first_gives_the_same_answer(tree, tmp_path):
    """Discovery with the rules' properties decides exactly as without them (sysfs only)."""
    without = classify(SysfsScanner(str(tree)).scan())
    marked = materialize(GENERIC, tmp_path / "sys", strip_udev=True)
    rules = parse_rules(RULES.read_text())
    for dev in _devices(marked):
        props = evaluate(rules, dev)
        if props:
            with open(dev.path / "uevent", "a") as fh:
                fh.writelines(f"{k}={v}\n" for k, v in props.items())
    with_props = classify(SysfsScanner(str(marked)).scan())
    assert [(d.name, d.bus) for d in with_props.disks] == [(d.name, d.bus) for d in without.disks]
    assert [(n.name, n.kind, n.modem_key) for n in with_props.interfaces] == \
        [(n.name, n.kind, n.modem_key) for n in without.interfaces]
    assert [(m.key, m.interfaces, m.ports) for m in with_props.modems] == \
        [(m.key, m.interfaces, m.ports) for m in without.modems]
    assert [e[:2] for e in with_props.excluded] == [e[:2] for e in without.excluded]
    assert any("udev rule" in m.reason for m in with_props.modems)
