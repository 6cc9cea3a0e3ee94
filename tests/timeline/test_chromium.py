"""The HTML timeline in a real headless Chromium (Debian's ``chromium``; never skipped).

The page records its own script errors on ``<html data-js-errors>`` (window error events
and console.error); ``--dump-dom`` returns the DOM after the scripts ran, so the test
reads them there, and also checks Chromium's own console log on stderr. ``#selftest``
makes the page move the mouse over every plot and write the hover read-outs into the DOM.
The screenshot is kept under var/test-artifacts/timeline/.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
from html import unescape

import pytest

from belabox_metrics.timeline import html as th
from belabox_metrics.timeline.history import parse_history
from belabox_metrics.timeline.rows import build_rows
from tests.timeline.make_sample_history import make_history

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "timeline"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
TIMEOUT = 90


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium "
                    "(Debian package 'chromium', listed in scripts/test's APT_PACKAGES)")
    return CHROMIUM


def run_chromium(binary: str, tmp: pathlib.Path, url: str, *extra: str) -> tuple[str, str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    # Own session, so a hang is ended by killing exactly the process group started here.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "HOME": str(tmp)})
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT}s: {err[-2000:]}")
    if proc.returncode != 0:
        pytest.fail(f"chromium exited {proc.returncode}: {err[-2000:]}")
    return out, err


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]


def write_page(tmp: pathlib.Path, name: str, page: str) -> pathlib.Path:
    path = tmp / name
    path.write_text(page, encoding="utf-8")
    return path


@pytest.mark.slow
def test_page_loads_without_errors_one_plot_per_row_and_hover_reads_values(chromium, tmp_path):
    history = make_history(1)
    path = write_page(tmp_path, "timeline.html", th.render_html(history))
    dom, err = run_chromium(chromium, tmp_path, path.as_uri() + "#selftest", "--dump-dom")
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-js-errors" not in html_tag, html_tag
    assert console_lines(err) == []
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the page's script did not run to its end"

    rows = build_rows(parse_history(history), include_other=True)
    plots = [unescape(k) for k in re.findall(r'<svg class="plot[^"]*" data-series="([^"]*)"', dom)]
    assert plots == [r.key for r in rows] and len(plots) == len(rows) >= 20

    readouts = unescape(re.search(r'<pre id="selftest">([^<]*)</pre>', dom).group(1)).split("\n")
    assert len(readouts) == len(rows)
    for row, text in zip(rows, readouts, strict=True):
        assert text.startswith("2026-12-07 14:59:58 UTC  ") and f"  {row.title}: " in text
        assert "no data" not in text, text
    by_title = {r.title: t for r, t in zip(rows, readouts, strict=True)}
    assert by_title["stream up"].endswith("stream up: up")
    assert re.search(r"wwan0 lte RSRP: -9\d(\.\d)?( to -9\d(\.\d)?)? dBm$", by_title["wwan0 lte RSRP"])


@pytest.mark.slow
def test_a_script_error_is_seen(chromium, tmp_path):
    # The detector itself must be able to fail: the same page with a broken read-out script.
    page = th.render_html(make_history(1)).replace(th.SCRIPT, "no_such_function();")
    path = write_page(tmp_path, "broken.html", page)
    dom, err = run_chromium(chromium, tmp_path, path.as_uri(), "--dump-dom")
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "no_such_function is not defined" in html_tag
    assert 'data-ready="1"' not in dom


@pytest.mark.slow
def test_screenshot_is_kept(chromium, tmp_path):
    path = write_page(tmp_path, "timeline.html", th.render_html(make_history(1)))
    shot = tmp_path / "timeline.png"
    run_chromium(chromium, tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,2000",
                 "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / "timeline-1h.png"
    shutil.copyfile(shot, kept)
    print(f"screenshot: {kept}")
