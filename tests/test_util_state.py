"""``aioray.util.state``: Ray's state API, answered exactly from the driver's memory."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from xproc import wait_until

import aioray
from aioray.util import state

cloudpickle.register_pickle_by_value(sys.modules[__name__])
DEADLINE = 30.0




def _state_of(name: str) -> list[str]:
    return [t.state for t in state.list_tasks(filters=[("name", "=", name)], limit=1000)]


def test_task_lifecycle_states(ray: object, tmp_path: Path) -> None:
    gate = str(tmp_path / "go")

    @aioray.remote(num_cpus=2)
    def hold(gate: str) -> int:
        while not os.path.exists(gate):
            time.sleep(0.005)
        return 1

    @aioray.remote(num_cpus=1)
    def needs_cpu() -> int:
        return 2

    @aioray.remote
    def needs_arg(x: int) -> int:
        return x

    @aioray.remote
    def fails() -> None:
        raise KeyError("missing")

    running = hold.remote(gate)
    wait_until(lambda: _state_of("hold") == ["RUNNING"], "hold to run")
    waiting_cpu = needs_cpu.remote()
    waiting_arg = needs_arg.remote(running)
    wait_until(lambda: _state_of("needs_cpu") == ["PENDING_NODE_ASSIGNMENT"], "no CPU left")
    assert _state_of("needs_arg") == ["PENDING_ARGS_AVAIL"]
    open(gate, "w").close()
    assert aioray.get([running, waiting_cpu, waiting_arg], timeout=DEADLINE) == [1, 2, 1]
    with pytest.raises(KeyError):
        aioray.get(fails.remote())
    assert _state_of("hold") == _state_of("needs_cpu") == _state_of("needs_arg") == ["FINISHED"]
    (failed,) = state.list_tasks(filters=[("state", "=", "FAILED")])
    assert failed.name == "fails" and failed.error_type == "KeyError"
    assert failed["type"] == "NORMAL_TASK" and failed.get("error_message")
    t = state.get_task(running)
    assert t is not None and t.required_resources == {"CPU": 2.0}
    assert t.start_time_ms is not None and t.end_time_ms is not None
    assert t.creation_time_ms <= t.start_time_ms <= t.end_time_ms
    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["fails"]["state_counts"] == {"FAILED": 1}


def test_actor_states_and_calls(ray: object) -> None:
    @aioray.remote
    class Svc:
        def pid(self) -> int:
            return os.getpid()

    a = Svc.options(name="svc").remote()
    pid = aioray.get(a.pid.remote())
    (row,) = state.list_actors(filters=[("name", "=", "svc")])
    assert (row.state, row.class_name, row.pid) == ("ALIVE", "Svc", pid)
    assert state.get_actor(row.actor_id) == row
    calls = state.list_tasks(filters=[("type", "=", "ACTOR_TASK")])
    assert [(c.name, c.state, c.actor_id) for c in calls] == [("Svc.pid", "FINISHED",
                                                               row.actor_id)]
    aioray.kill(a)
    wait_until(lambda: state.get_actor(row.actor_id).state == "DEAD", "the actor to die")
    dead = state.get_actor(row.actor_id)
    assert dead.death_cause["error_type"] == "ActorDiedError"
    assert state.summarize_actors()["cluster"]["summary"]["Svc"]["state_counts"] == {"DEAD": 1}


def test_filters_limit_and_objects(ray: object) -> None:
    @aioray.remote
    def sq(x: int) -> int:
        return x * x

    aioray.get([sq.remote(i) for i in range(10)])
    assert len(state.list_tasks(limit=3)) == 3
    assert len(state.list_tasks(filters=[("name", "!=", "sq")])) == 0
    with pytest.raises(ValueError, match="Unknown filter key"):
        state.list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="predicate"):
        state.list_tasks(filters=[("name", "~", "sq")])
    big = aioray.put(np.zeros(4 << 20, dtype=np.uint8))
    rows = state.get_objects(big.hex())
    assert len(rows) == 1 and rows[0].object_size >= 4 << 20
    assert rows[0].where == "shared memory"
    assert state.summarize_objects()["cluster"]["total_objects"] >= 1


def test_workers_and_placement_groups(ray: object) -> None:
    from aioray.util.placement_group import placement_group
    pg = placement_group([{"CPU": 1}], name="pg1")
    aioray.get(pg.ready())
    (row,) = state.list_placement_groups(filters=[("name", "=", "pg1")])
    assert row.state == "CREATED" and row.bundles[0]["unit_resources"] == {"CPU": 1}

    @aioray.remote
    def where() -> int:
        return os.getpid()

    pid = aioray.get(where.remote())
    workers = state.list_workers()
    assert workers[0].worker_type == "DRIVER" and workers[0].pid == os.getpid()
    assert pid in [w.pid for w in workers]


def test_state_api_from_inside_a_task(ray: object) -> None:
    @aioray.remote
    def look() -> list[Any]:
        return [(t.name, t.state) for t in state.list_tasks(filters=[("name", "=", "look")])]

    assert aioray.get(look.remote()) == [("look", "RUNNING")]


def test_finished_tasks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIORAY_STATE_MAX_FINISHED", "5")
    aioray.init(num_cpus=2)

    @aioray.remote
    async def quick(i: int) -> int:
        return i

    aioray.get([quick.remote(i) for i in range(50)])
    assert len(state.list_tasks(limit=1000)) == 5


def test_generator_tasks_are_recorded(ray: object) -> None:
    @aioray.remote
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    aioray.get(gen.options(num_returns=2).remote(2))
    assert [aioray.get(r) for r in aioray.get(gen.options(num_returns="dynamic").remote(3))] == [
        0, 1, 2]
    assert [aioray.get(r) for r in gen.remote(3)] == [0, 1, 2]
    assert _state_of("gen") == ["FINISHED"] * 3
