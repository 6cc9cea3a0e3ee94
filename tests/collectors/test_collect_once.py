"""`metrics-collector collect --once` as a user runs it: exit codes, selection, errors."""

from __future__ import annotations

from tests.collectors.support import HARDWARE, collect_once, parse_text

TREE = HARDWARE / "rk3588-rock5b"


def test_only_the_named_collectors_run_even_when_disabled_in_config(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("collectors:\n  thermal:\n    enabled: false\n")
    run = collect_once(TREE, "--config", str(cfg), "--collector", "thermal", "--collector", "loadavg")
    assert run.returncode == 0, run.stderr
    names = {name for name, _ in parse_text(run.stdout)}
    assert "node_thermal_zone_temp" in names and "node_load1" in names
    assert not [n for n in names if n.startswith(("node_cpu", "node_memory", "node_network"))]


def test_disabled_collector_is_skipped_in_a_full_cycle(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("collectors:\n  thermal:\n    enabled: false\n")
    run = collect_once(TREE, "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    names = {name for name, _ in parse_text(run.stdout)}
    assert "node_thermal_zone_temp" not in names and "node_cpu_seconds_total" in names


def test_unknown_collector_is_a_usage_error():
    run = collect_once(TREE, "--collector", "gpu")
    assert run.returncode == 2
    assert run.stderr.startswith("unknown collector 'gpu'; known: cpu, cpufreq,")
    assert "Traceback" not in run.stderr


def test_config_error_exits_78_with_one_line_per_problem(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("collection_interval: soon\nnetwork:\n  max_interfaces: -1\n")
    run = collect_once(TREE, "--config", str(cfg))
    assert run.returncode == 78
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("config.yaml: ") for line in lines), lines
    assert run.stdout == ""


def test_a_failing_collector_is_reported_and_the_rest_still_print(tmp_path):
    # A tree without /proc/stat: cpu and loadavg fail, meminfo still reports.
    tree = tmp_path / "t"
    (tree / "proc").mkdir(parents=True)
    (tree / "sys").mkdir()
    (tree / "proc/meminfo").write_text("MemTotal: 1000 kB\n")
    run = collect_once(tree, "--collector", "cpu", "--collector", "meminfo")
    assert run.returncode == 0
    assert 'node_memory_MemTotal_bytes 1024000' in run.stdout
    assert run.stderr.startswith("collector.cpu: error: FileNotFoundError:")
    assert "Traceback" not in run.stderr
