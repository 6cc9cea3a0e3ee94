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
