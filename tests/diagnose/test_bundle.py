"""diagnose --bundle: every expected part is there and no planted secret survives in any file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

from tests.support.cli import APP

IMEI = "356938035643809"
IMSI = "262011234567890"
ICCID = "8949226000001234567"
PHONE = "+4915112345678"
PHONE_LOCAL = "015112345678"
MAC = "a4:5e:60:d2:1b:7f"
MAC2 = "02:42:ac:11:00:02"
TOKEN = "tok_Zm9vYmFyLXNlY3JldC0xMjM0"
URL_PASSWORD = "hunter2pw"
USB_SERIAL = "QX7RUSB0042SER"
SECRETS = [IMEI, IMSI, ICCID, PHONE, PHONE_LOCAL, "4915112345678", MAC, MAC.upper(), MAC.replace(":", ""),
           MAC2, MAC2.replace(":", ""), TOKEN, URL_PASSWORD, USB_SERIAL]

MMCLI = f"""#!/bin/sh
case "$*" in
  "-L -J") echo '{{"modem-list":["/org/freedesktop/ModemManager1/Modem/0"]}}' ;;
  "-m 0 -J") cat <<'JSON'
{{"modem":{{"generic":{{"equipment-identifier":"{IMEI}","own-numbers":["{PHONE}","{PHONE_LOCAL}"],
"model":"EG25-G","manufacturer":"QUALCOMM INCORPORATED","sim":"/org/freedesktop/ModemManager1/SIM/0",
"device":"/sys/devices/platform/usb/1-1","ports":["wwan0 (net)"],"signal-quality":{{"value":"72","recent":"yes"}}}},
"3gpp":{{"imei":"{IMEI}","operator-name":"Vodafone.de","operator-code":"26202","imsi":"{IMSI}"}},
"note":"hw {MAC} via Bearer {TOKEN}"}}}}
JSON
  ;;
  *) echo "fake mmcli: unexpected $*" >&2; exit 1 ;;
esac
"""
UDEVADM = f"""#!/bin/sh
[ "$*" = "info --export-db" ] || exit 1
cat <<'DB'
P: /devices/platform/usb/1-1/1-1:1.4/net/wwan0
E: INTERFACE=wwan0
E: ID_NET_NAME_MAC=enx{MAC.replace(":", "")}
E: ID_SERIAL=Quectel_EG25-G_{USB_SERIAL}
E: ID_SERIAL_SHORT={USB_SERIAL}
E: ID_MM_CANDIDATE=1

