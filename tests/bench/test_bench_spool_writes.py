"""The write benchmark still runs (a few cycles; the real run is scripts/bench)."""

from __future__ import annotations

import re

import pytest

from tests.bench import bench_spool_writes as bench


def test_write_bytes_reads_the_given_procfs(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "io").write_text("rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\n")
    assert bench.write_bytes(str(tmp_path)) == 8192
    (tmp_path / "self" / "io").write_text("rchar: 10\n")
    with pytest.raises(RuntimeError, match="write_bytes"):
        bench.write_bytes(str(tmp_path))


def test_short_run_prints_both_layouts_and_their_ratio(tmp_path, capsys):
    bench.main(["--cycles", "24", "--decode-samples", "3000", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d+)s\s+(.+?)\s+([\d.]+)\s+([\d.]+)x", out, re.M)
    assert {name.strip() for _, name, _, _ in rows} == {
        "spool (row per batch)", "spool, shared -shm index", "row per sample + indexes"}
    per_sample = [float(mb) for _, name, mb, _ in rows if name.startswith("row per sample")]
    ours = [float(mb) for _, name, mb, _ in rows if name.startswith("spool (row")]
    assert all(p > o > 0 for p, o in zip(per_sample, ours, strict=True))
    assert re.search(r"decode: [\d,]+ samples/s", out)
