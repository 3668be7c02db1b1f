"""The loop model: adopting a running loop, awaiting refs from any loop, blocking calls on the
loop thread, the async-native API, runtime context and resources."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

import aioray
from aioray.exceptions import GetTimeoutError, RayTaskError


@aioray.remote
def add(a: int, b: int) -> int:
    return a + b


@aioray.remote
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@aioray.remote
def fail() -> None:
    raise ValueError("failed")


def _rt() -> Any:
    return aioray._engine.runtime.current_runtime()


def _gated(n: int) -> tuple[list[threading.Event], Any]:
    """``n`` events and a thread task that returns its index once its event is set."""
    events = [threading.Event() for _ in range(n)]

    @aioray.remote(executor="thread", num_cpus=0)
    def gated(i: int) -> int:
        assert events[i].wait(30)
        return i

    return events, gated


# -- where the loop lives --------------------------------------------------------------------------
async def test_init_inside_running_loop_adopts_it(aray: Any) -> None:
    rt = _rt()
    assert rt.loop is asyncio.get_running_loop()
    assert rt.adopted and rt.thread is None
    assert await add.remote(1, 2) == 3
    assert await async_add.remote(2, 2) == 4


def test_init_in_sync_code_starts_loop_thread(ray: Any) -> None:
    rt = _rt()
    assert not rt.adopted
    assert rt.thread is not None and rt.thread.is_alive()
    assert rt.loop_thread_id != threading.get_ident()


def test_implicit_init_in_sync_code() -> None:
    aioray.shutdown()
    assert not aioray.is_initialized()
    assert aioray.get(add.remote(2, 3)) == 5
    assert aioray.is_initialized() and not _rt().adopted


async def test_implicit_init_in_async_code() -> None:
    aioray.shutdown()
    assert await async_add.remote(1, 1) == 2
    assert _rt().loop is asyncio.get_running_loop()
    aioray.shutdown()


def test_asyncio_run_after_asyncio_run() -> None:
    # Each asyncio.run() loop closes; the next implicit use must not reuse the dead runtime.
    async def main() -> int:
        return await async_add.remote(1, 2)  # type: ignore[no-any-return]

    assert asyncio.run(main()) == 3
    assert asyncio.run(main()) == 3
    aioray.shutdown()


# -- awaiting refs from any loop -------------------------------------------------------------------
def test_await_from_another_loop(ray: Any) -> None:
    events, gated = _gated(1)
    pending = gated.remote(0)

    async def main() -> list[Any]:
        assert asyncio.get_running_loop() is not _rt().loop
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, events[0].set)
        return [await pending, await add.remote(1, 1), await async_add.remote(2, 2)]

    assert asyncio.run(main()) == [0, 2, 4]


async def test_await_from_a_thread_running_its_own_loop(aray: Any) -> None:
    ref = async_add.remote(20, 22)
    done = add.remote(1, 1)
    await done

    def other_thread() -> list[int]:
        async def main() -> list[int]:
            return [await ref, await done]
        return asyncio.run(main())

    result = await asyncio.get_running_loop().run_in_executor(None, other_thread)
    assert result == [42, 2]


async def test_asyncio_gather_and_wait_on_refs(aray: Any) -> None:
    refs = [add.remote(i, i) for i in range(4)] + [async_add.remote(1, 1)]
    assert await asyncio.gather(*refs) == [0, 2, 4, 6, 2]
    done, pending = await asyncio.wait([add.remote(1, 2), async_add.remote(3, 4)])
    assert not pending and sorted(t.result() for t in done) == [3, 7]
    done, pending = await asyncio.wait([add.remote(5, 5)], timeout=30)
    assert [t.result() for t in done] == [10]


async def test_asyncio_wait_first_completed_and_timeout(aray: Any) -> None:
    events, gated = _gated(2)
    refs = [gated.remote(0), gated.remote(1)]
    done, pending = await asyncio.wait(refs, timeout=0.05)
    assert not done and len(pending) == 2
    events[1].set()
    done, pending = await asyncio.wait(refs, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert [d.result() for d in done] == [1]
    events[0].set()
    done, pending = await asyncio.wait(refs)
    assert sorted(d.result() for d in done) == [0, 1] and not pending


async def test_asyncio_wait_does_not_retrieve_errors(aray: Any) -> None:
    ref = fail.remote()
    done, _ = await asyncio.wait([ref])
    assert len(done) == 1
    if ref in done:  # Python 3.11+: asyncio.wait hands back the refs themselves
        assert ref.done() and isinstance(ref.exception(), ValueError)
        with pytest.raises(ValueError):
            ref.result()


def test_seed003_asyncio_wait_in_asyncio_run() -> None:
    # seed 003, "way 2": await asyncio.wait([task.remote()]) inside asyncio.run().
    aioray.shutdown()

    @aioray.remote
    def task() -> int:
        return 1

    aioray.wait([task.remote()])  # way 1

    async def wait_obj() -> None:
        done, pending = await asyncio.wait([task.remote()])
        assert len(done) == 1 and not pending

    asyncio.run(wait_obj())
    aioray.shutdown()


async def test_await_error(aray: Any) -> None:
    with pytest.raises(ValueError) as ei:
        await fail.remote()
    assert isinstance(ei.value, RayTaskError)
    results = await asyncio.gather(fail.remote(), add.remote(1, 1), return_exceptions=True)
    assert isinstance(results[0], ValueError) and results[1] == 2


async def test_await_ready_ref_twice(aray: Any) -> None:
    ref = aioray.put({"a": 1})
    assert await ref == {"a": 1}
    assert await ref == {"a": 1}


def test_ref_future(ray: Any) -> None:
    events, gated = _gated(1)
    ref = gated.remote(0)
    fut = ref.future()
    assert isinstance(fut, concurrent.futures.Future)
    assert not fut.done()
    events[0].set()
    assert fut.result(timeout=30) == 0
    assert aioray.put(5).future().result(timeout=5) == 5  # already resolved
    with pytest.raises(ValueError):
        fail.remote().future().result(timeout=30)


async def test_ref_future_and_as_future_in_async_code(aray: Any) -> None:
    fut = add.remote(1, 2).future()
    assert await asyncio.wrap_future(fut) == 3
    afut = async_add.remote(3, 3).as_future()
    assert isinstance(afut, asyncio.Future)
    assert await afut == 6


async def test_as_future_from_background_loop_runtime() -> None:
    # A runtime on its own thread, awaited from this (pytest-asyncio) loop.
    def start() -> None:
        aioray.init(num_cpus=2)
    await asyncio.get_running_loop().run_in_executor(None, start)
    try:
        assert _rt().loop is not asyncio.get_running_loop()
        assert await add.remote(4, 4) == 8
        assert await async_add.remote(1, 2).as_future() == 3
        assert await aioray.get_async([add.remote(1, 1), async_add.remote(2, 2)]) == [2, 4]
    finally:
        aioray.shutdown()


# -- blocking calls on the loop thread -------------------------------------------------------------
async def test_blocking_get_on_loop_thread_raises(aray: Any) -> None:
    events, gated = _gated(1)
    ref = gated.remote(0)
    with pytest.raises(RuntimeError, match="await") as ei:
        aioray.get(ref)
    assert "get_async" in str(ei.value)
    with pytest.raises(RuntimeError, match="wait_async"):
        aioray.wait([ref])
    events[0].set()
    assert await ref == 0
    assert aioray.get(ref) == 0  # a ready ref needs no loop hop: fine anywhere


def test_blocking_get_inside_async_task_raises(ray: Any) -> None:
    events, gated = _gated(1)

    @aioray.remote
    async def blocker() -> Any:
        return aioray.get(gated.remote(0))

    with pytest.raises(RuntimeError, match="await"):
        aioray.get(blocker.remote(), timeout=30)
    events[0].set()


# -- async-native API --------------------------------------------------------------------------------
async def test_get_async(aray: Any) -> None:
    assert await aioray.get_async(add.remote(1, 1)) == 2
    assert await aioray.get_async([add.remote(1, 1), async_add.remote(1, 2)]) == [2, 3]
    events, gated = _gated(1)
    ref = gated.remote(0)
    with pytest.raises(GetTimeoutError):
        await aioray.get_async(ref, timeout=0.05)
    events[0].set()
    assert await aioray.get_async(ref, timeout=30) == 0
    with pytest.raises(TypeError):
        await aioray.get_async("nope")
    with pytest.raises(ValueError):
        await aioray.get_async(ref, timeout=-1)


async def test_wait_async(aray: Any) -> None:
    events, gated = _gated(3)
    refs = [gated.remote(i) for i in range(3)]
    ready, rest = await aioray.wait_async(refs, timeout=0)
    assert ready == [] and rest == refs
    events[1].set()
    ready, rest = await aioray.wait_async(refs)
    assert ready == [refs[1]] and rest == [refs[0], refs[2]]
    ready, rest = await aioray.wait_async(refs, num_returns=2, timeout=0.05)
    assert ready == [refs[1]]
    events[0].set()
    events[2].set()
    ready, rest = await aioray.wait_async(refs, num_returns=3)
    assert ready == refs and rest == []
    with pytest.raises(ValueError):
        await aioray.wait_async([refs[0], refs[0]])


def test_as_completed_sync_in_completion_order(ray: Any) -> None:
    events, gated = _gated(3)
    refs = [gated.remote(i) for i in range(3)]
    order = []
    it = aioray.as_completed(refs)
    for i in (2, 0, 1):
        events[i].set()
        ref = next(it)
        order.append(aioray.get(ref, timeout=0))  # yielded refs are ready
    assert order == [2, 0, 1]
    with pytest.raises(StopIteration):
        next(it)


async def test_as_completed_async_in_completion_order(aray: Any) -> None:
    events, gated = _gated(3)
    refs = [gated.remote(i) for i in range(3)]
    order = []
    it = aioray.as_completed(refs)
    for i in (1, 2, 0):
        events[i].set()
        order.append(await (await it.__anext__()))
    assert order == [1, 2, 0]
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_as_completed_async_for(aray: Any) -> None:
    refs = [add.remote(i, 0) for i in range(5)] + [async_add.remote(5, 0)]
    seen = [await r async for r in aioray.as_completed(refs)]
    assert sorted(seen) == list(range(6))


def test_as_completed_sync_for_and_timeout(ray: Any) -> None:
    refs = [add.remote(i, 0) for i in range(4)]
    assert sorted(aioray.get(r) for r in aioray.as_completed(refs)) == [0, 1, 2, 3]
    events, gated = _gated(1)
    with pytest.raises(GetTimeoutError):
        list(aioray.as_completed([gated.remote(0)], timeout=0.05))
    events[0].set()
    with pytest.raises(TypeError):
        aioray.as_completed([1])


async def test_as_completed_async_timeout(aray: Any) -> None:
    events, gated = _gated(1)
    with pytest.raises(GetTimeoutError):
        async for _ in aioray.as_completed([gated.remote(0)], timeout=0.05):
            pass
    events[0].set()


def test_as_completed_in_worker_process(ray: Any) -> None:
    @aioray.remote
    def collect() -> list[int]:
        return sorted(aioray.get(r) for r in aioray.as_completed(
            [add.remote(i, 1) for i in range(3)]))

    assert aioray.get(collect.remote(), timeout=60) == [1, 2, 3]


def test_get_async_and_wait_async_in_worker_process(ray: Any) -> None:
    @aioray.remote
    def inner() -> Any:
        async def main() -> Any:
            refs = [add.remote(1, 1), add.remote(2, 2)]
            ready, _ = await aioray.wait_async(refs, num_returns=2, timeout=30)
            done, _ = await asyncio.wait([add.remote(3, 3)])
            return (await aioray.get_async(ready), await refs[0],
                    [d.result() for d in done], refs[1].future().result(30))
        return asyncio.run(main())

    assert aioray.get(inner.remote(), timeout=60) == ([2, 4], 2, [6], 4)


# -- runtime context -------------------------------------------------------------------------------
def test_runtime_context_in_driver() -> None:
    info = aioray.init(num_cpus=1, namespace="my-ns")
    ctx = aioray.get_runtime_context()
    assert ctx.get_namespace() == "my-ns" == ctx.namespace
    assert ctx.get_job_id() == info["job_id"] == ctx.job_id
    assert ctx.get_task_id() is None
    assert ctx.get_actor_id() is None
    assert ctx.get()["namespace"] == "my-ns"


@pytest.mark.parametrize("kind", ["process", "thread", "async"])
def test_runtime_context_in_tasks(kind: str) -> None:
    aioray.init(num_cpus=2, namespace="ctx-ns")

    def body() -> tuple[str | None, str, str]:
        ctx = aioray.get_runtime_context()
        return ctx.get_task_id(), ctx.get_namespace(), ctx.get_job_id()

    async def abody() -> tuple[str | None, str, str]:
        return body()

    if kind == "async":
        ref = aioray.remote(abody).remote()
    else:
        ref = aioray.remote(body).options(executor=kind).remote()
    task_id, ns, job = aioray.get(ref, timeout=60)
    assert task_id == ref.task_id()
    assert ns == "ctx-ns"
    assert job == aioray.get_runtime_context().get_job_id()


def test_gpu_ids_empty_without_gpus(ray: Any) -> None:
    assert aioray.get_gpu_ids() == []
    assert aioray.get(aioray.remote(aioray.get_gpu_ids).remote()) == []


# -- resources views -------------------------------------------------------------------------------
def test_cluster_and_available_resources() -> None:
    aioray.init(num_cpus=2, resources={"disk": 3})
    assert aioray.cluster_resources() == {"CPU": 2.0, "disk": 3.0}
    assert aioray.available_resources() == {"CPU": 2.0, "disk": 3.0}
    started = threading.Event()
    release = threading.Event()

    @aioray.remote(executor="thread", num_cpus=1, resources={"disk": 2})
    def hold() -> None:
        started.set()
        release.wait(30)

    ref = hold.remote()
    assert started.wait(30)
    assert aioray.available_resources() == {"CPU": 1.0, "disk": 1.0}
    assert aioray.cluster_resources() == {"CPU": 2.0, "disk": 3.0}
    release.set()
    aioray.get(ref, timeout=30)
    deadline = time.monotonic() + 10
    while aioray.available_resources() != {"CPU": 2.0, "disk": 3.0}:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_resources_visible_from_worker_process() -> None:
    aioray.init(num_cpus=2, resources={"X": 1})

    @aioray.remote
    def view() -> tuple[dict[str, float], dict[str, float]]:
        return aioray.cluster_resources(), aioray.available_resources()

    total, avail = aioray.get(view.remote(), timeout=60)
    assert total == {"CPU": 2.0, "X": 1.0}
    assert avail == {"CPU": 1.0, "X": 1.0}  # this task holds one CPU


def test_gpus_in_cluster_resources() -> None:
    aioray.init(num_cpus=1, num_gpus=2)
    assert aioray.cluster_resources() == {"CPU": 1.0, "GPU": 2.0}
    assert len(aioray.nodes()) == 1 and aioray.nodes()[0]["Alive"]


def test_init_returns_info() -> None:
    info = aioray.init(num_cpus=3)
    assert info["resources"]["CPU"] == 3.0
    assert "loop" in info and info.address_info["namespace"]
    with info:
        pass
    assert not aioray.is_initialized()


async def test_blocking_get_from_executor_thread_with_adopted_loop(aray: Any) -> None:
    # The loop is adopted (and busy awaiting here); a thread may still block in get/wait.
    events, gated = _gated(1)
    ref = gated.remote(0)
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, lambda: aioray.get(ref, timeout=30))
    ready, _ = await loop.run_in_executor(None, lambda: aioray.wait([ref], timeout=0))
    assert ready == []
    events[0].set()
    assert await fut == 0


def test_node_id_is_the_same_inside_worker_processes(ray: object) -> None:
    @aioray.remote
    def node() -> str:
        return aioray.get_runtime_context().get_node_id()

    driver_node = aioray.get_runtime_context().get_node_id()
    assert driver_node
    assert aioray.get(node.remote()) == driver_node
