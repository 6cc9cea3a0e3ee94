"""The /metrics parser reads what the agent serves, escapes and timestamps included."""

from __future__ import annotations

import math

from belabox_metrics.health.scrape import parse_exposition


def test_parse_exposition():
    text = ('# HELP x y\n# TYPE node_load1 gauge\nnode_load1 0.5\n'
            'node_network_receive_bytes_total{device="eth0",device_id="d1"} 1234 1700000000000\n'
            'belabox_modem_info{modem="ab",operator="Vodafone \\"DE\\"",technology="lte"} 1\n'
            'weird{a="1"} NaN\nbroken line here too\nnode_thermal_zone_temp{type="soc",zone="0"} +Inf\n')
    p = parse_exposition(text)
    assert p.bad_lines == 1
    by = {s.name: s for s in p.samples}
    assert by["node_load1"].value == 0.5 and by["node_load1"].labels == ()
    rx = by["node_network_receive_bytes_total"]
    assert rx.ts_ms == 1700000000000 and rx.label("device") == "eth0"
    assert by["belabox_modem_info"].label("operator") == 'Vodafone "DE"'
    assert math.isnan(by["weird"].value)
    assert by["node_thermal_zone_temp"].value == math.inf
