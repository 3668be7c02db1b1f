"""``_generator_backpressure_num_objects=N``: the producer never gets more than N refs ahead.

Each producer bumps a counter *before* it yields an item, so the counter says how far the
producer got. After the consumer has taken ``t`` refs the counter must be ``<= t + N``.
"""

from __future__ import annotations

import asyncio
import gc
import glob
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray._objects import shm as _shared_memory

N = 2
TOTAL = 8

# Loop, thread and actor producers run in the driver process: a plain dict is the counter.
PRODUCED: dict[str, int] = {}
_lock = threading.Lock()


def _bump(key: str) -> None:
    with _lock:
        PRODUCED[key] = PRODUCED.get(key, 0) + 1


@pytest.fixture(autouse=True)
def _reset() -> None:
    PRODUCED.clear()


def _poll(cond: Callable[[], bool], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


def _check_bounded(gen: Any, produced: Callable[[], int]) -> None:
    """The producer pauses at N unconsumed refs, and never runs more than N ahead."""
    _poll(lambda: produced() >= N)
    time.sleep(0.2)  # a producer ignoring backpressure would run on to TOTAL meanwhile
    assert produced() == N
    taken = 0
    for ref in gen:
        taken += 1
        assert produced() <= taken + N
        assert aioray.get(ref) == taken - 1
    assert taken == TOTAL and produced() == TOTAL


# -- producers -------------------------------------------------------------------------------
@aioray.remote
def file_producer(path: str, n: int) -> Iterator[int]:
    for i in range(n):
        with open(path, "a") as f:
            f.write("x")
        yield i


@aioray.remote
def dict_producer(key: str, n: int) -> Iterator[int]:
    for i in range(n):
        _bump(key)
        yield i


@aioray.remote
async def async_producer(key: str, n: int) -> AsyncIterator[int]:
    for i in range(n):
        _bump(key)
        yield i


def _file_count(path: Path) -> Callable[[], int]:
    return lambda: len(path.read_text()) if path.exists() else 0


def test_process_producer_is_bounded(ray: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    gen = file_producer.options(_generator_backpressure_num_objects=N).remote(str(log), TOTAL)
    _check_bounded(gen, _file_count(log))


def test_thread_producer_is_bounded(ray: Any) -> None:
    gen = dict_producer.options(executor="thread",
                                _generator_backpressure_num_objects=N).remote("t", TOTAL)
    _check_bounded(gen, lambda: PRODUCED.get("t", 0))


def test_loop_producer_is_bounded(ray: Any) -> None:
    gen = async_producer.options(_generator_backpressure_num_objects=N).remote("a", TOTAL)
    _check_bounded(gen, lambda: PRODUCED.get("a", 0))


@aioray.remote
class Producer:
    def gen(self, key: str, n: int) -> Iterator[int]:
        for i in range(n):
            _bump(key)
            yield i

    async def agen(self, key: str, n: int) -> AsyncIterator[int]:
        for i in range(n):
            _bump(key)
            yield i


@aioray.remote
class AsyncProducer:
    async def agen(self, key: str, n: int) -> AsyncIterator[int]:
        for i in range(n):
            _bump(key)
            await asyncio.sleep(0)
            yield i


@pytest.mark.parametrize("kind", ["sync", "threaded", "async"])
def test_actor_producer_is_bounded(ray: Any, kind: str) -> None:
    if kind == "async":
        method = AsyncProducer.remote().agen
    else:
        actor = (Producer.options(max_concurrency=4) if kind == "threaded" else Producer).remote()
        method = actor.gen
    gen = method.options(_generator_backpressure_num_objects=N).remote(kind, TOTAL)
    _check_bounded(gen, lambda: PRODUCED.get(kind, 0))


async def test_bounded_with_async_consumer(aray: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    produced = _file_count(log)
    gen = file_producer.options(_generator_backpressure_num_objects=N).remote(str(log), TOTAL)
    taken = 0
    async for ref in gen:
        taken += 1
        assert produced() <= taken + N
        assert await ref == taken - 1
    assert taken == TOTAL


def test_without_backpressure_the_producer_runs_ahead(ray: Any, tmp_path: Path) -> None:
    """Control for the tests above: the same producer, no option, finishes unconsumed."""
    log = tmp_path / "log"
    gen = file_producer.remote(str(log), TOTAL)
    _poll(lambda: _file_count(log)() == TOTAL)
    assert len(list(gen)) == TOTAL


# -- memory stays flat: large items from a worker process ----------------------------------
def test_large_items_held_in_memory_are_bounded(ray: Any) -> None:
    @aioray.remote
    def big(n: int) -> Iterator[Any]:
        import numpy as np
        for i in range(n):
            yield np.full(2 << 20, i, dtype=np.uint8)  # 2 MiB: shared memory

    pattern = os.path.join(_shared_memory._DIR,
                           _shared_memory.segment_prefix(os.getpid()) + "*")
    gen = big.options(_generator_backpressure_num_objects=N).remote(12)
    most = 0
    for i, ref in enumerate(gen):
        arr = aioray.get(ref)
        assert arr[0] == i
        del arr, ref
        gc.collect()
        most = max(most, len(glob.glob(pattern)))
    # N unconsumed + the one in hand (+1 for an unlink racing the count).
    assert most <= N + 2


# -- the consumer goes away or cancels: a paused producer never stays stuck ------------------
def test_dropping_generator_releases_paused_process_producer(ray: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    gen = file_producer.options(_generator_backpressure_num_objects=N).remote(str(log), TOTAL)
    done = gen.completed()
    _poll(lambda: _file_count(log)() >= N)
    del gen
    assert aioray.get(done, timeout=60) is None
    assert _file_count(log)() == TOTAL


def test_dropping_generator_releases_paused_loop_producer(ray: Any) -> None:
    gen = async_producer.options(_generator_backpressure_num_objects=N).remote("d", TOTAL)
    done = gen.completed()
    _poll(lambda: PRODUCED.get("d", 0) >= N)
    del gen
    assert aioray.get(done, timeout=60) is None
    assert PRODUCED["d"] == TOTAL


def test_dropping_generator_releases_paused_actor_producer(ray: Any) -> None:
    actor = Producer.remote()
    gen = actor.gen.options(_generator_backpressure_num_objects=N).remote("s", TOTAL)
    done = gen.completed()
    _poll(lambda: PRODUCED.get("s", 0) >= N)
    del gen
    assert aioray.get(done, timeout=60) is None
    assert PRODUCED["s"] == TOTAL


@pytest.mark.parametrize("executor", ["process", "thread", "loop"])
def test_cancel_paused_producer(ray: Any, executor: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    if executor == "process":
        gen = file_producer.options(_generator_backpressure_num_objects=1).remote(str(log), 100)
        _poll(lambda: _file_count(log)() >= 1)
    elif executor == "thread":
        gen = dict_producer.options(executor="thread",
                                    _generator_backpressure_num_objects=1).remote("c", 100)
        _poll(lambda: PRODUCED.get("c", 0) >= 1)
    else:
        gen = async_producer.options(_generator_backpressure_num_objects=1).remote("c", 100)
        _poll(lambda: PRODUCED.get("c", 0) >= 1)
    aioray.cancel(gen)
    refs = list(gen)  # ends, never hangs
    assert 1 <= len(refs) <= 3
    with pytest.raises(aioray.exceptions.TaskCancelledError):
        aioray.get(gen.completed(), timeout=60)
