"""Starvation is never silent: a task or actor that cannot be scheduled *now* because actors
(or placement groups, or blocked tasks) hold the resources gets Ray's kind of warning after
``AIORAY_STARVATION_WARNING_S`` seconds, once per resource shape, naming the shape, what is
free, and what holds it; a request merely queued behind running tasks gets none. And
``available_resources()`` reports what is really free, as Ray does (no float drift, resources
with nothing free left out)."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xproc import wait_until

import aioray

REPO = Path(__file__).resolve().parents[1]
DELAY = "0.3"  # seconds before the warning (default 5)
STOP = threading.Event()  # releases the thread tasks below


@pytest.fixture(autouse=True)
def _fast_warning(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AIORAY_STARVATION_WARNING_S", DELAY)
    STOP.clear()
    aioray.shutdown()
    yield
    STOP.set()
    aioray.shutdown()


# This module's deadline for the states it waits for (xproc.wait_until's default is 30 s).
_wait_until = functools.partial(wait_until, timeout=10.0)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "aioray" and "cannot be scheduled right now" in r.getMessage()]


@aioray.remote(num_cpus=1)
class Holder:
    async def ping(self) -> int:
        return 1


@aioray.remote(num_cpus=1)
def one_cpu() -> str:
    return "ran"


@aioray.remote(num_cpus=0.5)
def half_cpu() -> str:
    return "ran"


@aioray.remote(num_cpus=1, executor="thread")
def hold_cpu_until_stop() -> str:
    STOP.wait(30)
    return "done"


def test_task_starved_by_actors_warns_once_per_shape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2)
    a, b = Holder.remote(), Holder.remote()
    assert aioray.get([a.ping.remote(), b.ping.remote()]) == [1, 1]
    assert aioray.available_resources() == {}  # as Ray: a resource with nothing free is left out

    ref = one_cpu.remote()
    _wait_until(lambda: len(_warnings(caplog)) == 1, what="the starvation warning")
    msg = _warnings(caplog)[0]
    assert msg.startswith("aioray: the task one_cpu cannot be scheduled right now: it requires "
                          "{'CPU': 1.0}"), msg
    assert "the node has {'CPU': 0.0} free of {'CPU': 2.0}" in msg
    assert "held by 2 actors (Holder x2) holding {'CPU': 2.0}" in msg
    assert "likely due to all cluster resources being claimed by actors" in msg
    assert "AIORAY_STARVATION_WARNING_S" in msg

    # Same shape again: no second warning. A new shape gets its own — and since its timer was
    # set after the second one_cpu's would have been, once it is here the other had its chance.
    ref2 = one_cpu.remote()
    ref3 = half_cpu.remote()
    _wait_until(lambda: len(_warnings(caplog)) == 2, what="the warning for {'CPU': 0.5}")
    assert "it requires {'CPU': 0.5}" in _warnings(caplog)[1]

    aioray.kill(a)  # frees a CPU: the starved tasks run
    assert aioray.get([ref, ref2, ref3], timeout=30) == ["ran", "ran", "ran"]
    assert len(_warnings(caplog)) == 2


def test_no_warning_when_only_queued_behind_running_tasks(
        caplog: pytest.LogCaptureFixture) -> None:
    """A queue behind running tasks is progress (Ray's rule): no warning. Starvation on a
    resource only an actor holds, set up after it, does warn — which bounds the wait."""
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=1, resources={"slot": 1})
    running = hold_cpu_until_stop.remote()
    _wait_until(lambda: "CPU" not in aioray.available_resources(), what="the task to start")
    queued = one_cpu.remote()  # waits behind the running task

    slot_holder = Holder.options(num_cpus=0, resources={"slot": 1}).remote()
    aioray.get(slot_holder.ping.remote())
    starved = one_cpu.options(num_cpus=0, resources={"slot": 1}).remote()
    _wait_until(lambda: len(_warnings(caplog)) == 1, what="the warning for the slot")
    (msg,) = _warnings(caplog)
    # The actor asking for the free slot did not wait behind the CPU queue (it needs no CPU).
    assert msg.startswith("aioray: the task one_cpu cannot be scheduled"), msg
    assert "it requires {'slot': 1.0}" in msg
    assert "1 actor (Holder) holding {'slot': 1.0}" in msg

    STOP.set()
    assert aioray.get([running, queued], timeout=30) == ["done", "ran"]
    aioray.kill(slot_holder)
    assert aioray.get(starved, timeout=30) == "ran"
    assert len(_warnings(caplog)) == 1


def test_actor_starved_by_actors_is_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2)
    holders = [Holder.remote(), Holder.remote()]
    aioray.get([h.ping.remote() for h in holders])

    @aioray.remote(num_cpus=1)
    class Late:
        async def ping(self) -> str:
            return "late"

    late = Late.remote()
    _wait_until(lambda: len(_warnings(caplog)) == 1, what="the starvation warning")
    msg = _warnings(caplog)[0]
    assert msg.startswith("aioray: the actor Late cannot be scheduled right now"), msg
    assert "2 actors (Holder x2)" in msg
    aioray.kill(holders[0])
    assert aioray.get(late.ping.remote(), timeout=30) == "late"


def test_tasks_blocked_in_get_and_placement_groups_are_named(
        caplog: pytest.LogCaptureFixture) -> None:
    """Resources held by something other than actors — a placement group's reservation, a
    task blocked in ``get`` (it lent its CPU, not its other resources) — are named too."""
    from aioray.util.placement_group import placement_group, remove_placement_group

    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2, resources={"disk": 2})
    pg = placement_group([{"disk": 1}], name="reserved")
    aioray.get(pg.ready())

    @aioray.remote(num_cpus=0, executor="thread")
    def gate() -> int:
        STOP.wait(30)
        return 1

    @aioray.remote(num_cpus=1, resources={"disk": 1}, executor="thread")
    def blocked(ref: list[aioray.ObjectRef[int]]) -> int:
        return int(aioray.get(ref[0])) + 1

    held = blocked.remote([gate.remote()])
    _wait_until(lambda: aioray.available_resources().get("CPU") == 2.0
                and "disk" not in aioray.available_resources(), what="the task blocked in get")
    starved = one_cpu.options(num_cpus=0, resources={"disk": 1}).remote()
    _wait_until(lambda: len(_warnings(caplog)) == 1, what="the starvation warning")
    msg = _warnings(caplog)[0]
    assert ("held by 1 task, 1 of them blocked in get()/wait() holding {'disk': 1.0}; "
            "1 placement group ('reserved') reserving {'disk': 1.0}.") in msg, msg
    assert "claimed by actors" not in msg  # no actor holds anything here
    STOP.set()
    assert aioray.get(held, timeout=30) == 2
    remove_placement_group(pg)
    assert aioray.get(starved, timeout=30) == "ran"


def test_available_resources_has_no_float_drift() -> None:
    """Seven 0.1-CPU tasks on 2 CPUs leave 1.3 free — not 1.2999999999999994 (Ray keeps
    amounts in fixed point)."""
    aioray.init(address="local", num_cpus=2)

    @aioray.remote(num_cpus=0.1, executor="thread")
    def tenth() -> int:
        STOP.wait(30)
        return 1

    refs = [tenth.remote() for _ in range(7)]
    _wait_until(lambda: aioray.available_resources().get("CPU", 2.0) < 1.35,
                what="seven tasks running")
    assert aioray.available_resources() == {"CPU": 1.3}
    STOP.set()
    assert sum(aioray.get(refs, timeout=30)) == 7
    _wait_until(lambda: aioray.available_resources() == {"CPU": 2.0}, what="CPUs back")


def test_warning_off(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIORAY_STARVATION_WARNING_S", "0")
    aioray.init(address="local", num_cpus=1)
    rt = aioray._engine.runtime.current_runtime()  # type: ignore[attr-defined]
    assert rt is not None and rt.starvation is None and rt.node_pool.on_wait is None


_SCRIPT = """
import aioray

aioray.init(num_cpus=2)

@aioray.remote(num_cpus=1)
class Worker:
    def ping(self):
        return 1

@aioray.remote(num_cpus=1)
def task():
    return "ran"

a, b = Worker.remote(), Worker.remote()
aioray.get([a.ping.remote(), b.ping.remote()])
print("AVAILABLE", aioray.available_resources(), flush=True)
ref = task.remote()
ready, _ = aioray.wait([ref], timeout=2.0)
print("READY", len(ready), flush=True)
aioray.kill(a)
print("RESULT", aioray.get(ref, timeout=30), flush=True)
aioray.shutdown()
"""


def test_script_with_two_actors_starving_a_task_prints_the_warning(tmp_path: Path) -> None:
    """The issue's case as a user runs it: sync actors in their own processes, the task waits,
    and stderr holds exactly the one warning."""
    script = tmp_path / "starve.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(REPO), AIORAY_STARVATION_WARNING_S="0.5")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AVAILABLE {}" in proc.stdout
    assert "READY 0" in proc.stdout and "RESULT ran" in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aioray: the task task cannot be scheduled right now: it "
                               "requires {'CPU': 1.0} and has waited "), proc.stderr
    assert "held by 2 actors (Worker x2) holding {'CPU': 2.0}" in lines[0]
    assert took < 15, took
