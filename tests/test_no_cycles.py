"""Finished tasks, calls and objects leave no reference cycles behind.

Refcounting frees an object the moment its last ref goes — but only if nothing it belongs to
is a cycle, which would wait for the cyclic GC (holding the task's outputs, and costing GC time
on every batch). Each case runs a few calls with the GC off and checks nothing was left for it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def no_gc() -> Iterator[Callable[[], Counter[str]]]:
    """Returns a function giving the types of the objects only the cyclic GC could free."""
    gc.collect()
    gc.disable()

    def garbage() -> Counter[str]:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            return Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.garbage.clear()
            gc.set_debug(0)

    try:
        yield garbage
    finally:
        gc.enable()


def _settle(pred: Callable[[], bool] = lambda: True) -> None:
    # Releases travel back through the loop thread; give them a moment (bounded).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not pred():
        time.sleep(0.01)
    time.sleep(0.05)


def test_sync_driver_tasks_calls_and_objects(ray: Any, no_gc: Any) -> None:
    @ray.remote
    def noop() -> None:
        return None

    @ray.remote
    async def anoop() -> None:
        return None

    @ray.remote
    def gen(n: int) -> Any:
        yield from range(n)

    @ray.remote
    class S:
        def f(self) -> None:
            return None

    s = S.remote()
    ray.get(s.f.remote())
    ray.get(noop.remote())  # a worker is up
    gc.collect()
    no_gc()

    ray.get([noop.remote() for _ in range(20)])
    ray.get([anoop.remote() for _ in range(50)])
    ray.get([noop.options(executor="thread").remote() for _ in range(20)])
    ray.get([s.f.remote() for _ in range(50)])
    assert [ray.get(r) for r in gen.remote(20)] == list(range(20))
    assert [ray.get(ray.put(i)) for i in range(50)] == list(range(50))
    _settle()
    assert no_gc() == Counter()


async def test_async_tasks_and_calls(aray: Any, no_gc: Any) -> None:
    @aray.remote
    async def anoop() -> None:
        return None

    @aray.remote
    class A:
        async def f(self) -> None:
            return None

    a = A.remote()
    await a.f.remote()
    gc.collect()
    no_gc()

    await asyncio.gather(*[anoop.remote() for _ in range(50)])
    await aray.get_async([anoop.remote() for _ in range(50)])
    for _ in range(20):
        await anoop.remote()
    await aray.get_async([a.f.remote() for _ in range(50)])
    await asyncio.sleep(0.05)
    assert no_gc() == Counter()


async def test_cancelled_await_leaves_no_callback_on_the_object(aray: Any) -> None:
    gate = asyncio.Event()

    @aray.remote
    async def wait_for_gate() -> int:
        await gate.wait()
        return 1

    ref = wait_for_gate.remote()
    waiter = asyncio.ensure_future(_await(ref))
    await asyncio.sleep(0.05)
    assert ref._entry.waiters, "the awaiting task should be registered on the entry"
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not ref._entry.waiters
    gate.set()
    assert await ref == 1


async def _await(ref: Any) -> Any:
    return await ref
