"""Where our running agent's CPU goes: py-spy samples a live agent, this prints the top functions.

    PYTHONPATH=app:. python tests/bench/profile_agent.py [--seconds 300] [--interval 10]

The agent runs as in bench_peers (default settings except paths, ports and intervals),
uploading to a VictoriaMetrics on 127.0.0.1. After READY and a warm-up, ``py-spy record
--nonblocking --gil`` samples it for --seconds: only the thread holding the GIL, so counts
approximate Python CPU time (py-spy's idle detection alone still counted threads waiting in
select() and Condition.wait here, about 40% of samples). Prints the functions with the most
samples on top of the stack (self) and anywhere on it (inclusive), as markdown. Needs py-spy (requirements-test.txt).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve()
for p in (str(HERE.parents[2] / "app"), str(HERE.parents[2])):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.bench.peerstack import NotifyListener, OurStack, StackError  # noqa: E402
from tests.support.vm import VictoriaMetrics, VMError  # noqa: E402


def parse_collapsed(text: str) -> tuple[Counter, Counter, int]:
    """py-spy's raw (collapsed) output: ``thread;frame;frame N`` per line, root first.
    Returns (self counts, inclusive counts, total samples) per frame."""
    own, incl, total = Counter(), Counter(), 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first element names the process/thread
        if not frames:
            continue
        count = int(n)
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return own, incl, total


def short(frame: str) -> str:
    """``func (/abs/path/app/belabox_metrics/x.py)`` -> ``func (belabox_metrics/x.py)``."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("/app/", "/python3.11/", "/dist-packages/", "/site-packages/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{func} ({where})" if where else func


def table(counts: Counter, total: int, top: int, title: str) -> list[str]:
    out = [f"| {title} | samples | share |", "|---|---:|---:|"]
    for frame, n in counts.most_common(top):
        out.append(f"| `{short(frame)}` | {n} | {n / total:.1%} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="sampling time (default 300)")
    ap.add_argument("--interval", type=float, default=10.0, help="collection interval, s (default 10)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("profile_agent: py-spy not found: pip install -r requirements-test.txt", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="profile-agent-") as tmp:
        work = Path(tmp)
        notify = NotifyListener()
        agent = None
        try:
            with VictoriaMetrics(work / "vm") as vm:
                (work / "data").mkdir()
                agent = OurStack("profiled", work, work / "data", args.interval, vm.import_url, notify)
                agent.start()
                agent.wait_ready()
                time.sleep(5)
                raw = work / "profile.txt"
                r = subprocess.run([pyspy, "record", "--nonblocking", "--gil", "--nolineno", "--format", "raw",
                                    "--rate", str(args.rate), "--duration", f"{args.seconds:.0f}",
                                    "--pid", str(agent.proc.pid), "--output", str(raw)],
                                   capture_output=True, text=True, timeout=args.seconds + 60)
                if r.returncode != 0 or not raw.exists():
                    print(f"profile_agent: py-spy failed: {r.stderr.strip()[-500:]}", file=sys.stderr)
                    return 1
                text = raw.read_text()
        except (StackError, VMError) as e:
            print(f"profile_agent: {e}", file=sys.stderr)
            return 1
        finally:
            if agent is not None:
                agent.stop()
            notify.close()
    own, incl, total = parse_collapsed(text)
    print(f"py-spy {args.rate} Hz over {args.seconds:g} s, collection every {args.interval:g} s: "
          f"{total} samples on CPU ({total / args.rate:.1f} s)\n")
    print("\n".join(table(own, total, args.top, "self (top of stack)")))
    print()
    print("\n".join(table(incl, total, args.top, "inclusive (anywhere on the stack)")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
