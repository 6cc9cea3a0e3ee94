"""image/build: the .deb (metadata, contents, lintian) and the layer tarball with the same tree."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile

from tests.image.conftest import REPO, build_layer, run

DEPENDS = ["python3 (>= 3.10)", "python3-yaml", "python3-requests", "python3-pyudev",
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
    assert c["Recommends"] == "modemmanager"
    assert c["Maintainer"] == "BELABOX Test Maintainer <maintainer@belabox-metrics.example.com>"
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
        "usr/lib/systemd/system/metrics-collector-provision.service",
        "usr/share/bash-completion/completions/metrics-collector",
        "usr/lib/belabox-metrics/boards/rk3588-rock5b/usr/lib/systemd/system/metrics-collector.service.d/"
        "50-rk3588-rock5b.conf",
        "usr/lib/belabox-metrics/boards/jetson-nano/usr/lib/tmpfiles.d/belabox-metrics-jetson-nano.conf",
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


def test_maintainer_comes_from_an_option_or_the_environment_or_the_build_stops(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBFULLNAME", "DEBEMAIL")}
    # No git identity either: a config-less HOME and no system config.
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    res = subprocess.run([REPO / "image/build", "--out", tmp_path / "a"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    assert res.stderr.strip() == 'build: error: no maintainer: pass --maintainer "Name <email>" or set ' \
                                 "DEBFULLNAME and DEBEMAIL"
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())
    run([REPO / "image/build", "--out", tmp_path / "b", "--maintainer", "Jo Doe <jo@example.com>"], env=env)
    assert control(next((tmp_path / "b").glob("*.deb")))["Maintainer"] == "Jo Doe <jo@example.com>"
    bad = subprocess.run([REPO / "image/build", "--out", tmp_path / "c", "--maintainer", "jo"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "is not of the form" in bad.stderr


def test_build_writes_only_into_its_output_folder(tmp_path):
    def tree():
        return {p: p.stat().st_mtime_ns for p in REPO.rglob("*")
                if p.is_file() and not {".git", "var", "__pycache__", ".pytest_cache", ".ruff_cache"} & set(p.parts)}
    before = tree()
    build_layer(tmp_path)
    assert tree() == before, "image/build changed the checkout"


def test_bash_completion_knows_every_command(layer, tmp_path):
    run(["dpkg-deb", "-x", layer.deb, tmp_path])
    script = tmp_path / "usr/share/bash-completion/completions/metrics-collector"
    probe = ('source "$1"; COMP_WORDS=(metrics-collector ""); COMP_CWORD=1; _metrics_collector; '
             'echo "${COMPREPLY[*]}"; COMP_WORDS=(metrics-collector check-config --j); COMP_CWORD=2; '
             '_metrics_collector; echo "${COMPREPLY[*]}"')
    out = run(["bash", "-c", probe, "-", script]).stdout.splitlines()
    for cmd in ("run", "check-config", "collect", "provision-import"):
        assert cmd in out[0].split(), out
    assert out[1] == "--json"


def test_preinst_refuses_an_old_python_with_one_line(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\n[ "$1" = -V ] && { echo "Python 3.8.10"; exit 0; }\nexit 1\n')
    (fake / "python3").chmod(0o755)
    res = subprocess.run(["sh", REPO / "image/debian/preinst", "install"], capture_output=True, text=True,
                         env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert res.returncode == 1
    assert res.stderr == "belabox-metrics: needs python3 >= 3.10; this system has Python 3.8.10\n"
    ok = subprocess.run(["sh", REPO / "image/debian/preinst", "install"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stderr == ""


def test_help_prints_the_usage_and_does_nothing(tmp_path):
    res = subprocess.run([REPO / "image/build", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("Build the image layer")
    assert "--maintainer" in res.stdout and not list(tmp_path.iterdir())
