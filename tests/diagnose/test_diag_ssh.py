"""scripts/diag-ssh against a fake ssh/scp that run the "remote" side locally (no network)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import APP, REPO

SCRIPT = REPO / "scripts" / "diag-ssh"

FAKE_SSH = """#!/bin/sh
printf 'ssh %s\\n' "$*" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do
    case "$1" in -o|-p|-l|-i) shift 2 ;; -*) shift ;; *) break ;; esac
done
[ "${FAKE_SSH_DOWN:-0}" = 1 ] && { echo "ssh: connect to host: Connection timed out" >&2; exit 255; }
shift  # the target
exec sh -c "$*"
"""
FAKE_SCP = """#!/bin/sh
printf 'scp %s\\n' "$*" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do
    case "$1" in -o|-P) shift 2 ;; -*) shift ;; *) break ;; esac
done
cp "${1#*:}" "$2"
"""
FAKE_ID = """#!/bin/sh
if [ "${1:-}" = "-u" ]; then echo 1000; else exec /usr/bin/id "$@"; fi
"""
FAKE_SUDO = """#!/bin/sh
printf 'sudo %s\\n' "$*" >> "$FAKE_LOG"
[ "$1" = "-n" ] || { echo "sudo: expected -n" >&2; exit 1; }
shift
exec "$@"
"""


@pytest.fixture
def box(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"ssh": FAKE_SSH, "scp": FAKE_SCP, "id": FAKE_ID, "sudo": FAKE_SUDO,
               "metrics-collector": f'#!/bin/sh\nexec "{sys.executable}" -m belabox_metrics "$@"\n'}
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage:\n  path: {tmp_path}/data/metrics.db\nhealth:\n  listen_addr: 127.0.0.1:9\n"
                   f"host:\n  procfs: {tmp_path}/none\n  sysfs: {tmp_path}/none\n"
                   f"modem:\n  mmcli_path: {tmp_path}/no-mmcli\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELABOX_METRICS_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(APP), BELABOX_METRICS_CONFIG=str(cfg),
               FAKE_LOG=str(tmp_path / "log"), NO_COLOR="1")
    return tmp_path, env


def _run(env, *args, cwd):
    return subprocess.run(["sh", str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_report_over_ssh(box):
    tmp, env = box
    out = tmp / "out"
    p = _run(env, "belabox.local", "-o", str(out), cwd=tmp)
    assert p.returncode == 2, p.stderr  # diagnose's own code: nothing runs on this "box"
    assert "Service    not running" in p.stdout
    saved = glob.glob(str(out / "belabox-diag-belabox.local-*.txt"))
    assert len(saved) == 1 and "not running" in Path(saved[0]).read_text()
    log = (tmp / "log").read_text()
    assert "-o BatchMode=yes -o ConnectTimeout=10 user@belabox.local" in log
    assert "sudo -n metrics-collector diagnose" in log  # the login user is not root here


def test_bundle_over_ssh_is_copied_back_and_cleaned_up(box):
    tmp, env = box
    before = set(glob.glob("/tmp/belabox-diag.*"))
    p = _run(env, "root@10.1.2.3", "--bundle", "-p", "2222", "-o", str(tmp / "out"), cwd=tmp)
    assert p.returncode == 2, p.stderr
    bundles = glob.glob(str(tmp / "out" / "belabox-diag-10.1.2.3-*.tar.gz"))
    assert len(bundles) == 1
    with tarfile.open(bundles[0]) as tar:
        names = [os.path.basename(n) for n in tar.getnames()]
    assert "report.txt" in names and "MANIFEST.txt" in names
    assert set(glob.glob("/tmp/belabox-diag.*")) == before, "the remote temp dir was left behind"
    log = (tmp / "log").read_text()
    assert "root@10.1.2.3" in log and "-p 2222" in log and "-P 2222" in log


def test_unreachable_host_is_255(box):
    tmp, env = box
    env["FAKE_SSH_DOWN"] = "1"
    for args in (("box",), ("box", "--bundle")):
        p = _run(env, *args, "-o", str(tmp / "out"), cwd=tmp)
        assert p.returncode == 255
        assert "cannot reach user@box" in p.stderr


def test_shellcheck_clean():
    p = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
