"""Fixtures for the image tests: the built layer, cached root filesystems, layer tooling."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.image import rootfs

REPO = rootfs.REPO
BUILD = REPO / "image" / "build"
APPLY = REPO / "image" / "apply"


def run(argv, *, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output captured; a failure shows the command's stderr."""
    kw.setdefault("capture_output", True)
    res = subprocess.run([str(a) for a in argv], text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}",
                    pytrace=False)
    return res


class Layer:
    def __init__(self, out: Path, version: str):
        self.out = out
        self.version = version
        self.deb = out / f"belabox-metrics_{version}_all.deb"
        self.tar = out / f"belabox-metrics-layer_{version}.tar"


MAINTAINER_ENV = {"DEBFULLNAME": "BELABOX Test Maintainer", "DEBEMAIL": "maintainer@belabox-metrics.example.com"}


def build_layer(out: Path, version: str | None = None) -> Layer:
    argv = [BUILD, "--out", out] + (["--version", version] if version else [])
    run(argv, timeout=120, env={**os.environ, **MAINTAINER_ENV})
    if version is None:
        version = run(["awk", '-F"', '/^version *=/{print $2; exit}', REPO / "pyproject.toml"]).stdout.strip()
    layer = Layer(out, version)
    assert layer.deb.is_file() and layer.tar.is_file()
    return layer


@pytest.fixture(scope="session")
def layer(tmp_path_factory) -> Layer:
    """The .deb and layer tarball of this checkout, built once per session."""
    return build_layer(tmp_path_factory.mktemp("dist"))


def _tarball(arch, variant, packages):
    try:
        return rootfs.rootfs_tarball(arch, variant, packages)
    except rootfs.RootfsError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def amd64_tarball() -> Path:
    return _tarball("amd64", "minbase", rootfs.AMD64_PACKAGES)


@pytest.fixture(scope="session")
def amd64_template(tmp_path_factory, amd64_tarball) -> Path:
    """The amd64 rootfs extracted once; tests get copy-on-write views of it (fresh_root)."""
    dest = rootfs.extract(amd64_tarball, tmp_path_factory.mktemp("template") / "root")
    yield dest
    rootfs.remove_tree(dest)


@pytest.fixture
def fresh_root(tmp_path, amd64_template):
    """A factory of fresh amd64 root filesystems, removed after the test.

    Each is an overlayfs view of the session's extracted template, so a test may change
    anything without paying for another extraction (several seconds here); where overlay
    mounts are not possible it is a full extraction.
    """
    made = []

    def make(name: str = "root", *, copy_on_write: bool = True) -> Path:
        """copy_on_write=False extracts a real tree: booted agents see an overlay root as
        volatile (from inside the container its upper layer looks like it is on tmpfs)."""
        dest = tmp_path / name
        made.append(dest)
        if copy_on_write and rootfs.overlay(amd64_template, dest):
            return dest
        return rootfs.extract(rootfs.tarball_of(amd64_template), dest)

    yield make
    for d in made:
        rootfs.remove_tree(d)
        rootfs.remove_tree(d.with_name(d.name + ".cow"))


@pytest.fixture(scope="session")
def applied_root(tmp_path_factory, amd64_template) -> Path:
    """One amd64 root with the layer applied, shared by read-only checks (do not modify)."""
    dest = tmp_path_factory.mktemp("applied") / "root"
    if not rootfs.overlay(amd64_template, dest):
        rootfs.extract(rootfs.tarball_of(amd64_template), dest)
    run([APPLY, dest])
    yield dest
    rootfs.remove_tree(dest)
    rootfs.remove_tree(dest.with_name(dest.name + ".cow"))


def shell_scripts() -> list[Path]:
    """Every shell script of scripts/, image/ and overlays/, found by its shebang."""
    found = []
    for top in ("scripts", "image", "overlays"):
        for p in sorted((REPO / top).rglob("*")):
            if not p.is_file():
                continue
            with open(p, "rb") as fh:
                first = fh.readline(200)
            if first.startswith(b"#!") and any(s in first for s in (b"/sh", b"bash", b"dash")):
                found.append(p)
    return found


def is_root() -> bool:
    return os.geteuid() == 0
