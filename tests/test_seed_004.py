"""Every code example of seed 004 ("The Ray API", an old Ray docs page) with
``import aioray as ray``: as written from sync code, and in await form under pytest-asyncio.

Adaptations, each noted where it happens:

* ``ray.init(redis_address=...)`` connects to a cluster: aioray gives a clear error instead.
* ``num_return_vals`` is the pre-1.0 spelling of ``num_returns``; aioray accepts it as an alias.
* The second ``wait`` example says "Start 5 tasks" but starts ``range(3)`` and then asks for
  ``num_returns=4`` (an error in modern Ray): we start ``range(5)`` as the comment says.
* ``timeout=2500`` was milliseconds in that old API; modern Ray (and aioray) take seconds: 2.5.
* ``ray.error_info()`` is gone from modern Ray (errors are printed by the driver instead): not
  provided; we check the "printed in the background" half of that example.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

import aioray
import aioray as ray

np = pytest.importorskip("numpy")


# -- Starting Ray ------------------------------------------------------------------------------------
def test_starting_ray_in_a_script() -> None:
    ray.init()
    assert ray.is_initialized()
    ray.shutdown()
    ray.init(num_cpus=20, num_gpus=2)
    assert ray.cluster_resources() == {"CPU": 20.0, "GPU": 2.0}
    ray.shutdown()


def test_connecting_to_an_existing_cluster_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cluster"):
        ray.init(redis_address="12.345.67.89:6379")
    assert not ray.is_initialized()


# -- Defining remote functions --------------------------------------------------------------------------
def test_remote_functions(ray: Any) -> None:
    @ray.remote
    def f(x: int) -> int:
        return x + 1

    x_id = f.remote(0)
    assert ray.get(x_id) == 1
    y_id = f.remote(x_id)
    assert ray.get(y_id) == 2


def test_num_return_vals(ray: Any) -> None:
    @ray.remote(num_return_vals=2)
    def f() -> tuple[int, int]:
        return 1, 2

    x_id, y_id = f.remote()
    assert ray.get(x_id) == 1
    assert ray.get(y_id) == 2


# -- Getting values from object IDs ---------------------------------------------------------------------
@ray.remote
def dict_task() -> dict[str, list[str]]:
    return {"key1": ["value"]}


def test_getting_values(ray: Any) -> None:
    assert ray.get(dict_task.remote()) == {"key1": ["value"]}
    assert ray.get([dict_task.remote() for _ in range(2)]) == [{"key1": ["value"]}] * 2


# -- Putting objects in the object store ----------------------------------------------------------------
def test_put(ray: Any) -> None:
    x_id = ray.put(1)
    assert ray.get(x_id) == 1


def test_put_numpy_once_for_many_tasks(ray: Any) -> None:
    @ray.remote
    def f(x: Any) -> None:
        pass

    x = np.zeros(10 ** 6)
    # Alternative 1: x is copied into the object store 10 times.
    refs1 = [f.remote(x) for _ in range(10)]
    # Alternative 2: x is copied into the object store once.
    x_id = ray.put(x)
    refs2 = [f.remote(x_id) for _ in range(10)]
    assert ray.get(refs1 + refs2, timeout=60) == [None] * 20


def test_numpy_results_are_read_only(ray: Any) -> None:
    # "if you want to mutate a numpy array that was returned by a remote function, you will
    # have to first copy it."
    @ray.remote
    def make() -> Any:
        return np.ones(10 ** 6)

    arr = ray.get(make.remote())
    with pytest.raises(ValueError):
        arr[0] = 2
    copy = arr.copy()
    copy[0] = 2
    assert copy[0] == 2 and arr[0] == 1


# -- Waiting for a subset of tasks to finish ------------------------------------------------------------
@ray.remote
def sleeper(n: float) -> float:
    time.sleep(n)
    return n


def test_wait_examples(ray: Any) -> None:
    # The seed sleeps n seconds; we sleep n/5 (same shape, a faster suite).
    def f_remote(n: float) -> Any:
        return sleeper.remote(n / 5)

    # Start 3 tasks with different durations.
    results = [f_remote(i) for i in range(3)]
    # Block until 2 of them have finished.
    ready_ids, remaining_ids = ray.wait(results, num_returns=2)
    assert len(ready_ids) == 2 and len(remaining_ids) == 1
    assert set(ready_ids) | set(remaining_ids) == set(results)

    # Start 5 tasks with different durations (the seed's range(3) contradicts its comment).
    results = [f_remote(i) for i in range(5)]
    # Block until 4 of them have finished or 2.5 seconds pass (seed: timeout=2500 ms).
    ready_ids, remaining_ids = ray.wait(results, num_returns=4, timeout=2.5)
    assert len(ready_ids) <= 4 and len(ready_ids) + len(remaining_ids) == 5
    assert set(ready_ids) | set(remaining_ids) == set(results)
    assert [r for r in results if r in ready_ids] == ready_ids  # input order kept


def test_seed_wait_with_num_returns_above_len_is_rejected(ray: Any) -> None:
    # As literally written (3 tasks, num_returns=4) modern Ray raises; so does aioray.
    results = [sleeper.remote(0) for _ in range(3)]
    with pytest.raises(ValueError, match="num_returns"):
        ray.wait(results, num_returns=4, timeout=2.5)


def test_infinite_loop_of_tasks(ray: Any, capsys: Any) -> None:
    @ray.remote
    def f() -> int:
        return 1

    # Start 5 tasks.
    remaining_ids = [f.remote() for i in range(5)]
    # Whenever one task finishes, start a new one.
    for _ in range(100):
        ready_ids, remaining_ids = ray.wait(remaining_ids)
        # Get the available object and do something with it.
        print(ray.get(ready_ids))
        # Start a new task.
        remaining_ids.append(f.remote())
    out = capsys.readouterr().out.split("\n")
    assert out[:100] == ["[1]"] * 100
    assert len(remaining_ids) == 5
    assert ray.get(remaining_ids) == [1] * 5


# -- Viewing errors ------------------------------------------------------------------------------------
def test_errors_printed_in_background(ray: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.delenv("AIORAY_SILENCE_UNRETRIEVED_ERRORS", raising=False)

    @ray.remote
    def f() -> None:
        raise Exception("This task failed!!")

    f.remote()  # An error message will be printed in the background.
    err = ""
    deadline = time.monotonic() + 30
    while "This task failed!!" not in err and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        err += capsys.readouterr().err
    assert "This task failed!!" in err
    # ray.error_info() is gone from modern Ray; aioray does not provide it either.
    assert not hasattr(aioray, "error_info")


def test_errors_reraised_by_get(ray: Any) -> None:
    @ray.remote
    def f() -> None:
        raise Exception("This task failed!!")

    with pytest.raises(Exception, match="This task failed!!") as ei:
        ray.get(f.remote())
    assert isinstance(ei.value, ray.exceptions.RayTaskError)


# -- the same examples, in await form ------------------------------------------------------------------
async def test_async_remote_functions_and_num_return_vals(aray: Any) -> None:
    @ray.remote
    def f(x: int) -> int:
        return x + 1

    x_id = f.remote(0)
    assert await x_id == 1
    assert await f.remote(x_id) == 2

    @ray.remote(num_return_vals=2)
    def g() -> tuple[int, int]:
        return 1, 2

    x_id, y_id = g.remote()
    assert await asyncio.gather(x_id, y_id) == [1, 2]


async def test_async_getting_and_putting(aray: Any) -> None:
    assert await dict_task.remote() == {"key1": ["value"]}
    assert await ray.get_async([dict_task.remote() for _ in range(2)]) == [{"key1": ["value"]}] * 2
    assert await ray.put(1) == 1

    @ray.remote
    async def f(x: Any) -> None:
        pass

    x_id = ray.put(np.zeros(10 ** 6))
    assert await asyncio.gather(*[f.remote(x_id) for _ in range(10)]) == [None] * 10


async def test_async_wait_examples(aray: Any) -> None:
    @ray.remote
    async def f(n: float) -> float:
        await asyncio.sleep(n)
        return n

    scale = 0.05  # the seed's durations, scaled down: the await form needs no CPU per task
    results = [f.remote(i * scale) for i in range(3)]
    ready_ids, remaining_ids = await ray.wait_async(results, num_returns=2)
    assert len(ready_ids) == 2 and len(remaining_ids) == 1
    results = [f.remote(i * scale) for i in range(5)]
    ready_ids, remaining_ids = await ray.wait_async(results, num_returns=4, timeout=2.5)
    assert len(ready_ids) <= 4 and len(ready_ids) + len(remaining_ids) == 5

    @ray.remote
    def one() -> int:
        return 1

    remaining_ids = [one.remote() for i in range(5)]
    got = []
    for _ in range(100):
        ready_ids, remaining_ids = await ray.wait_async(remaining_ids)
        got.append(await ray.get_async(ready_ids))
        remaining_ids.append(one.remote())
    assert got == [[1]] * 100


async def test_async_as_completed_replaces_the_wait_loop(aray: Any) -> None:
    @ray.remote
    def f() -> int:
        return 1

    total = 0
    async for ref in ray.as_completed([f.remote() for _ in range(5)]):
        total += await ref
    assert total == 5


async def test_async_errors(aray: Any) -> None:
    @ray.remote
    def f() -> None:
        raise Exception("This task failed!!")

    with pytest.raises(Exception, match="This task failed!!"):
        await f.remote()
