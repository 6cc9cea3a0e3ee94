"""A load generator for the agent's health endpoint (asyncio, one thread): clients that ask
/health and /metrics again and again, and clients that send their request head a byte a second.
Used by tests/reliability/test_health_load.py (what must hold) and tests/bench/bench_health_load.py
(the figures)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time

from tests.support.agent import AgentProcess

CLIENTS = 500
SLOW_CLIENTS = 100
LOAD_S = float(os.environ.get("BELABOX_CHAOS_LOAD_SECONDS", "10"))
INTERVAL_S = 1.0
HEAD_TIMEOUT_S = 5.0  # the health server's head deadline (health/server.py)


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 2 else (xs[0] if xs else 0.0)


async def one_client(port: int, path: str, until: float, out: list[tuple[str, float, int | None]],
                     period: float) -> None:
    """Ask, read the whole answer (the server closes after each), ask again until ``until``:
    at once (``period`` 0) or ``period`` seconds after the last request started, from a random
    phase (independent clients do not start in the same millisecond)."""
    if period:
        await asyncio.sleep(random.uniform(0, period))
    while time.monotonic() < until:
        t0 = time.monotonic()
        status: int | None = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            if data.startswith(b"HTTP/1.1 "):
                status = int(data[9:12])
                if status == 503:
                    assert b"Retry-After:" in data.split(b"\r\n\r\n", 1)[0], data[:200]
        except (OSError, asyncio.TimeoutError):
            pass
        out.append((path, time.monotonic() - t0, status))
        if period:
            await asyncio.sleep(max(0.0, t0 + period - time.monotonic()))
        elif status == 503:
            await asyncio.sleep(0.05)  # told to come back: a client that does not wait is a flood


async def slow_client(port: int, until: float, out: list[float]) -> None:
    """A request head that trickles in: the server must let it go by its head deadline."""
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60
        for i in range(len(head)):
            writer.write(head[i:i + 1])
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                    break  # the server closed it
            except asyncio.TimeoutError:
                pass
            if time.monotonic() > until + HEAD_TIMEOUT_S * 2:
                break
        writer.close()
    except OSError:
        pass
    out.append(time.monotonic() - t0)


async def load(port: int, period: float) -> tuple[list[tuple[str, float, int | None]], list[float]]:
    until = time.monotonic() + LOAD_S
    answers: list[tuple[str, float, int | None]] = []
    slow: list[float] = []
    tasks = [one_client(port, "/health" if i % 2 else "/metrics", until, answers, period)
             for i in range(CLIENTS)]
    tasks += [slow_client(port, until, slow) for _ in range(SLOW_CLIENTS)]
    await asyncio.gather(*tasks)
    return answers, slow


def summary(answers: list[tuple[str, float, int | None]], slow: list[float], batches: list[int]) -> dict:
    served = [t for _, t, st in answers if st == 200]
    busy = [t for _, t, st in answers if st == 503]
    gaps = [(b - a) / 1000 for a, b in zip(batches, batches[1:], strict=False)]
    return {"seconds": LOAD_S, "requests": len(answers), "served": len(served), "busy_503": len(busy),
            "unanswered": sum(1 for _, _, st in answers if st not in (200, 503)),
            "served_per_s": round(len(served) / LOAD_S),
            "p50_ms": round(statistics.median(served) * 1000, 1) if served else None,
            "p99_ms": round(p99(served) * 1000, 1), "busy_p99_ms": round(p99(busy) * 1000, 1) if busy else None,
            "slow_heads": len(slow), "slow_head_let_go_after_s": round(max(slow), 1) if slow else None,
            "collection_batches": len(batches), "largest_gap_s": round(max(gaps), 2) if gaps else None}


def run_phase(agent: AgentProcess, period: float) -> tuple[dict, list]:
    t_start = time.time()
    answers, slow = asyncio.run(load(agent.port, period))
    t_end = time.time()
    time.sleep(2 * INTERVAL_S)  # the last batches of the phase reach the log
    batches = sorted(t for t in agent.committed_wall_ms() if t_start * 1000 <= t <= t_end * 1000)
    return summary(answers, slow, batches), answers
