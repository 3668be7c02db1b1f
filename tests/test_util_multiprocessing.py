"""``aioray.util.multiprocessing.Pool``: ``multiprocessing.Pool``'s interface (Ray's drop-in)
on aioray tasks — results, chunking, errors as the original exception, callbacks, timeouts,
the initializer once per worker process, ``processes`` as the bound on parallel chunks,
lazy ``imap``, close/join/terminate."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import pickle
import threading
import uuid
from typing import Any

import pytest

import aioray
import aioray as ray
from aioray.exceptions import RayTaskError, TaskCancelledError
from aioray.util.multiprocessing import AsyncResult, Pool, TimeoutError

TIMEOUT = 30


# -- pool functions (module level: they run in worker processes) ------------------------------
def square(x: int) -> int:
    return x * x


def add(x: int, inc: int = 1) -> int:
    return x + inc


def pid(_: Any) -> int:
    return os.getpid()


def fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


class CodedError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code


def coded(x: int) -> int:
    raise CodedError(x, "coded failure")


def block_forever(_: Any = None) -> None:
    threading.Event().wait()


def set_marker(key: str, value: str) -> None:
    os.environ[key] = value
    os.environ[key + "_CALLS"] = str(int(os.environ.get(key + "_CALLS", "0")) + 1)


def read_marker(key: str) -> tuple[str | None, str | None, int]:
    return os.environ.get(key), os.environ.get(key + "_CALLS"), os.getpid()


def meet(barrier: Any, i: int) -> int:
    aioray.get(barrier.arrive.remote(), timeout=TIMEOUT)
    return os.getpid()


@ray.remote
class Barrier:
    """``arrive()`` returns once ``n`` callers have arrived."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.arrived = 0
        self.event = asyncio.Event()

    async def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.n:
            self.event.set()
        await self.event.wait()