P: /devices/platform/usb/1-1
E: ID_USB_SERIAL_SHORT={IMEI}
E: ID_MODEL=EG25-G
DB
"""
JOURNALCTL = f"""#!/bin/sh
echo "2026-11-27T18:00:00+0000 box metrics-collector[42]: upload failed: 401 for Authorization: Bearer {TOKEN}"
echo "2026-11-27T18:00:01+0000 box metrics-collector[42]: modem {IMEI} sim {ICCID} number {PHONE}"
"""


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_bundle_redacts_every_planted_secret(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("mmcli-fake", MMCLI), ("udevadm", UDEVADM), ("journalctl", JOURNALCTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    token = tmp_path / "api-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    sysfs, procfs = tmp_path / "sys", tmp_path / "proc"
    _tree(sysfs, {"class/net/eth0/address": MAC2 + "\n", "class/net/eth0/operstate": "up\n",
                  "class/net/eth0/carrier": "1\n", "class/net/eth0/statistics/rx_bytes": "1000\n",
                  "class/net/eth0/statistics/tx_bytes": "2000\n",
                  "class/net/wwan0/address": MAC + "\n", "class/net/wwan0/uevent": "INTERFACE=wwan0\nDEVTYPE=wwan\n",
                  "class/thermal/thermal_zone0/type": "soc-thermal\n", "class/thermal/thermal_zone0/temp": "51000\n"})
    _tree(procfs, {"meminfo": "MemTotal: 1000 kB\n", "loadavg": "0.1 0.2 0.3 1/100 42\n",
                   "device-tree/model": "Orange Pi 5 Plus\x00"})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""device_id: box-1
remote:
  url: https://fleet:{URL_PASSWORD}@127.0.0.1:9/api/v1/import
  auth_token_file: {token}
  extra_labels:
    sim: "{ICCID}"
    owner_phone: "{PHONE}"
storage:
  path: {tmp_path}/data/metrics.db
health:
  listen_addr: 127.0.0.1:9
host:
  procfs: {procfs}
  sysfs: {sysfs}
modem:
  mmcli_path: {bin_dir}/mmcli-fake
""")
    bundle = tmp_path / "diag.tar.gz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELABOX_METRICS_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(APP))
    p = subprocess.run([sys.executable, "-m", "belabox_metrics", "diagnose", "--config", str(cfg),
                        "--bundle", str(bundle), "--rate-seconds", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr  # not running
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"
    files = {}
    with tarfile.open(bundle) as tar:
        for m in tar.getmembers():
            files[m.name.split("/", 1)[1]] = tar.extractfile(m).read().decode()
    for name in ("report.txt", "report.json", "config-effective.yaml", "udev-db.txt", "mmcli/list.json",
                 "mmcli/modem-0.json", "journal.txt", "spool.json", "MANIFEST.txt", "hardware/profile.json",
                 "hardware/sysfs/class/net/eth0/address", "hardware/sysfs/class/thermal/thermal_zone0/temp",
                 "hardware/procfs/meminfo"):
        assert name in files, f"{name} missing; have {sorted(files)}"
    leaks = [(name, s) for name, text in files.items() for s in SECRETS if s.lower() in text.lower()]
    assert not leaks, leaks
    # What support needs is still there.
    modem = json.loads(files["mmcli/modem-0.json"])["modem"]
    assert modem["generic"]["model"] == "EG25-G" and modem["3gpp"]["operator-name"] == "Vodafone.de"
    assert "ID_MM_CANDIDATE=1" in files["udev-db.txt"] and "<redacted>" in files["udev-db.txt"]
    assert "upload failed: 401" in files["journal.txt"]
    assert "fleet:<redacted>@127.0.0.1:9" in files["config-effective.yaml"]
    assert "soc-thermal" in files["hardware/sysfs/class/thermal/thermal_zone0/type"]
    assert "Service    not running" in files["report.txt"]


def test_bundle_from_a_streaming_board_carries_none_of_belauis_secrets(tmp_path):
    """The Orange Pi tree runs a stream and holds belaUI's config.json with a planted password
    hash, SSH hash, cloud key, stream id and relay address (issue 8): none may reach the bundle."""
    board = APP.parent / "hardware" / "rk3588-orangepi5plus"
    belaui = json.loads((board / "root/opt/belaUI/config.json").read_text())
    planted = [belaui[k] for k in ("password_hash", "ssh_pass_hash", "remote_key", "srt_streamid", "srtla_addr")]
    assert all("PLANTED" in s.upper() for s in planted)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""device_id: box-2
storage:
  path: {tmp_path}/data/metrics.db
health:
  listen_addr: 127.0.0.1:9
host:
  procfs: {board / "proc"}
  sysfs: {board / "sys"}
  rootfs: {board / "root"}
belabox:
  belaui_dir: /opt/belaUI
  kernel_events: false
modem:
  mmcli_path: {tmp_path}/no-mmcli
""")
    bundle = tmp_path / "diag.tar.gz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELABOX_METRICS_")}
    env["PYTHONPATH"] = str(APP)
    p = subprocess.run([sys.executable, "-m", "belabox_metrics", "diagnose", "--config", str(cfg),
                        "--bundle", str(bundle), "--rate-seconds", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert bundle.exists(), p.stderr
    with tarfile.open(bundle) as tar:
        texts = {m.name: tar.extractfile(m).read().decode(errors="replace") for m in tar.getmembers() if m.isfile()}
    assert any("belabox_" in t or "belacoder" in t for t in texts.values()), "the stream was not seen at all"
    leaks = [(name, s) for name, t in texts.items() for s in planted if s.lower() in t.lower()]
    leaks += [("stdout/stderr", s) for s in planted if s in p.stdout + p.stderr]
    assert not leaks, leaks
