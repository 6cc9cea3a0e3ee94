"""The provisioning seed booted for real: a FAT boot partition at /boot/firmware in nspawn.

Boot 1: a malformed seed is refused (note on the card, one journal line), the box boots and
spools. Boot 2: the corrected seed is imported before the collector starts, which uploads
with the seed's token, device_id and labels; the token leaves the card, a note stays. Then,
in the same boot, a rotated token is imported while the collector runs and reaches it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.image.conftest import run
from tests.image.test_boot import (  # noqa: F401 - backend is a fixture
    CONFIG,
    TOKEN,
    assert_collector_ready,
    backend,
    boot,
    device_ids,
    prepare,
    set_params,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED_TOKEN = "seed-token-0123456789abcdef"
ROTATED = "rotated-token-fedcba9876543210"


def fat_image(path: Path, files: dict[str, str]) -> Path:
    run(["mkfs.vfat", "-n", "BOOT", "-C", path, "8192"])
    for name, text in files.items():
        src = path.with_name(name)
        src.write_text(text)
        run(["mcopy", "-i", path, src, f"::/{name}"])
    return path


def fat_files(image: Path) -> dict[str, str]:
    names = run(["mdir", "-b", "-i", image, "::/"]).stdout.split()
    return {n.removeprefix("::/"): run(["mtype", "-i", image, n]).stdout for n in names}


class Mounted:
    """The FAT image mounted on the host, bound into the container at /boot/firmware. Through
    fusefat (Debian package fusefat), read-write: this kernel has no vfat module, and FUSE
    keeps the test away from loop devices."""

    def __init__(self, image: Path, mnt: Path):
        self.image, self.mnt = image, mnt

    def __enter__(self):
        self.mnt.mkdir(exist_ok=True)
        run(["fusefat", "-o", "rw+", self.image, self.mnt])
        return self.mnt

    def __exit__(self, *exc):
        # Right after the container exits the mount can still be busy for a moment.
        for _ in range(20):
            if subprocess.run(["fusermount", "-u", str(self.mnt)], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        subprocess.run(["umount", "-l", str(self.mnt)], check=False)


def test_seed_on_the_boot_partition(fresh_root, backend, tmp_path):  # noqa: F811 - the fixture
    vm, proxy = backend
    root = fresh_root(copy_on_write=False)
    out = tmp_path / "out"
    health_port = prepare(root, proxy, out)
    # The image ships spool-only; the seed says where to upload.
    raw = yaml.safe_load((root / CONFIG).read_text())
    raw["remote"]["url"] = ""
    (root / CONFIG).write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "boot/firmware").mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{proxy.port}/api/v1/import"
    good = (f"token: {SEED_TOKEN}\ndevice_id: seeded-box-1\n"
            f"remote:\n  url: {url}\n  extra_labels:\n    fleet: seeded\n")
    bad = good.replace("  url:", "  urll:")
    card = fat_image(tmp_path / "boot.vfat", {"belabox-metrics.yaml": bad})
    bind = f"--bind={tmp_path / 'mnt'}:/boot/firmware"

    # Boot 1: refused, still boots and spools.
    set_params(root, tag="bad", health_port=health_port, proxy_port=proxy.port, min_uploads=0)
    with Mounted(card, tmp_path / "mnt"):
        r1 = boot(root, out, "bad", bind)
    assert_collector_ready(r1)
    assert r1["provision"]["Result"] == "success", r1["provision"]
    assert "provision-import: refused /boot/firmware/belabox-metrics.yaml: belabox-metrics.yaml: " \
           "remote.urll: unknown key (did you mean 'url'?)" in r1["journal"], r1["journal"]
    assert r1["health"][1]["components"]["storage"]["details"]["persistence"] is True
    files = fat_files(card)
    assert files["belabox-metrics.yaml"] == bad, "a refused seed stays on the card to be fixed"
    assert "REFUSED" in files["belabox-metrics-imported.txt"]
    assert "remote.urll: unknown key" in files["belabox-metrics-imported.txt"]
    assert SEED_TOKEN not in files["belabox-metrics-imported.txt"]
    assert not proxy.requests, "nothing may be uploaded before a URL is provisioned"
    assert not (root / "etc/belabox-metrics/config.d").exists()
    assert (root / TOKEN).read_text().strip() != SEED_TOKEN  # first boot's random token

    # Boot 2: the corrected seed is imported before the collector starts.
    run(["mcopy", "-o", "-i", card, _write(tmp_path / "good.yaml", good), "::/belabox-metrics.yaml"])
    set_params(root, tag="good", health_port=health_port, proxy_port=proxy.port,
               reseed=f"token: {ROTATED}\n")
    with Mounted(card, tmp_path / "mnt"):
        r2 = boot(root, out, "good", bind)
    assert_collector_ready(r2)
    assert "provision-import: imported /boot/firmware/belabox-metrics.yaml: token sha256:" in r2["journal"]
    assert SEED_TOKEN not in r2["journal"] and ROTATED not in r2["journal"]
    first = [r["authorization"] for r in proxy.requests if r["method"] == "POST"]
    assert first[0] == f"Bearer {SEED_TOKEN}", "the collector did not start with the seed's token"
    assert device_ids(vm) == {"seeded-box-1"}
    assert {s["metric"].get("fleet") for s in vm.export('{device_id="seeded-box-1"}')} == {"seeded"}
    dropin = root / "etc/belabox-metrics/config.d/50-provision.yaml"
    assert yaml.safe_load(dropin.read_text())["remote"]["url"] == url

    # Rotation while running: the importer restarted the collector, which now sends the new token.
    reseed = r2["reseed"]
    assert reseed["rc"] == 0 and "metrics-collector.service try-restart" in reseed["stderr"], reseed
    assert reseed["after"] and reseed["uploads"], f"{reseed}\n{r2['journal']}"
    assert proxy.requests[-1]["authorization"] == f"Bearer {ROTATED}"
    assert (root / TOKEN).read_text() == ROTATED + "\n"

    files = fat_files(card)
    assert "belabox-metrics.yaml" not in files, "the token must leave the card"
    note = files["belabox-metrics-imported.txt"]
    assert "imported /boot/firmware/belabox-metrics.yaml" in note and SEED_TOKEN not in note and ROTATED not in note


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
