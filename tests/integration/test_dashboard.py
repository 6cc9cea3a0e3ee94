"""Every query of the Grafana fleet dashboard returns data from a real VictoriaMetrics holding what
`metrics-collector run` uploaded from the board trees (two RK3588 boxes, one with a ModemManager modem)."""

from __future__ import annotations

import json
import time

import requests

from tests.devices.conftest import ModemManagerMock, system_bus  # noqa: F401 - system_bus is a fixture
from tests.diagnose.running_agent import Agent, write_config
from tests.support.cli import REPO
from tests.support.vm import VictoriaMetrics

DASHBOARD = REPO / "scripts" / "grafana" / "belabox-fleet.json"
BOARDS = {"opi5-plus": "rk3588-orangepi5plus", "rock-5b": "rk3588-rock5b"}
MODEM_BOX = "opi5-plus"


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def substitute(expr: str, device_id: str) -> str:
    # What Grafana does before sending: the template variable and the built-in intervals.
    for var, value in (("${device_id}", device_id), ("$device_id", device_id), ("$__rate_interval", "1m"),
                       ("$__interval", "15s"), ("$__range", "1h")):
        expr = expr.replace(var, value)
    return expr


def test_dashboard_shape():
    dash = load()
    assert dash["uid"] == "belabox-fleet"
    assert [i["name"] for i in dash["__inputs"]] == ["DS_VICTORIAMETRICS"]
    var = dash["templating"]["list"][0]
    assert var["name"] == "device_id" and "label_values(" in var["definition"]
    ps = panels(dash)
    assert len({p["id"] for p in ps}) == len(ps)
    titles = " ".join(p["title"] for p in ps).lower()
    for topic in ("devices", "last seen", "backlog", "signal", "rsrp", "throughput", "temperatures",
                  "throttling", "disk", "memory"):
        assert topic in titles, topic
    for p in ps:
        assert p["targets"], p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_VICTORIAMETRICS}"
    per_device = [t["expr"] for p in ps for t in p["targets"] if "$device_id" in t["expr"]]
    assert len(per_device) >= 10


def _query(vm: VictoriaMetrics, expr: str) -> list:
    r = requests.get(f"{vm.base}/api/v1/query", params={"query": expr, "time": str(time.time())}, timeout=10)
    assert r.status_code == 200, f"{expr}: HTTP {r.status_code} {r.text}"
    return r.json()["data"]["result"]


def _wait_for(vm: VictoriaMetrics, agents: list[Agent], exprs: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    missing = exprs
    while time.monotonic() < deadline:
        for a in agents:
            assert a.proc.poll() is None, f"agent exited:\n{a.log_tail()}"
        vm.force_flush()
        missing = [e for e in exprs if not _query(vm, e)]
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"no data for {missing}\n" + "\n".join(a.log_tail(15) for a in agents))


def test_every_panel_query_returns_series(tmp_path, system_bus):  # noqa: F811
    mm = ModemManagerMock(system_bus)
    mm.start()
    agents: list[Agent] = []
    try:
        mm.add_modem("0")
        with VictoriaMetrics(tmp_path / "vm") as vm:
            for device_id, board in BOARDS.items():
                box = tmp_path / device_id
                box.mkdir()
                # The modem box runs the real mmcli, talking to the mock on the private bus.
                cfg = write_config(box, vm.import_url, board=REPO / "hardware" / board, device_id=device_id,
                                   mmcli="mmcli" if device_id == MODEM_BOX else None)
                agents.append(Agent(cfg, env={"DBUS_SYSTEM_BUS_ADDRESS": system_bus}))
            # Rates need two points of a counter: the agents run until every counter has them.
            _wait_for(vm, agents, [
                f'metrics_collector_upload_last_success_timestamp_seconds{{device_id="{d}"}}' for d in BOARDS
            ] + [f'count_over_time(metrics_collector_uploaded_samples_total{{device_id="{d}"}}[5m]) > 1'
                 for d in BOARDS] + [f'belabox_modem_signal_quality_percent{{device_id="{MODEM_BOX}"}}',
                 f'count_over_time(node_network_receive_bytes_total{{device_id="{MODEM_BOX}"}}[1m]) > 1'])
            for a in agents:
                assert a.stop() == 0, a.log_tail()
            vm.force_flush()

            r = requests.get(f"{vm.base}/api/v1/label/device_id/values",
                             params={"match[]": "metrics_collector_spool_pending_samples"}, timeout=10)
            assert sorted(r.json()["data"]) == sorted(BOARDS)

            empty = []
            for p in panels(load()):
                for t in p["targets"]:
                    expr = substitute(t["expr"], MODEM_BOX)
                    if not _query(vm, expr):
                        empty.append(f'{p["title"]} [{t["refId"]}]: {expr}')
            assert not empty, "queries without data:\n" + "\n".join(empty)
            devices = _query(vm, substitute(panels(load())[0]["targets"][0]["expr"], MODEM_BOX))
            assert float(devices[0]["value"][1]) == len(BOARDS)
    finally:
        for a in agents:
            a.stop()
        mm.stop()
