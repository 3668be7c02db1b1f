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
