"""Generators with wait(), cancel() and garbage collection."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray._engine import runtime as _runtime
from aioray.exceptions import TaskCancelledError


def _poll(cond: Any, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        gc.collect()
        time.sleep(0.01)


@aioray.remote
def gated(gates: list[str]) -> Iterator[int]:
    """Yields i once gate i exists (so the test decides when each item appears)."""
    import time
    for i, g in enumerate(gates):
        while not os.path.exists(g):
            time.sleep(0.005)
        yield i


@aioray.remote
def forever(delay: float) -> Iterator[int]:
    import time
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(delay)


@aioray.remote
async def aforever(delay: float) -> AsyncIterator[int]:
    i = 0
    while True:
        yield i
        i += 1
        await asyncio.sleep(delay)


# -- wait ---------------------------------------------------------------------------------
def test_wait_generator_ready_when_next_item_is(ray: Any, tmp_path: Path) -> None:
    g0, g1 = tmp_path / "0", tmp_path / "1"
    gen = gated.remote([str(g0), str(g1)])
    ready, unready = aioray.wait([gen], timeout=0)
    assert (ready, unready) == ([], [gen])
    ready, unready = aioray.wait([gen], timeout=0.05)
    assert (ready, unready) == ([], [gen])
    g0.touch()
    ready, unready = aioray.wait([gen])
    assert (ready, unready) == ([gen], [])
    assert aioray.get(next(gen)) == 0  # does not block
    assert aioray.wait([gen], timeout=0) == ([], [gen])
    g1.touch()
    assert aioray.wait([gen]) == ([gen], [])
    assert aioray.get(next(gen)) == 1
    # Finished with nothing left: ready, and next() says StopIteration at once.
    assert aioray.wait([gen]) == ([gen], [])
    with pytest.raises(StopIteration):
        next(gen)


def test_wait_mixes_refs_and_generators_with_num_returns(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "g"
    blocked = gated.remote([str(gate)])
    quick = gated.remote([])  # ends at once: ready
    ref = aioray.put(1)
    ready, unready = aioray.wait([blocked, ref, quick], num_returns=2, timeout=30)
    assert ready == [ref, quick]
    assert unready == [blocked]
    ready, unready = aioray.wait([blocked, ref, quick], num_returns=3, timeout=0)
    assert len(ready) == 2 and unready == [blocked]
    gate.touch()
    ready, unready = aioray.wait([blocked, ref, quick], num_returns=3)
    assert ready == [blocked, ref, quick] and unready == []


async def test_wait_async_with_generators(aray: Any) -> None:
    gate = asyncio.Event()

    @aioray.remote
    async def agated() -> AsyncIterator[int]:
        await gate.wait()
        yield 1

    gen = agated.remote()
    ref = aioray.put(0)
    ready, unready = await aioray.wait_async([gen, ref], num_returns=1)
    assert (ready, unready) == ([ref], [gen])
    assert await aioray.wait_async([gen], timeout=0) == ([], [gen])
    gate.set()
    assert await aioray.wait_async([gen]) == ([gen], [])
    assert await (await gen.__anext__()) == 1


def test_wait_rejects_duplicate_generator(ray: Any) -> None:
    gen = gated.remote([])
    with pytest.raises(ValueError, match="more than once"):
        aioray.wait([gen, gen])
    with pytest.raises(TypeError, match="wrap it in a list"):
        aioray.wait(gen)


# -- cancel -------------------------------------------------------------------------------
def _drain_after_cancel(gen: Any) -> list[Any]:
    """Iterate to the end; values until the stream stops with a cancelled ref (or ends)."""
    out: list[Any] = []
    for ref in gen:
        try:
            out.append(aioray.get(ref, timeout=60))
        except TaskCancelledError:
            out.append("cancelled")
    return out


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_cancel_sync_generator(ray: Any, executor: str) -> None:
    opts = {"executor": "thread"} if executor == "thread" else {}
    gen = forever.options(**opts).remote(0.01)
    assert aioray.get(next(gen)) == 0
    aioray.cancel(gen)
    out = _drain_after_cancel(gen)  # never hangs: the stream ends
    assert out == [] or out[-1] == "cancelled"
    assert all(isinstance(v, int) for v in out[:-1])
    with pytest.raises(TaskCancelledError):
        aioray.get(gen.completed(), timeout=60)
    with pytest.raises(StopIteration):
        next(gen)


def test_cancel_loop_generator(ray: Any) -> None:
    gen = aforever.remote(0.001)
    assert aioray.get(next(gen)) == 0
    aioray.cancel(gen)
    out = _drain_after_cancel(gen)
    assert out[-1] == "cancelled"
    with pytest.raises(TaskCancelledError):
        aioray.get(gen.completed(), timeout=60)


async def test_cancel_generator_async(aray: Any) -> None:
    gen = forever.remote(0.01)
    assert await (await gen.__anext__()) == 0
    aioray.cancel(gen)
    out: list[Any] = []
    async for ref in gen:
        try:
            out.append(await ref)
        except TaskCancelledError:
            out.append("cancelled")
    assert out == [] or out[-1] == "cancelled"


def test_cancel_before_first_item(ray: Any, tmp_path: Path) -> None:
    gen = gated.remote([str(tmp_path / "never")])
    aioray.cancel(gen)
    refs = list(gen)
    assert len(refs) == 1
    with pytest.raises(TaskCancelledError):
        aioray.get(refs[0])


def test_cancelled_process_generator_frees_its_worker(ray: Any) -> None:
    gens = [forever.remote(0.01) for _ in range(2)]  # both CPUs busy forever
    for g in gens:
        next(g)
        aioray.cancel(g)
        _drain_after_cancel(g)

    @aioray.remote
    def f() -> int:
        return 7

    assert aioray.get(f.remote(), timeout=60) == 7


def test_cancel_finished_generator_is_a_no_op(ray: Any) -> None:
    gen = gated.remote([])
    aioray.get(gen.completed())
    aioray.cancel(gen)
    assert list(gen) == []
    assert aioray.get(gen.completed()) is None


# -- garbage collection ---------------------------------------------------------------------
@aioray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


def test_untaken_refs_freed_when_generator_dropped(ray: Any) -> None:
    gen = count.remote(5)
    ref1 = next(gen)
    aioray.get(gen.completed())
    untaken = [weakref.ref(r._entry) for r in gen._stream.items]
    assert len(untaken) == 4
    stream = weakref.ref(gen._stream)
    del gen
    _poll(lambda: all(w() is None for w in untaken) and stream() is None)
    assert aioray.get(ref1) == 0  # a ref taken before stays valid


def test_items_produced_after_drop_are_not_kept(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote([str(tmp_path / "first"), str(gate), str(gate), str(gate)])
    (tmp_path / "first").touch()
    ref0 = next(gen)
    stream = gen._stream
    done = gen.completed()
    del gen
    _poll(lambda: stream.dropped)
    gate.touch()
    assert aioray.get(done, timeout=60) is None  # the task still runs to the end (eager)
    assert stream.produced == 4 and len(stream.items) == 0
    assert aioray.get(ref0) == 0


async def test_untaken_refs_freed_async(aray: Any) -> None:
    @aioray.remote
    async def acount(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    gen = acount.remote(3)
    ref = await gen.__anext__()
    await gen.completed()
    untaken = [weakref.ref(r._entry) for r in gen._stream.items]
    del gen
    gc.collect()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if all(w() is None for w in untaken):
            break
    assert all(w() is None for w in untaken)
    assert await ref == 0


def test_generator_dropped_inside_worker_is_released(ray: Any) -> None:
    @aioray.remote
    def consumer() -> int:
        gen = count.remote(5)
        first = aioray.get(next(gen))
        del gen  # 4 refs never taken
        return first  # type: ignore[no-any-return]

    assert aioray.get(consumer.remote(), timeout=60) == 0
    rt = _runtime.current_runtime()
    assert rt is not None
    _poll(lambda: not rt.backchannel.generators)


def test_timed_out_waits_do_not_pile_up(ray: Any, tmp_path: Path) -> None:
    gen = gated.remote([str(tmp_path / "never")])
    for _ in range(30):
        assert aioray.wait([gen], timeout=0.001) == ([], [gen])
    _poll(lambda: not gen._stream._waiters)
    aioray.cancel(gen)
