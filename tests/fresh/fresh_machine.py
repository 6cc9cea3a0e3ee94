"""The README's two commands on a fresh Debian 12 machine, with nothing installed by hand.

Run with ``scripts/test --fresh-machine`` (about 10-15 minutes). Not part of the normal suite:
the file name does not match ``test_*.py``, so pytest collects it only when named.

What happens:
1. A minimal Debian 12 root (``mmdebstrap --variant=minbase``: no python3, no curl, no
   VictoriaMetrics) is built once and cached as a tarball under var/cache/image (tests/image's
   cache); every run extracts a clean copy of it.
2. ``git archive HEAD`` of this checkout is copied to /srv/belabox-metrics in it (committed
   state only: uncommitted edits are not part of the check).
3. Under ``systemd-nspawn`` (host network, so apt reaches the Debian mirror and the pytest subset
   its loopback ports) tests/fresh/inside.sh runs, as root, exactly what a user types:
   ``scripts/run-local`` until it reports the first upload and prints where to look (then
   SIGTERM, as Ctrl-C), then ``scripts/test SUBSET``, which installs the test packages, makes
   .venv, pip-installs requirements-test.txt and runs the subset; then chromium renders a page.
4. This test checks the results written to a bound folder.

Carried over from the host, and nothing else: the Debian mirror (from this machine's apt sources,
plus the usual bookworm-updates and bookworm-security), and, when the host sets PIP_CERT,
SSL_CERT_FILE or REQUESTS_CA_BUNDLE, that CA bundle as PIP_CERT (a network that intercepts TLS,
as this sandbox's does, needs its CA for pip to reach PyPI; a real fresh machine on an open
network needs none).

The subset (SUBSET below; BELABOX_FRESH_PYTEST_ARGS replaces it) covers every kind of real part
that runs inside a container: pure unit tests, VictoriaMetrics + the agent end to end, /metrics
parsed by prometheus_client (pip), node_exporter side by side, umockdev, dbusmock + mmcli,
openssl for the TLS test, the .deb build with lintian, shellcheck. Left out, because a container
cannot give them or they would double the time: tests/image's mmdebstrap/chroot/nspawn-boot/arm64
tests (nested mmdebstrap needs mount and binfmt_misc registration on the shared kernel, and
loop devices, which nspawn does not give; so also test_paths' ext4 loop mount and
test_timekeeping's adjtimex probe, which nspawn's seccomp filter refuses), tests/reliability
(minutes, nothing setup-related), and test_build's check that the build leaves ``git status``
clean (a git archive has no .git).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.image import rootfs
from tests.support.vm import free_port

REPO = rootfs.REPO
# Not under /root (mode 700): test_config runs the CLI as nobody from the checkout.
SRC = "/srv/belabox-metrics"
NSPAWN_TIMEOUT = 1800
SUBSET = [
    "-q", "-p", "no:cacheprovider",
    "tests/unit",
    "tests/integration/test_run_e2e.py::test_run_delivers_samples_with_names_labels_and_times",
    "tests/integration/test_metrics_page.py",
    "tests/integration/test_upload_http.py::test_tls_is_verified_and_an_untrusted_certificate_sends_nothing",
    "tests/collectors/test_node_exporter_compat.py",
    "tests/devices/test_umockdev.py",
    "tests/devices/test_modem_mm.py",
    "tests/image/test_build.py",
    "--deselect", "tests/image/test_build.py::test_relative_stage_and_out_paths_stay_where_they_are_given",
    "tests/image/test_shellcheck.py",
    # What a container cannot give: a loop device to mount, and adjtimex (nspawn's seccomp filter).
    "--deselect", "tests/unit/test_paths.py::test_persistent_ext4_accepted_and_folder_created",
    "--deselect", "tests/unit/test_timekeeping.py::test_real_kernel_probe_answers",
]


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.fail("the fresh-machine check builds a root filesystem and runs systemd-nspawn: run it as root",
                    pytrace=False)
    for tool in ("mmdebstrap", "systemd-nspawn", "git", "tar"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing on this machine (scripts/test installs it)", pytrace=False)
    if not (REPO / ".git").exists():
        pytest.fail(f"{REPO} is not a git checkout: the check copies `git archive HEAD`", pytrace=False)


def _sources(mirror: str) -> str:
    security = "http://deb.debian.org/debian-security"
    return (f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
            f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
            f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def _network_ca() -> Path | None:
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def _prepare(root: Path) -> list[str]:
    """Debian sources, the checkout and the network's CA; the nspawn --setenv options."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(_sources(rootfs.debian_mirror()))
    src = root / SRC.lstrip("/")
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"],
                             capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True, timeout=120)
    env = []
    ca = _network_ca()
    if ca is not None:
        shutil.copyfile(ca, root / "etc/fresh-check-network-ca.pem")
        env.append("--setenv=PIP_CERT=/etc/fresh-check-network-ca.pem")
    return env


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else f"({path.name} missing)"