# -- results ------------------------------------------------------------------------------------
def test_map_and_starmap_return_results_in_order(ray: Any) -> None:
    with Pool(2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
        assert pool.map(square, range(20), chunksize=3) == [x * x for x in range(20)]
        assert pool.map(square, iter(range(5))) == [0, 1, 4, 9, 16]
        assert pool.map(square, []) == []
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.starmap(pow, [(2, 3), (3, 2)], chunksize=1) == [8, 9]


def test_work_runs_in_worker_processes(ray: Any) -> None:
    with Pool(2) as pool:
        assert os.getpid() not in pool.map(pid, range(4))


def test_apply_and_apply_async(ray: Any) -> None:
    with Pool(2) as pool:
        assert pool.apply(square, (7,)) == 49
        assert pool.apply(add, (1,), {"inc": 10}) == 11
        assert pool.apply(add, (1,), kwargs={"inc": 20}) == 21  # Ray's spelling
        result = pool.apply_async(add, (2,), {"inc": 3})
        assert isinstance(result, AsyncResult)
        assert result.get(timeout=TIMEOUT) == 5
        assert result.ready() and result.successful()


def test_async_variants_and_callbacks(ray: Any) -> None:
    got: list[Any] = []
    with Pool(2) as pool:
        r1 = pool.apply_async(square, (4,), callback=got.append)
        r2 = pool.map_async(square, range(5), callback=got.append)
        r3 = pool.starmap_async(add, [(1, 1), (2, 2)], chunksize=1, callback=got.append)
        r4 = pool.map_async(square, [], callback=got.append)
        assert r1.get(TIMEOUT) == 16
        assert r2.get(TIMEOUT) == [0, 1, 4, 9, 16]
        assert r3.get(TIMEOUT) == [2, 4]
        assert r4.get(TIMEOUT) == []
    # Each callback ran (once, before its get() returned) with the whole result.
    assert sorted(map(repr, got)) == sorted(map(repr, [16, [0, 1, 4, 9, 16], [2, 4], []]))


def test_imap_ordered_and_unordered(ray: Any) -> None:
    with Pool(2) as pool:
        assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
        assert list(pool.imap(square, range(10), chunksize=3)) == [x * x for x in range(10)]
        assert sorted(pool.imap_unordered(square, range(10))) == [x * x for x in range(10)]
        assert sorted(pool.imap_unordered(square, range(10), chunksize=4)) == [
            x * x for x in range(10)]
        assert list(pool.imap(square, [])) == []


def test_imap_pulls_its_iterable_lazily(ray: Any) -> None:
    with Pool(2) as pool:
        it = pool.imap(square, itertools.count())  # endless: must not be read to the end
        assert [next(it) for _ in range(25)] == [x * x for x in range(25)]
        unordered = pool.imap_unordered(square, itertools.count(), chunksize=2)
        assert len({next(unordered) for _ in range(10)}) == 10


# -- errors ---------------------------------------------------------------------------------------
def test_errors_are_raised_as_the_original_exception(ray: Any) -> None:
    with Pool(2) as pool:
        with pytest.raises(ValueError, match="bad item 3") as info:
            pool.map(fail_on_3, range(6))
        assert type(info.value) is ValueError
        # The remote error, with the worker's traceback, is chained as the cause.
        assert isinstance(info.value.__cause__, RayTaskError)
        assert "fail_on_3" in str(info.value.__cause__)
        with pytest.raises(ValueError, match="bad item 3"):
            pool.apply(fail_on_3, (3,))
        with pytest.raises(ValueError, match="bad item 3"):
            pool.starmap(fail_on_3, [(1,), (3,)])
        with pytest.raises(CodedError) as coded_info:
            pool.apply(coded, (7,))
        assert coded_info.value.code == 7


def test_error_callback_gets_the_exception(ray: Any) -> None:
    errors: list[BaseException] = []
    values: list[Any] = []
    with Pool(2) as pool:
        r = pool.map_async(fail_on_3, range(6), callback=values.append,
                           error_callback=errors.append)
        with pytest.raises(ValueError):
            r.get(TIMEOUT)
        assert r.ready() and not r.successful()
        r2 = pool.apply_async(fail_on_3, (3,), error_callback=errors.append)
        r2.wait(TIMEOUT)
        assert not r2.successful()
    assert values == []
    assert [type(e) for e in errors] == [ValueError, ValueError]


def test_imap_raises_at_the_failing_item_and_goes_on(ray: Any) -> None:
    with Pool(2) as pool:
        it = pool.imap(fail_on_3, range(6))
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad item 3"):
            next(it)
        assert list(it) == [4, 5]


def test_an_iterable_that_raises_fails_imap_at_that_point(ray: Any) -> None:
    def items() -> Any:
        yield 1
        raise KeyError("source broke")

    with Pool(2) as pool:
        it = pool.imap(square, items())
        assert next(it) == 1
        with pytest.raises(KeyError, match="source broke"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


# -- timeouts -----------------------------------------------------------------------------------
def test_get_and_next_time_out_with_multiprocessing_timeout_error(ray: Any) -> None:
    assert TimeoutError is multiprocessing.TimeoutError
    pool = Pool(2)
    stuck = pool.apply_async(block_forever)
    with pytest.raises(multiprocessing.TimeoutError):
        stuck.get(timeout=0.1)
    assert stuck.wait(0.01) is None
    assert not stuck.ready()
    with pytest.raises(ValueError, match="not ready"):
        stuck.successful()
    it = pool.imap(block_forever, [None])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.1)
    pool.terminate()


# -- the initializer ----------------------------------------------------------------------------
def test_initializer_runs_once_in_each_worker_before_its_items(ray: Any) -> None:
    key = f"AIORAY_POOL_TEST_{uuid.uuid4().hex}"
    with Pool(2, initializer=set_marker, initargs=(key, "ready")) as pool:
        seen = pool.map(read_marker, [key] * 16, chunksize=1)
    assert {(value, calls) for value, calls, _ in seen} == {("ready", "1")}
    assert key not in os.environ  # it ran in the workers, not here


def test_maxtasksperchild_replaces_the_worker_and_reinitializes(ray: Any) -> None:
    key = f"AIORAY_POOL_TEST_{uuid.uuid4().hex}"
    with Pool(2, initializer=set_marker, initargs=(key, "fresh"),
              maxtasksperchild=1) as pool:
        seen = pool.map(read_marker, [key] * 4, chunksize=1)
    assert {(value, calls) for value, calls, _ in seen} == {("fresh", "1")}
    assert len({p for _, _, p in seen}) == 4  # one process per chunk


# -- processes ----------------------------------------------------------------------------------
def test_processes_run_chunks_in_parallel(ray: Any) -> None:
    barrier = Barrier.remote(2)
    with Pool(2) as pool:
        # Each item waits for the other one: this finishes only if both run at once.
        pids = pool.starmap_async(meet, [(barrier, 0), (barrier, 1)], chunksize=1).get(TIMEOUT)
    assert len(set(pids)) == 2


def test_processes_bounds_the_chunks_in_flight(ray: Any) -> None:
    pool = Pool(1)  # the runtime has 2 CPUs; the pool may use one
    first = pool.apply_async(block_forever)
    second = pool.apply_async(square, (3,))
    with pytest.raises(TimeoutError):
        second.get(timeout=0.5)  # queued behind the first, not running beside it
    pool.terminate()
    with pytest.raises(TaskCancelledError):
        first.get(TIMEOUT)
    with pytest.raises(TaskCancelledError):
        second.get(TIMEOUT)


def test_pool_size_is_checked(ray: Any) -> None:
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with Pool(2) as pool, pytest.raises(ValueError, match="Chunksize"):
        pool.map(square, range(3), chunksize=0)


def test_pool_starts_aioray_when_needed() -> None:
    aioray.shutdown()
    with Pool(2) as pool:
        assert aioray.is_initialized()
        assert aioray.cluster_resources()["CPU"] == 2
        assert pool.map(square, range(3)) == [0, 1, 4]


# -- close / join / terminate -----------------------------------------------------------------------
def test_close_lets_work_finish_and_join_waits_for_it(ray: Any) -> None:
    pool = Pool(2)
    result = pool.map_async(square, range(30), chunksize=1)
    it = pool.imap(square, range(30))
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply_async(square, (1,))
    pool.join()
    assert result.ready()
    assert result.get() == [x * x for x in range(30)]
    assert list(it) == [x * x for x in range(30)]


def test_terminate_cancels_work_in_flight(ray: Any) -> None:
    pool = Pool(2)
    stuck = pool.apply_async(block_forever)
    it = pool.imap(block_forever, [1, 2])
    pool.terminate()
    with pytest.raises(TaskCancelledError):
        stuck.get(TIMEOUT)
    with pytest.raises(TaskCancelledError):
        it.next(timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(square, (2,))
    pool.join()  # returns: nothing is left


def test_leaving_the_with_block_terminates(ray: Any) -> None:
    with Pool(2) as pool:
        stuck = pool.apply_async(block_forever)
    with pytest.raises(TaskCancelledError):
        stuck.get(TIMEOUT)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, [1])


def test_a_pool_cannot_be_pickled(ray: Any) -> None:
    with Pool(1) as pool, pytest.raises(NotImplementedError):
        pickle.dumps(pool)


# -- async code -----------------------------------------------------------------------------------
async def test_use_from_async_code_through_a_thread(aray: Any) -> None:
    pool = Pool(2)
    assert await asyncio.to_thread(pool.map, square, range(5)) == [0, 1, 4, 9, 16]
    stuck = pool.apply_async(block_forever)
    with pytest.raises(RuntimeError, match="event loop"):
        stuck.get()  # would block (and deadlock) the loop this test runs on
    pool.terminate()  # on the loop: returns at once
    with pytest.raises(TaskCancelledError):
        await asyncio.to_thread(stuck.get, TIMEOUT)
