from belabox_metrics.health.exposition import format_samples, format_value
from belabox_metrics.samples import Sample, sample


def test_sorted_typed_escaped_and_deduplicated():
    text = format_samples([
        sample("node_load1", 0.5),
        sample("node_network_info", 1, {"device": "wwan0", "ifalias": 'say "hi"\\\n'}),
        sample("node_cpu_seconds_total", 12.5, {"mode": "idle", "cpu": "1"}),
        sample("node_cpu_seconds_total", 3, {"mode": "idle", "cpu": "0"}),
        sample("node_load1", 0.75),
    ])
    assert text == (
        "# TYPE node_cpu_seconds_total counter\n"
        'node_cpu_seconds_total{cpu="0",mode="idle"} 3\n'
        'node_cpu_seconds_total{cpu="1",mode="idle"} 12.5\n'
        "# TYPE node_load1 gauge\n"
        "node_load1 0.75\n"
        "# TYPE node_network_info gauge\n"
        'node_network_info{device="wwan0",ifalias="say \\"hi\\"\\\\\\n"} 1\n'
    )
    assert format_samples([]) == ""


def test_values():
    assert format_value(float("nan")) == "NaN"
    assert format_value(float("inf")) == "+Inf" and format_value(float("-inf")) == "-Inf"
    assert format_value(18446744073709551615.0) == "1.8446744073709552e+19"
    assert format_value(1e15) == "1000000000000000"
    assert format_value(-273.15) == "-273.15"


def test_timestamps_only_when_asked():
    s = Sample("up", (), 1.0, 1700000000123)
    assert format_samples([s]).endswith("up 1\n")
    assert format_samples([s], with_timestamps=True).endswith("up 1 1700000000123\n")


def test_help_lines_only_when_asked_and_for_every_family():
    from belabox_metrics.health.metric_help import HELP, help_text

    samples = [sample("node_load1", 0.5), sample("node_memory_MemAvailable_bytes", 1),
               sample("belabox_made_up_thing", 2), sample("metrics_collector_uploaded_samples_total", 3)]
    assert "# HELP" not in format_samples(samples)
    text = format_samples(samples, with_help=True)
    assert "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\n" in text
    assert "# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.\n" in text
    assert "# HELP belabox_made_up_thing BELABOX series made_up_thing.\n" in text
    assert text.count("# HELP ") == text.count("# TYPE ") == 4
    assert help_text("something_else") == "Series something_else."
    assert all(v and "\n" not in v for v in HELP.values())