@pytest.mark.timeout(NSPAWN_TIMEOUT + 600)
def test_fresh_debian12_runs_run_local_and_scripts_test(tmp_path):
    _require_host()
    try:
        # apt is in minbase anyway: rootfs_tarball always passes --include, which must not be empty.
        tarball = rootfs.rootfs_tarball("amd64", "minbase", ("apt",))
    except rootfs.RootfsError as e:
        pytest.fail(str(e), pytrace=False)
    root = rootfs.extract(tarball, tmp_path / "root")
    out = tmp_path / "out"
    out.mkdir()
    try:
        # Fresh means fresh: none of what the scripts install is there before they run.
        for absent in ("usr/bin/python3", "usr/bin/curl", "usr/bin/victoria-metrics", "usr/bin/git"):
            assert not (root / absent).exists(), f"{absent} in the minimal root"
        env = _prepare(root)
        pytest_args = os.environ.get("BELABOX_FRESH_PYTEST_ARGS") or " ".join(SUBSET)
        argv = ["timeout", "--kill-after=30", str(NSPAWN_TIMEOUT), "systemd-nspawn", "-q", "--register=no",
                "--keep-unit", "-D", str(root), f"--bind={out}:/out", f"--chdir={SRC}",
                f"--setenv=FRESH_VM_PORT={free_port()}", f"--setenv=FRESH_HEALTH_PORT={free_port()}",
                f"--setenv=FRESH_PYTEST_ARGS={pytest_args}", *env, "--", "/bin/sh", "tests/fresh/inside.sh"]
        started = time.monotonic()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=NSPAWN_TIMEOUT + 120,
                             stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        steps = _read(out / "steps")
        print(f"fresh machine: {took:.0f}s in the container; steps (seconds since start):\n{steps}")
        report = (f"nspawn rc {res.returncode} after {took:.0f}s\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}\n"
                  f"steps:\n{steps}\nrun-local.log (tail):\n{_read(out / 'run-local.log')[-4000:]}\n"
                  f"pytest.log (tail):\n{_read(out / 'pytest.log')[-6000:]}")

        # 1. run-local set itself up, uploaded, said where to look, and stopped cleanly.
        log = _read(out / "run-local.log")
        assert "run-local: installing:" in log and "victoria-metrics" in log, report
        assert "run-local: first upload arrived" in log, report
        for what in ("health:", "metrics:", "query:", "export:"):
            assert f"  {what}" in log, report
        assert _read(out / "run-local.rc").strip() == "0", report
        query = json.loads(_read(out / "query.json") or "null") if (out / "query.json").exists() else None
        assert query and query["status"] == "success" and query["data"]["result"], report
        assert query["data"]["result"][0]["metric"]["__name__"] == "node_load1", report

        # 2. scripts/test installed what the tests need and the subset passed.
        tests_log = _read(out / "pytest.log")
        assert "scripts/test: installing:" in tests_log, report
        assert _read(out / "pytest.rc").strip() == "0", report
        # pytest's last line, e.g. "500 passed, 9 deselected in 75.00s" (apt's own output may say "failed").
        summary = tests_log.strip().splitlines()[-1] if tests_log.strip() else ""
        assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"\b(failed|error)", summary), report

        # 3. chromium (installed by scripts/test for headless HTML) starts and renders.
        html = _read(out / "chromium.html")
        assert 'id="fresh"' in html and "rendered" in html, f"{report}\nchromium: {_read(out / 'chromium.err')}"
        assert res.returncode == 0, report
    finally:
        rootfs.remove_tree(root)
