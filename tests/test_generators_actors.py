"""Generator methods on the three actor kinds: sync, async and threaded."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cloudpickle
import pytest
from xproc import RUN, FileEvent

import aioray
from aioray import DynamicObjectRefGenerator, ObjectRefGenerator
from aioray.exceptions import ActorDiedError, TaskCancelledError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Sync actors run in their own processes: the gates are files, the same in every process.
GATES: dict[str, FileEvent] = {}


def _gate(name: str) -> FileEvent:
    """A gate by name, the same in the driver and in an actor's process."""
    return GATES.setdefault(name, FileEvent(os.path.join(
        tempfile.gettempdir(), f"aioray-xproc-{RUN}-gen-gate-{name}")))


@pytest.fixture(autouse=True)
def _fresh_gates() -> Iterator[None]:
    for name in ("sync", "threaded", "async", "tick", "gen", "agen"):
        _gate(name).clear()
    yield
    for g in GATES.values():
        g.set()  # never leave an actor blocked


@aioray.remote
class SyncActor:
    def __init__(self) -> None:
        self.produced = 0

    def gen(self, n: int) -> Iterator[int]:
        for i in range(n):
            self.produced += 1
            yield i

    def fail(self, n: int) -> Iterator[int]:
        yield from range(n)
        raise ValueError("actor gen failed")

    def gated(self, name: str) -> Iterator[str]:
        yield "first"
        assert _gate(name).wait(60)
        yield "second"

    def forever(self) -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            _gate("tick").wait(0.005)

    def count(self) -> int:
        return self.produced


@aioray.remote
class AsyncActor:
    def __init__(self) -> None:
        self.produced = 0

    async def gen(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            self.produced += 1
            await asyncio.sleep(0)
            yield i

    async def fail(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise ValueError("actor gen failed")

    async def gated(self, name: str) -> AsyncIterator[str]:
        yield "first"
        while not _gate(name).is_set():
            await asyncio.sleep(0.005)
        yield "second"

    async def forever(self) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.005)

    def sync_gen(self, n: int) -> Iterator[int]:
        """A sync generator method on an async actor runs on a thread of its own."""
        yield from range(n)

    async def count(self) -> int:
        return self.produced


ThreadedActor = SyncActor.options(max_concurrency=5)

KINDS = {"sync": SyncActor, "async": AsyncActor, "threaded": ThreadedActor}


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_generator_streams(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    gen = actor.gen.remote(5)
    assert isinstance(gen, ObjectRefGenerator)
    assert [aioray.get(r) for r in gen] == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_actor_generator_async_for(aray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    assert [await r async for r in actor.gen.remote(3)] == [0, 1, 2]


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_generator_is_eager(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    gen = actor.gen.remote(10)
    aioray.get(gen.completed(), timeout=60)  # nobody called next()
    assert aioray.get(actor.count.remote()) == 10
    assert len(list(gen)) == 10


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_generator_is_live(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    gen = actor.gated.remote(kind)
    assert aioray.get(next(gen), timeout=60) == "first"
    assert aioray.wait([gen.completed()], timeout=0)[0] == []
    _gate(kind).set()
    assert aioray.get(list(gen)) == ["second"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_generator_error_in_order(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    refs = list(actor.fail.remote(2))
    assert len(refs) == 3
    assert aioray.get(refs[:2]) == [0, 1]
    with pytest.raises(ValueError, match="actor gen failed"):
        aioray.get(refs[2])
    assert aioray.get(actor.count.remote()) == 0  # the actor survives an app error


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_generator_cancel(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    gen = actor.forever.remote()
    assert aioray.get(next(gen)) == 0
    aioray.cancel(gen)
    out: list[Any] = []
    for ref in gen:  # never hangs
        try:
            out.append(aioray.get(ref, timeout=60))
        except TaskCancelledError:
            out.append("cancelled")
    assert out == [] or out[-1] == "cancelled"
    # The actor is usable again: a sync generator method stops at its next yield.
    assert aioray.get(list(actor.gen.remote(2)), timeout=60) == [0, 1]


@pytest.mark.parametrize("kind", list(KINDS))
def test_actor_static_and_dynamic_num_returns(ray: Any, kind: str) -> None:
    actor = KINDS[kind].remote()
    a, b = actor.gen.options(num_returns=2).remote(2)
    assert aioray.get([a, b]) == [0, 1]
    x, y, z = actor.fail.options(num_returns=3).remote(1)
    assert aioray.get(x) == 0
    for r in (y, z):
        with pytest.raises(ValueError, match="actor gen failed"):
            aioray.get(r)
    dyn = aioray.get(actor.gen.options(num_returns="dynamic").remote(3))
    assert isinstance(dyn, DynamicObjectRefGenerator)
    assert aioray.get(list(dyn)) == [0, 1, 2]
    assert aioray.get(list(actor.gen.options(num_returns="streaming").remote(1))) == [0]


def test_sync_generator_method_of_async_actor(ray: Any) -> None:
    actor = AsyncActor.remote()
    assert aioray.get(list(actor.sync_gen.remote(3))) == [0, 1, 2]


def test_actor_killed_while_generating(ray: Any) -> None:
    actor = AsyncActor.remote()
    gen = actor.forever.remote()
    assert aioray.get(next(gen)) == 0
    aioray.kill(actor)
    last = None
    for ref in gen:  # ends with the actor's death
        last = ref
    assert last is not None
    with pytest.raises(ActorDiedError):
        aioray.get(last)


def test_actor_generator_consumed_inside_worker_process(ray: Any) -> None:
    @aioray.remote
    def consumer(actor: Any) -> list[int]:
        return [aioray.get(r) for r in actor.gen.remote(4)]

    for cls in (SyncActor, AsyncActor):
        assert aioray.get(consumer.remote(cls.remote()), timeout=60) == [0, 1, 2, 3]


@aioray.remote(max_restarts=1, max_task_retries=1)
class Restartable:
    def gen(self, name: str) -> Iterator[int]:
        for i in range(6):
            yield i
            if i == 2:
                _gate(name).wait(60)

    async def agen(self, name: str) -> AsyncIterator[int]:
        for i in range(6):
            yield i
            if i == 2:
                while not _gate(name).is_set():
                    await asyncio.sleep(0.005)


@pytest.mark.parametrize("method", ["gen", "agen"])
def test_actor_restart_retry_does_not_duplicate_refs(ray: Any, method: str) -> None:
    actor = Restartable.remote()
    gen = getattr(actor, method).remote(method)
    taken = [next(gen) for _ in range(3)]
    assert aioray.get(taken) == [0, 1, 2]
    aioray.kill(actor, no_restart=False)  # the call is retried on the new instance
    _gate(method).set()
    rest = list(gen)
    assert aioray.get(taken + rest, timeout=60) == [0, 1, 2, 3, 4, 5]
