#!/usr/bin/env python3
"""``make soak``: flat memory under sustained load (issue 5).

Runs 1,000,000 small async tasks and 100,000 process tasks in batches and samples the driver's
RSS (and the worker processes' total RSS) as it goes. Growth is measured from the end of a
warm-up (the first 10% of each phase) to the end of the phase; the target is < 10%.

    python benchmarks/soak.py                  # full sizes (a few minutes)
    python benchmarks/soak.py --quick          # 100,000 async + 10,000 process tasks
    python benchmarks/soak.py --async-tasks 200000 --process-tasks 20000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import sys
import time
from typing import Any

import psutil

import aioray

HERE = os.path.dirname(os.path.abspath(__file__))


@aioray.remote
async def small(i: int) -> int:
    return i + 1


@aioray.remote
def proc(i: int) -> int:
    return i + 1


def rss_mb(p: psutil.Process) -> float:
    return p.memory_info().rss / 1e6


def workers_rss_mb(me: psutil.Process) -> float:
    total = 0
    for c in me.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


class Tracker:
    """Samples RSS after every batch of one phase; growth is from warm-up to the end."""

    def __init__(self, name: str, total: int, batch: int, sample_workers: bool) -> None:
        self.name, self.total, self.batch = name, total, batch
        self.sample_workers = sample_workers
        self.me = psutil.Process()
        self.warm_at = max(batch, total // 10)
        self.warm: tuple[float, float] | None = None
        self.peak = 0.0
        self.t0 = self.t_warm = self.last_print = time.perf_counter()

    def sizes(self) -> list[tuple[int, int]]:
        return [(s, min(self.batch, self.total - s)) for s in range(0, self.total, self.batch)]

    def after_batch(self, done: int) -> None:
        r = rss_mb(self.me)
        self.peak = max(self.peak, r)
        if self.warm is None and done >= self.warm_at:
            gc.collect()
            self.warm = (rss_mb(self.me),
                         workers_rss_mb(self.me) if self.sample_workers else 0.0)
            self.t_warm = time.perf_counter()
        now = time.perf_counter()
        if now - self.last_print > 5:
            self.last_print = now
            print(f"  {self.name}: {done:,}/{self.total:,} tasks, driver RSS {r:.1f} MB, "
                  f"{done / (now - self.t0):,.0f} tasks/s", file=sys.stderr, flush=True)

    def result(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        gc.collect()
        end = (rss_mb(self.me), workers_rss_mb(self.me) if self.sample_workers else 0.0)
        assert self.warm is not None
        warm = self.warm
        return {
            "name": self.name, "tasks": self.total, "seconds": elapsed,
            "rate": self.total / elapsed,
            "warm_rss": warm[0], "end_rss": end[0], "peak_rss": self.peak,
            "growth": (end[0] - warm[0]) / warm[0] * 100,
            "workers_growth": ((end[1] - warm[1]) / warm[1] * 100) if warm[1] else None,
        }


def sync_phase(name: str, total: int, batch: int, fn: Any, sample_workers: bool) -> dict[str, Any]:
    tr = Tracker(name, total, batch, sample_workers)
    for start, n in tr.sizes():
        aioray.get([fn.remote(i) for i in range(start, start + n)])
        tr.after_batch(start + n)
    return tr.result()


async def async_phase(name: str, total: int, batch: int) -> dict[str, Any]:
    aioray.init(num_cpus=2)  # adopts this loop
    tr = Tracker(name, total, batch, False)
    for start, n in tr.sizes():
        await aioray.get_async([small.remote(i) for i in range(start, start + n)])
        tr.after_batch(start + n)
    out = tr.result()
    aioray.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="aioray soak: flat memory under sustained load.")
    ap.add_argument("--async-tasks", type=int, default=1_000_000)
    ap.add_argument("--process-tasks", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="1/10 of the default sizes")
    ap.add_argument("--out", default=os.path.join(HERE, "soak_results.md"),
                    help="markdown results file ('' to skip)")
    args = ap.parse_args()
    if args.quick:
        args.async_tasks //= 10
        args.process_tasks //= 10

    results = []
    if args.async_tasks:
        aioray.init(num_cpus=2)
        results.append(sync_phase("async tasks, get() from sync code", args.async_tasks, 10_000,
                                  small, False))
        aioray.shutdown()
        results.append(asyncio.run(async_phase("async tasks, await get_async() in asyncio.run",
                                               args.async_tasks, 10_000)))
    if args.process_tasks:
        aioray.init(num_cpus=2)
        aioray.get([proc.remote(0) for _ in range(4)])  # workers up before measuring
        results.append(sync_phase("process tasks", args.process_tasks, 2_000, proc, True))
        aioray.shutdown()

    lines = [
        "| Phase | Tasks | Time | Tasks/s | Driver RSS after warm-up → end (peak) | Growth | "
        "Workers' RSS growth | Target | Status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        wg = f"{r['workers_growth']:+.1f}%" if r["workers_growth"] is not None else "—"
        status = "PASS" if r["growth"] < 10 and (
            r["workers_growth"] is None or r["workers_growth"] < 10) else "MISS"
        lines.append(
            f"| {r['name']} | {r['tasks']:,} | {r['seconds']:.0f} s | {r['rate']:,.0f} | "
            f"{r['warm_rss']:.1f} → {r['end_rss']:.1f} MB ({r['peak_rss']:.1f}) | "
            f"{r['growth']:+.1f}% | {wg} | < 10% | {status} |")
    table = "\n".join(lines)
    info = (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · Python {platform.python_version()} · "
            f"{os.cpu_count()} CPUs · aioray {aioray.__version__} · load average "
            f"{os.getloadavg()[0]:.1f} at the end (throughput drops on a busy machine; "
            "memory growth is what this measures)")
    print()
    print(info)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# aioray soak results\n\n{info}\n\nGenerated by `make soak` "
                    f"(`benchmarks/soak.py`{' --quick' if args.quick else ''}). Growth is "
                    "measured after a warm-up of the first 10% of each phase.\n\n")
            f.write(table + "\n")
        print(f"written to {os.path.relpath(args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
