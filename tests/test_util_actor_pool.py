"""``aioray.util.ActorPool``: Ray's semantics (ordered/unordered results, idle-actor reuse,
errors at the matching item) and the async forms (``map_async``, ``get_next_async``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aioray as ray
from aioray.util import ActorPool

TIMEOUT = 30


@ray.remote
class Doubler:
    def double(self, n: int) -> int:
        return n * 2

    def whoami(self, _v: Any) -> str:
        return ray.get_runtime_context().get_actor_id() or ""

    def fail_on(self, n: int) -> int:
        if n == 2:
            raise ValueError(f"bad item {n}")
        return n

    @ray.method(num_returns=2)
    def pair(self, n: int) -> tuple[int, int]:
        return n, -n


@ray.remote
class Gate:
    """Calls wait until their key is opened (an async actor: waiting holds no thread)."""

    def __init__(self) -> None:
        self.events: dict[Any, asyncio.Event] = {}

    def _ev(self, key: Any) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    async def wait(self, key: Any) -> None:
        await self._ev(key).wait()

    async def open(self, key: Any) -> None:
        self._ev(key).set()


@ray.remote
class Gated:
    """An async actor whose ``run(v)`` waits for ``gate.open(v)`` when ``v`` is gated."""

    def __init__(self, gate: Any, gated: list[Any]) -> None:
        self.gate = gate
        self.gated = set(gated)

    async def run(self, v: Any) -> Any:
        if v in self.gated:
            await self.gate.wait.remote(v)
        return v


def _gated_pool(n: int, gated: list[Any]) -> tuple[ActorPool[Any], Any]:
    gate = Gate.remote()
    return ActorPool([Gated.remote(gate, gated) for _ in range(n)]), gate


def run(a: Any, v: Any) -> Any:
    return a.run.remote(v)


# -- the seed ------------------------------------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_seed_map_doubles_in_order() -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
    assert list(gen) == [2, 4, 6, 8]


# -- map / map_unordered -------------------------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_map_keeps_order_when_later_items_finish_first() -> None:
    pool, gate = _gated_pool(2, gated=[0])
    gen = pool.map(run, [0, 1, 2, 3])
    # 1, 2, 3 can finish while 0 waits; map still yields 0 first.
    ray.get(gate.open.remote(0))
    assert list(gen) == [0, 1, 2, 3]


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_map_unordered_yields_what_finishes_first() -> None:
    pool, gate = _gated_pool(2, gated=[0])
    gen = pool.map_unordered(run, [0, 1, 2, 3])
    first = [next(gen) for _ in range(3)]
    assert sorted(first) == [1, 2, 3]  # 0 is still gated
    ray.get(gate.open.remote(0))
    assert next(gen) == 0
    assert list(gen) == []


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_more_values_than_actors_reuses_idle_actors() -> None:
    actors = [Doubler.remote(), Doubler.remote()]
    ids = {a.hex() for a in actors}
    pool = ActorPool(actors)
    used = list(pool.map(lambda a, v: a.whoami.remote(v), range(12)))
    assert len(used) == 12 and set(used) <= ids
    assert not pool.has_next() and pool.has_free()


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_map_discards_results_left_from_earlier_submissions() -> None:
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v), 100)
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2])) == [2, 4]


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_list_of_refs_result() -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.pair.remote(v), [1, 2, 3])) == [[1, -1], [2, -2],
                                                                          [3, -3]]
    assert sorted(map(tuple, pool.map_unordered(lambda a, v: a.pair.remote(v), [4, 5]))) == [
        (4, -4), (5, -5)]


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_error_is_raised_at_the_matching_item() -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    gen = pool.map(lambda a, v: a.fail_on.remote(v), [0, 1, 2, 3])
    assert next(gen) == 0
    assert next(gen) == 1
    with pytest.raises(ValueError, match="bad item 2"):
        next(gen)
    # The failing actor went back to the pool: the next map uses both actors.
    assert list(pool.map(lambda a, v: a.double.remote(v), [5, 6, 7])) == [10, 12, 14]
    assert len(pool._idle_actors) == 2


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_error_with_get_next_and_unordered() -> None:
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.fail_on.remote(v), 2)
    pool.submit(lambda a, v: a.fail_on.remote(v), 3)
    with pytest.raises(ValueError):
        pool.get_next()
    assert pool.get_next() == 3
    pool.submit(lambda a, v: a.fail_on.remote(v), 2)
    with pytest.raises(ray.exceptions.RayTaskError):
        pool.get_next_unordered()
    assert pool.has_free()


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_dead_actor_is_dropped_from_the_pool() -> None:
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a, b])
    ray.kill(b)  # submit takes the last idle actor: b
    pool.submit(lambda actor, v: actor.double.remote(v), 1)
    with pytest.raises(ray.exceptions.ActorDiedError):
        pool.get_next()
    assert pool.pop_idle() == a
    assert pool.pop_idle() is None


# -- submit / get_next / has_* / pop_idle / push --------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_submit_and_get_next_in_order() -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert not pool.has_next()
    pool.submit(lambda a, v: a.double.remote(v), 1)
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert pool.has_next()
    assert not pool.has_free()
    pool.submit(lambda a, v: a.double.remote(v), 3)  # waits for an actor
    assert (pool.get_next(), pool.get_next(), pool.get_next()) == (2, 4, 6)
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


@pytest.mark.usefixtures("ray")
def test_get_next_timeout_then_ignore() -> None:
    pool, gate = _gated_pool(1, gated=["slow"])
    pool.submit(run, "slow")
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    assert pool.has_next()  # not ignored: still there
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next()
    assert pool.has_free()  # the actor is back (Ray's rule), still busy with "slow"
    pool.submit(run, "fast")
    ray.get(gate.open.remote("slow"))
    assert pool.get_next(timeout=TIMEOUT) == "fast"


@pytest.mark.usefixtures("ray")
def test_get_next_unordered_timeout_and_ignore_drops_the_oldest() -> None:
    pool, gate = _gated_pool(2, gated=["a", "b"])
    pool.submit(run, "a")
    pool.submit(run, "b")
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next_unordered(timeout=0.05, ignore_if_timedout=True)
    assert pool.has_next() and pool.has_free()  # "a" dropped, its actor back
    ray.get(gate.open.remote("b"))
    assert pool.get_next_unordered(timeout=TIMEOUT) == "b"
    ray.get(gate.open.remote("a"))


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_get_next_after_get_next_unordered_is_an_error() -> None:
    pool, gate = _gated_pool(2, gated=[0])
    pool.submit(run, 0)
    pool.submit(run, 1)
    assert pool.get_next_unordered(timeout=TIMEOUT) == 1
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    ray.get(gate.open.remote(0))
    assert pool.get_next_unordered(timeout=TIMEOUT) == 0


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_pop_idle_and_push() -> None:
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a])
    assert pool.has_free()
    assert pool.pop_idle() == a
    assert not pool.has_free() and pool.pop_idle() is None
    pool.submit(lambda actor, v: actor.double.remote(v), 21)  # pending: no actor
    assert not pool.has_next()
    pool.push(b)  # the pending submit runs on b
    assert pool.has_next()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)  # busy
    assert pool.get_next(timeout=TIMEOUT) == 42
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)  # idle
    pool.push(a)
    assert sorted(x.hex() for x in pool._idle_actors) == sorted([a.hex(), b.hex()])


@pytest.mark.usefixtures("ray")
def test_pool_inside_a_worker_process_task() -> None:
    @ray.remote
    def use_pool(actors: list[Any]) -> tuple[int, list[int]]:
        pool = ActorPool(actors)
        return os.getpid(), list(pool.map(lambda a, v: a.double.remote(v), range(5)))

    pid, out = ray.get(use_pool.remote([Doubler.remote(), Doubler.remote()]), timeout=TIMEOUT)
    assert pid != os.getpid()
    assert out == [0, 2, 4, 6, 8]


# -- async forms ----------------------------------------------------------------------------
async def test_map_async_and_unordered_async(aray: Any) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert [v async for v in pool.map_async(lambda a, v: a.double.remote(v), [1, 2, 3])] == [
        2, 4, 6]
    got = [v async for v in pool.map_unordered_async(lambda a, v: a.double.remote(v), range(6))]
    assert sorted(got) == [0, 2, 4, 6, 8, 10]


@pytest.mark.all_backends
async def test_map_async_order_and_error_at_item(aray: Any) -> None:
    pool, gate = _gated_pool(2, gated=[0])
    it = pool.map_async(run, [0, 1, 2])
    nxt = asyncio.ensure_future(it.__anext__())
    done, _ = await asyncio.wait([nxt], timeout=0.05)
    assert not done  # 0 is gated, 1 and 2 are not: map still waits for 0
    await gate.open.remote(0)
    assert await nxt == 0
    assert [v async for v in it] == [1, 2]

    pool2 = ActorPool([Doubler.remote()])
    it2 = pool2.map_async(lambda a, v: a.fail_on.remote(v), [1, 2, 3])
    assert await it2.__anext__() == 1
    with pytest.raises(ValueError, match="bad item 2"):
        await it2.__anext__()


async def test_get_next_async_forms(aray: Any) -> None:
    pool, gate = _gated_pool(2, gated=["slow"])
    pool.submit(run, "slow")
    pool.submit(run, "fast")
    assert await pool.get_next_unordered_async(timeout=TIMEOUT) == "fast"
    with pytest.raises(TimeoutError):
        await pool.get_next_unordered_async(timeout=0.05)
    await gate.open.remote("slow")
    assert await pool.get_next_unordered_async(timeout=TIMEOUT) == "slow"

    pool.submit(run, 1)
    pool.submit(run, 2)
    assert await pool.get_next_async() == 1
    assert await pool.get_next_async(timeout=TIMEOUT) == 2
    with pytest.raises(StopAsyncIteration):  # a coroutine cannot raise StopIteration
        await pool.get_next_async()
    with pytest.raises(StopAsyncIteration):
        await pool.get_next_unordered_async()


async def test_map_async_pulls_an_async_source_lazily(aray: Any) -> None:
    actors = [Doubler.remote(), Doubler.remote()]
    pool = ActorPool(actors)
    pulled = 0

    async def source() -> AsyncIterator[int]:
        nonlocal pulled
        for i in range(10):
            pulled += 1
            yield i

    out = []
    async for v in pool.map_async(lambda a, v: a.double.remote(v), source()):
        # never more than one value per actor ahead of what was consumed
        assert pulled - len(out) <= len(actors)
        out.append(v)
    assert out == [2 * i for i in range(10)]
    out2 = [v async for v in pool.map_unordered_async(lambda a, v: a.double.remote(v),
                                                       source())]
    assert sorted(out2) == [2 * i for i in range(10)]


async def test_sync_calls_on_the_loop_thread_name_the_async_form(aray: Any) -> None:
    pool, gate = _gated_pool(1, gated=[0])
    pool.submit(run, 0)
    with pytest.raises(RuntimeError, match="get_next_async"):
        pool.get_next()
    with pytest.raises(RuntimeError, match="get_next_unordered_async"):
        pool.get_next_unordered()
    with pytest.raises(TimeoutError):  # timeout=0 polls: never blocks, allowed
        pool.get_next(timeout=0)
    await gate.open.remote(0)
    assert await pool.get_next_async() == 0
    # Once a result is ready the sync form does not block and is allowed.
    pool.submit(run, 5)
    await pool._index_to_future[pool._next_return_index]
    assert pool.get_next() == 5
