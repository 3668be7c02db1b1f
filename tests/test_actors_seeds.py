"""The actor examples of the Ray Core blog seed (seeds/003), run with ``import aioray as ray``.

Adapted where the seed cannot run as written: sleeps are shortened; `@ray.method(concurrency_group:
"hello")` (a syntax error, and an undeclared group) uses the declared "io" group;
`actor.run_task` (no such method) calls `start`; `asyncio.run(async_get())` (undefined) runs
`monitor`; `ray.init(address="auto", ...)` re-inits become namespaces given per call, since one
aioray process is the whole "cluster"; `Actor` gets the `exit` method the seed calls.
Generator methods (also in the seed) are covered by the generator tests; ActorPool and Queue by
the utilities tests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import cloudpickle
import pytest

import aioray as ray
from aioray.actor import exit_actor

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT = 30


@pytest.mark.usefixtures("ray")
def test_counter_shared_by_three_tasks() -> None:
    ray.shutdown()
    ray.init(num_cpus=5)  # the actor holds 2 CPUs, each of the three tasks 1

    @ray.remote(num_cpus=2)
    class Counter:
        def __init__(self) -> None:
            self.value = 0

        def increment(self) -> int:
            self.value += 1
            return self.value

        def get_counter(self) -> int:
            return self.value

    @ray.remote
    def f(counter: Any) -> None:
        for _ in range(10):
            time.sleep(0.001)
            counter.increment.remote()  # call class func

    counter = Counter.options(name="demo").remote()  # call class
    refs = [f.remote(counter) for _ in range(3)]
    seen = []
    for _ in range(10):
        time.sleep(0.001)
        seen.append(ray.get(counter.get_counter.remote()))
    assert seen == sorted(seen)  # it only ever goes up
    ray.get(refs, timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while ray.get(counter.get_counter.remote()) < 30:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert ray.get(counter.get_counter.remote()) == 30


@pytest.mark.usefixtures("ray")
def test_names_namespaces_get_if_exists_kill_exit() -> None:
    @ray.remote
    class Actor:
        def exit(self) -> None:
            exit_actor()

    ray.shutdown()
    ray.init(num_cpus=2, namespace="colors")
    Actor.options(name="orange", lifetime="detached").remote()
    # "ray.init(namespace='fruit')": another driver's namespace is a namespace= argument here
    with pytest.raises(ValueError, match="orange2"):
        ray.get_actor("orange2", namespace="fruit")
    Actor.options(name="orange2", namespace="fruit").remote()
    assert ray.get_actor("orange") is not None
    # Getting an actor from another namespace needs the namespace.
    assert ray.get_actor("orange2", namespace="fruit") is not None
    a = Actor.options(name="g1", get_if_exists=True).remote()
    assert Actor.options(name="g1", get_if_exists=True).remote() == a

    ray.kill(a)  # cluster delete actor
    b = Actor.options(name="g2").remote()
    ref = b.exit.remote()  # manual delete
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(ref, timeout=TIMEOUT)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.exit.remote(), timeout=TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_async_actor_start() -> None:
    @ray.remote
    class AsyncActor:
        def __init__(self) -> None:
            self.running = 0
            self.peak = 0

        async def start(self) -> int:
            print("start")
            self.running += 1
            self.peak = max(self.peak, self.running)
            for _ in range(20):
                if self.peak >= 4:
                    break
                await asyncio.sleep(0.01)
            self.running -= 1
            print("finished")
            return self.peak

        async def get_peak(self) -> int:
            return self.peak

    actor = AsyncActor.remote()
    ray.get([actor.start.remote() for _ in range(4)], timeout=TIMEOUT)
    assert ray.get(actor.get_peak.remote()) == 4  # the four ran at once

    async def monitor(actor: Any) -> int:
        return int(await actor.start.remote())

    assert asyncio.run(monitor(actor)) == 4


@pytest.mark.usefixtures("ray")
def test_passive_waiting() -> None:
    @ray.remote
    def task() -> int:
        return 1

    # way 1
    ready, _ = ray.wait([task.remote()], timeout=TIMEOUT)
    assert ray.get(ready) == [1]

    # way 2
    async def wait_obj() -> list[int]:
        done, _ = await asyncio.wait([asyncio.ensure_future(task.remote())])
        return [d.result() for d in done]

    assert asyncio.run(wait_obj()) == [1]


@pytest.mark.usefixtures("ray")
def test_threaded_actor_with_concurrency_group(capfd: Any) -> None:
    @ray.remote(concurrency_groups={"io": 2})
    class ThreadedActor:
        @ray.method(concurrency_group="io")
        def task1(self) -> None:
            print("hello 1")

    a = ThreadedActor.options(max_concurrency=10).remote()
    assert ray.get([a.task1.remote(), a.task1.remote()], timeout=TIMEOUT) == [None, None]
    # The actor prints in its own process, to the file descriptor it inherited.
    out = ""
    deadline = time.monotonic() + TIMEOUT
    while out.count("hello 1") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        out += capfd.readouterr().out
    assert out.count("hello 1") == 2


@pytest.mark.usefixtures("ray")
def test_async_io_actor_groups() -> None:
    @ray.remote(concurrency_groups={"io": 2, "compute": 4})
    class AsyncIOActor:
        def __init__(self) -> None:
            pass

        @ray.method(concurrency_group="io")
        async def f1(self) -> str:
            return "f1"

        @ray.method(concurrency_group="compute")
        async def f2(self) -> str:
            return "f2"

        async def f3(self) -> str:
            return "f3"

    a = AsyncIOActor.remote()
    refs = [a.f1.remote(), a.f2.remote(), a.f3.remote(),
            a.f3.options(concurrency_group="compute").remote()]
    assert ray.get(refs, timeout=TIMEOUT) == ["f1", "f2", "f3", "f3"]
