"""image/build: the .deb (metadata, contents, lintian) and the layer tarball with the same tree."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile

from tests.image.conftest import REPO, build_layer, run

DEPENDS = ["python3 (>= 3.10)", "python3-yaml", "python3-psutil", "python3-requests", "python3-pyudev",
           "python3-jsonschema", "python3-sdnotify"]


def control(deb) -> dict[str, str]:
    text = run(["dpkg-deb", "--field", deb]).stdout
    return dict(re.findall(r"^([\w-]+): (.*)$", text, re.M))


def deb_members(deb) -> dict[str, tuple[str, str]]:
    """path -> (mode string, owner) from dpkg-deb --contents."""
    out = {}
    for line in run(["dpkg-deb", "--contents", deb]).stdout.splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        out[path.removeprefix("./").rstrip("/")] = (parts[0], parts[1])
    return out


def test_deb_metadata(layer):
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{layer.version}"' in pyproject
    c = control(layer.deb)
    assert c["Package"] == "belabox-metrics"
    assert c["Version"] == layer.version
    assert c["Architecture"] == "all"
    depends = [d.strip() for d in c["Depends"].split(",")]
    for dep in DEPENDS:
        assert dep in depends, f"missing Depends: {dep}"
    info = run(["dpkg-deb", "--info", layer.deb, "conffiles"]).stdout.split()
    assert info == ["/etc/belabox-metrics/config.yaml"]


def test_deb_contents(layer):
    members = deb_members(layer.deb)
    must = [
        "usr/bin/metrics-collector",
        "usr/lib/python3/dist-packages/belabox_metrics/commands/cli.py",
        "usr/lib/python3/dist-packages/belabox_metrics/config/config.schema.json",
        "usr/lib/systemd/system/metrics-collector.service",
        "usr/lib/systemd/system/metrics-collector-firstboot.service",
        "usr/lib/systemd/system-preset/80-belabox-metrics.preset",
        "usr/lib/sysusers.d/belabox-metrics.conf",
        "usr/lib/tmpfiles.d/belabox-metrics.conf",
        "usr/libexec/belabox-metrics/firstboot",
        "etc/belabox-metrics/config.yaml",
        "usr/share/doc/belabox-metrics/copyright",
    ]
    for path in must:
        assert path in members, path
    assert members["usr/bin/metrics-collector"][0] == "-rwxr-xr-x"
    assert members["usr/libexec/belabox-metrics/firstboot"][0] == "-rwxr-xr-x"
    assert members["etc/belabox-metrics/config.yaml"] == ("-rw-r-----", "root/root")
    assert all(owner == "root/root" for _, owner in members.values())
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in members)
    # /etc holds only the config: vendor files live under /usr/lib.
    assert {p for p in members if p.startswith("etc/")} == {"etc/belabox-metrics", "etc/belabox-metrics/config.yaml"}
    # The board profiles, where hardware.py looks for them on a device.
    for profile in (REPO / "hardware").glob("*/profile.yaml"):
        assert f"usr/lib/belabox-metrics/hardware/{profile.parent.name}/profile.yaml" in members, profile
    assert not any(p.startswith("usr/lib/belabox-metrics/hardware/") and p.count("/") > 5 for p in members), \
        "only profile.yaml files are shipped, not the recorded test trees"
    # Every module of the package is shipped.
    for py in (REPO / "app/belabox_metrics").rglob("*.py"):
        rel = py.relative_to(REPO / "app")
        if "__pycache__" not in rel.parts:
            assert f"usr/lib/python3/dist-packages/{rel}" in members, rel


def test_wrapper_runs_the_package(layer, tmp_path):
    run(["dpkg-deb", "-x", layer.deb, tmp_path])
    wrapper = (tmp_path / "usr/bin/metrics-collector").read_text()
    assert wrapper.startswith("#!/usr/bin/python3\n")
    res = subprocess.run(["/usr/bin/python3", tmp_path / "usr/bin/metrics-collector", "--version"],
                         env={"PYTHONPATH": str(tmp_path / "usr/lib/python3/dist-packages")},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"metrics-collector {layer.version}"


def test_lintian_is_clean(layer):
    res = subprocess.run(["lintian", "--fail-on", "error,warning", "--display-info", layer.deb],
                         capture_output=True, text=True, timeout=300)
    tags = [line for line in res.stdout.splitlines() if re.match(r"^[EWIXP]: ", line)]
    assert res.returncode == 0 and not tags, "\n".join(tags) or res.stderr


def test_lintian_overrides_are_justified():
    text = (REPO / "image/lintian-overrides").read_text().splitlines()
    for i, line in enumerate(text):
        if line.startswith("belabox-metrics:"):
            j = i - 1
            while j >= 0 and text[j].startswith("belabox-metrics:"):
                j -= 1  # a group of overrides shares the comment above it
            assert j > 1 and text[j].startswith("#") and len(text[j]) > 20, \
                f"override without a justification comment: {line}"


def test_layer_tarball_holds_the_same_tree_as_the_deb(layer):
    deb = deb_members(layer.deb)
    with tarfile.open(layer.tar) as tf:
        tar = {m.name.removeprefix("./").rstrip("/"): m for m in tf.getmembers()}
    deb.pop("", None)
    tar.pop(".", None)
    tar.pop("", None)
    assert set(tar) == set(deb)
    for path, member in tar.items():
        assert (member.uid, member.gid) == (0, 0), path
        mode = deb[path][0]
        assert oct(member.mode & 0o7777)[2:] == oct(_mode_bits(mode))[2:], path


def _mode_bits(text: str) -> int:
    bits = 0
    for ch, bit in zip(text[1:], (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1), strict=True):
        if ch != "-":
            bits |= bit
    return bits


def test_builds_are_reproducible(layer, tmp_path):
    again = build_layer(tmp_path)
    for a, b in ((layer.deb, again.deb), (layer.tar, again.tar)):
        assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest(), a.name


def test_version_override(tmp_path):
    other = build_layer(tmp_path, version="9.8.7")
    assert control(other.deb)["Version"] == "9.8.7"


def test_relative_stage_and_out_paths_stay_where_they_are_given(tmp_path):
    # Staging cds into app/; a relative path must not end up inside the checkout.
    run([REPO / "image/build", "--stage", "staged"], cwd=tmp_path)
    assert (tmp_path / "staged/usr/bin/metrics-collector").is_file()
    run([REPO / "image/build", "--out", "dist"], cwd=tmp_path)
    assert list((tmp_path / "dist").glob("*.deb"))
    assert subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "app"],
                          capture_output=True, text=True).stdout == ""
