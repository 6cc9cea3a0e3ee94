"""/health and /metrics of the real agent under load: the figures behind the README's Reliability row.

    scripts/bench health_load [--seconds 10]

Two phases against one agent (collection every second), each with 100 slow-head clients beside
it: 500 clients polling once a second, then 500 asking again the moment they have an answer
(saturation). Printed per phase: requests, served (200), told 503, closed unanswered, p50/p99 of
the served, how soon slow heads were let go, and the collection schedule during the load. The
load generator (tests/support/healthload.py) runs in this process on the same cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve()
for p in (str(HERE.parents[2] / "app"), str(HERE.parents[2])):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.bench.peersreport import machine_line  # noqa: E402
from tests.support import healthload  # noqa: E402
from tests.support.agent import AgentProcess  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    args = ap.parse_args(argv)
    healthload.LOAD_S = args.seconds
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        agent = AgentProcess(Path(tmp), {"collection_interval": f"{healthload.INTERVAL_S:g}s",
                                         "storage": {"commit_interval": "1s"}})
        with agent:
            time.sleep(2 * healthload.INTERVAL_S)
            polling, _ = healthload.run_phase(agent, period=1.0)
            saturated, _ = healthload.run_phase(agent, period=0.0)
            if agent.stop() != 0:
                print("bench_health_load: the agent did not stop cleanly", file=sys.stderr)
                return 1
    print(f"- Date: {started:%Y-%m-%d %H:%M} UTC")
    print(f"- Machine: {machine_line()}")
    print(f"- Command: `scripts/bench health_load --seconds {args.seconds:g}`")
    print(json.dumps({"polling_1s": polling, "saturation": saturated}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
