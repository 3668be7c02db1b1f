"""``aioray.timeline``: Chrome trace events whose spans order and nest as the work ran."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cloudpickle

import aioray

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_timeline_of_a_known_workload(ray: object, tmp_path: Path) -> None:
    @aioray.remote
    def first() -> int:
        time.sleep(0.05)
        return os.getpid()

    @aioray.remote
    def second(_: int) -> int:
        time.sleep(0.05)
        return os.getpid()

    @aioray.remote
    async def on_loop() -> None:
        return None

    @aioray.remote
    class Act:
        def work(self) -> int:
            return os.getpid()

    a = first.remote()
    worker = aioray.get(second.remote(a))  # runs after first: its argument
    aioray.get(on_loop.remote())
    actor_pid = aioray.get(Act.remote().work.remote())
    path = tmp_path / "trace.json"
    assert aioray.timeline(str(path)) is None
    events = json.loads(path.read_text())
    assert len(aioray.timeline()) == len(events)  # the same events, returned

    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs[os.getpid()] == "driver" and procs[actor_pid] == "actor Act"
    runs = {e["name"]: e for e in events if e.get("ph") == "X"}
    assert set(runs) >= {"first", "second", "on_loop", "Act.work"}
    assert runs["second"]["pid"] == worker and runs["Act.work"]["pid"] == actor_pid
    assert runs["on_loop"]["pid"] == os.getpid()
    # order: first ran and ended before second started (second waited for its argument)
    assert runs["first"]["ts"] + runs["first"]["dur"] <= runs["second"]["ts"]
    assert runs["first"]["dur"] >= 40_000  # µs: it slept 50 ms
    # each task's queued span (async b/e pair) ends where its run begins
    queued = {}
    for e in events:
        if e.get("cat") == "queued":
            queued.setdefault(e["name"], {})[e["ph"]] = e["ts"]
    for name in ("first", "second"):
        assert queued[name]["b"] <= queued[name]["e"] == runs[name]["ts"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["name"] == "thread_name"}
    assert threads[(os.getpid(), runs["on_loop"]["tid"])] == "event loop"


def test_detailed_tracing_adds_generator_items_and_transfers(tmp_path: Path) -> None:
    """With init(_tracing=True) the timeline also shows each generator item (on the lane of
    the task that yielded it) and each large object that came back through shared memory."""
    import numpy as np

    aioray.init(num_cpus=2, _tracing=True)

    @aioray.remote
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    @aioray.remote
    def big() -> np.ndarray:
        return np.zeros(2 << 20, dtype=np.uint8)

    assert [aioray.get(r) for r in gen.remote(3)] == [0, 1, 2]
    assert aioray.get(big.remote()).nbytes == 2 << 20
    events = aioray.timeline()
    run = next(e for e in events if e.get("ph") == "X" and e["name"] == "gen")
    items = [e for e in events if e.get("cat") == "generator_item"]
    assert len(items) == 3 and all((e["pid"], e["tid"]) == (run["pid"], run["tid"])
                                   for e in items)
    assert all(run["ts"] <= e["ts"] <= run["ts"] + run["dur"] + 1e5 for e in items)
    (move,) = [e for e in events if e.get("cat") == "transfer"]
    assert move["args"]["bytes"] >= 2 << 20 and move["name"].startswith("2.1 MB from pid")


def test_tracing_is_off_by_default_until_the_first_timeline_call(ray: object) -> None:
    from aioray._engine import tracing

    assert tracing.ACTIVE is None  # nothing recorded: the hot paths pay one None check
    aioray.timeline()
    assert tracing.ACTIVE is not None
    aioray.shutdown()
    assert tracing.ACTIVE is None
