"""shellcheck on every shell script of scripts/, image/ and overlays/ (found by shebang)."""

from __future__ import annotations

import subprocess

from tests.image.conftest import REPO, shell_scripts


def test_shell_scripts_are_found():
    names = {str(p.relative_to(REPO)) for p in shell_scripts()}
    expected = {"scripts/flash", "image/build", "image/apply",
                "image/debian/postinst", "image/debian/prerm", "image/debian/postrm",
                "overlays/common/usr/libexec/belabox-metrics/firstboot"}
    assert expected <= names, expected - names


def test_shellcheck_passes():
    scripts = [str(p) for p in shell_scripts()]
    res = subprocess.run(["shellcheck", "--severity=style", *scripts], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_scripts_are_executable_and_strict():
    for p in shell_scripts():
        assert p.stat().st_mode & 0o111, f"{p} is not executable"
        head = p.read_text().splitlines()[:40]
        assert any(line.startswith("set -e") and "u" in line.split()[1] for line in head
                   if line.startswith("set -")), f"{p} lacks set -eu"
