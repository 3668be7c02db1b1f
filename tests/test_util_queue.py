"""``aioray.util.queue``: Ray's Queue API, handles passed to tasks (also in worker processes)
and actors, blocking calls that never stall the loop, and the async forms."""

from __future__ import annotations

import asyncio
import os
import pickle
import queue as stdlib_queue
import threading
import time
from typing import Any

import pytest

import aioray as ray
from aioray.util.queue import Empty, Full, Queue

TIMEOUT = 30


# -- the seed ------------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_seed_consumers_in_process_tasks() -> None:
    queue = Queue(maxsize=100)

    @ray.remote
    def consumer(id: int, queue: Any) -> tuple[int, list[int]]:
        got = []
        try:
            while True:
                next_item = queue.get(block=True, timeout=1)
                print(f"consumer {id} got work {next_item}")
                got.append(next_item)
        except Empty:
            pass
        return os.getpid(), got

    [queue.put(i) for i in range(10)]
    consumers = [consumer.remote(id, queue) for id in range(2)]
    results = ray.get(consumers, timeout=TIMEOUT)
    assert all(pid != os.getpid() for pid, _ in results)
    got = [item for _, items in results for item in items]
    assert sorted(got) == list(range(10))
    for _, items in results:
        assert items == sorted(items)  # each consumer sees FIFO order
    assert queue.empty()


# -- the API ----------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_empty_and_full_subclass_the_stdlib_ones() -> None:
    assert issubclass(Empty, stdlib_queue.Empty)
    assert issubclass(Full, stdlib_queue.Full)


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_bad_arguments_are_clear_errors() -> None:
    for bad in ("invalid", 1.5, True, None):
        with pytest.raises(TypeError, match="maxsize"):
            Queue(maxsize=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxsize"):
        Queue(maxsize=-1)
    for options in ("not_a_dict", [1, 2, 3]):
        with pytest.raises(TypeError, match="actor_options"):
            Queue(actor_options=options)  # type: ignore[arg-type]


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_fifo_sizes_and_nowait() -> None:
    q = Queue(maxsize=3)
    assert q.maxsize == 3
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    q.put(1)
    q.put_nowait(2)
    q.put(3, block=False)
    assert q.full() and q.size() == 3
    with pytest.raises(Full):
        q.put_nowait(4)
    with pytest.raises(Full):
        q.put(4, timeout=0.05)
    assert [q.get(), q.get_nowait(), q.get(block=False)] == [1, 2, 3]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.put(1, timeout=-1)


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_batches_are_all_or_nothing() -> None:
    q = Queue(maxsize=4)
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Full, match="Cannot add 2 items"):
        q.put_nowait_batch([4, 5])
    assert q.qsize() == 3
    with pytest.raises(Empty, match="Cannot get 4 items"):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        q.get_nowait_batch("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)
    unbounded = Queue()
    unbounded.put_nowait_batch(range(1000))
    assert unbounded.qsize() == 1000 and not unbounded.full()


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_items_are_copies_and_top_level_refs_are_resolved() -> None:
    q = Queue()
    item = [1, 2]
    q.put(item)
    item.append(3)
    assert q.get() == [1, 2]
    q.put(ray.put("value"))
    assert q.get() == "value"  # as in Ray: a top-level ref argument arrives as its value
    nested = ray.put(7)
    q.put([nested])
    (ref,) = q.get()
    assert ray.get(ref) == 7


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_blocking_get_waits_for_a_put_from_another_thread() -> None:
    q = Queue()
    threading.Timer(0.05, q.put, args=("late",)).start()
    assert q.get(timeout=TIMEOUT) == "late"


@pytest.mark.all_backends
@pytest.mark.usefixtures("ray")
def test_blocking_put_waits_for_room() -> None:
    q = Queue(maxsize=1)
    q.put("a")
    threading.Timer(0.05, q.get).start()
    q.put("b", timeout=TIMEOUT)
    assert q.get() == "b"


# -- tasks, workers, actors --------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_blocked_get_in_a_worker_does_not_stall_the_loop() -> None:
    q = Queue()

    @ray.remote
    def consume(q: Any) -> Any:
        q.put("waiting")  # tell the driver we are about to block
        return q.get(block=True)  # no timeout: blocks until the driver puts

    @ray.remote
    async def other(x: int) -> int:
        return x + 1

    ref = consume.remote(q)
    assert q.get(timeout=TIMEOUT) == "waiting"
    # The consumer is blocked in get: the loop still runs tasks, actors and queue calls.
    assert ray.get([other.remote(i) for i in range(20)], timeout=TIMEOUT) == list(range(1, 21))
    assert q.qsize() == 0
    ready, _ = ray.wait([ref], timeout=0.05)
    assert not ready
    q.put("work")
    assert ray.get(ref, timeout=TIMEOUT) == "work"


@pytest.mark.usefixtures("ray")
def test_every_operation_from_a_worker_process() -> None:
    np = pytest.importorskip("numpy")
    q = Queue(maxsize=4)
    inner = ray.put("inner")

    @ray.remote
    def use(q: Any, inner: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"empty0": q.empty(), "pid": os.getpid()}
        q.put(1)
        q.put_nowait(inner)  # a nested ref travels as a ref
        q.put_nowait_batch([3, np.arange(300_000)])  # > 1 MiB: shared memory
        out["full"], out["size"] = q.full(), q.qsize()
        try:
            q.put_nowait(5)
        except Full:
            out["put_full"] = True
        try:
            q.put(5, timeout=0.01)
        except Full:
            out["put_timeout"] = True
        out["first"] = q.get()
        (ref,) = q.get_nowait()
        out["inner"] = ray.get(ref)
        three, arr = q.get_nowait_batch(2)
        out["batch"] = (three, int(arr.sum()))
        try:
            q.get_nowait_batch(1)
        except Empty:
            out["batch_empty"] = True
        try:
            q.get(timeout=0.01)
        except Empty:
            out["get_timeout"] = True
        q.put(ray.put("resolved"))  # a top-level ref: its value, as in Ray
        out["resolved"] = q.get(block=False)
        return out

    out = ray.get(use.remote(q, [inner]), timeout=TIMEOUT)
    assert out.pop("pid") != os.getpid()
    assert out == {"empty0": True, "full": True, "size": 4, "put_full": True,
                   "put_timeout": True, "first": 1, "inner": "inner",
                   "batch": (3, int(np.arange(300_000).sum())), "batch_empty": True,
                   "get_timeout": True, "resolved": "resolved"}
    assert q.empty()


@pytest.mark.usefixtures("ray")
def test_queue_made_in_a_worker_process() -> None:
    @ray.remote
    def make() -> Any:
        q = Queue()
        q.put("from the worker")  # may run before the queue actor exists
        return q

    q = ray.get(make.remote(), timeout=TIMEOUT)
    assert q.get(timeout=TIMEOUT) == "from the worker"


@pytest.mark.usefixtures("ray")
def test_shutdown_fails_a_worker_blocked_in_get() -> None:
    q = Queue()

    @ray.remote(max_retries=0)
    def consume(q: Any) -> Any:
        q.put("blocking")
        return q.get()

    ref = consume.remote(q)
    assert q.get(timeout=TIMEOUT) == "blocking"
    deadline = time.monotonic() + TIMEOUT
    while not q._queues.local[q._qid]._getters:  # type: ignore[union-attr]  # the worker's get waits
        assert time.monotonic() < deadline
        time.sleep(0.005)
    q.shutdown(grace_period_s=TIMEOUT)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(ref, timeout=TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_producer_task_to_consumer_task_with_backpressure() -> None:
    q = Queue(maxsize=2)

    @ray.remote
    def produce(q: Any, n: int) -> int:
        for i in range(n):
            q.put(i)  # blocks while the queue is full
        q.put(None)
        return n

    @ray.remote
    def consume(q: Any) -> list[int]:
        out = []
        while (item := q.get(timeout=TIMEOUT)) is not None:
            out.append(item)
        return out

    p, c = produce.remote(q, 50), consume.remote(q)
    assert ray.get(c, timeout=TIMEOUT) == list(range(50))
    assert ray.get(p, timeout=TIMEOUT) == 50


@pytest.mark.usefixtures("ray")
def test_queue_in_sync_and_async_actors_and_thread_tasks() -> None:
    q = Queue()

    @ray.remote
    class SyncConsumer:
        def __init__(self, q: Any) -> None:
            self.q = q

        def take(self) -> Any:
            return self.q.get(timeout=TIMEOUT)

    @ray.remote
    class AsyncProducer:
        def __init__(self, q: Any) -> None:
            self.q = q

        async def give(self, x: Any) -> None:
            await self.q.put_async(x)
            self.q.put_nowait(x * 10)  # on the loop thread: a direct call, no actor hop

    @ray.remote(executor="thread")
    def thread_put(q: Any, x: Any) -> None:
        q.put(x)

    consumer = SyncConsumer.remote(q)
    producer = AsyncProducer.remote(q)
    ref = consumer.take.remote()
    ray.get(producer.give.remote(1), timeout=TIMEOUT)
    assert ray.get(ref, timeout=TIMEOUT) == 1
    assert ray.get(consumer.take.remote(), timeout=TIMEOUT) == 10
    ray.get(thread_put.remote(q, "t"), timeout=TIMEOUT)
    assert q.get(timeout=TIMEOUT) == "t"


@pytest.mark.usefixtures("ray")
def test_actor_options_reach_the_queue_actor() -> None:
    q = Queue(actor_options={"name": "shared-queue"})
    q.put("x")
    actor = ray.get_actor("shared-queue")
    assert ray.get(actor.qsize.remote()) == 1
    assert ray.get(actor.get_nowait.remote()) == "x"
    with pytest.raises(Empty):  # Ray's actor methods raise Empty/Full themselves
        ray.get(actor.get_nowait.remote())


# -- shutdown -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_shutdown_fails_blocked_getters_and_further_calls() -> None:
    q = Queue()
    copy = pickle.loads(pickle.dumps(q))  # what a task or actor would hold
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            q.get()  # off the loop thread: waits inside the actor
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while not q._queues.local[q._qid]._getters:  # type: ignore[union-attr]  # the get is waiting
        assert time.monotonic() < deadline
        time.sleep(0.005)
    q.shutdown()
    t.join(TIMEOUT)
    assert len(errors) == 1 and isinstance(errors[0], ray.exceptions.RayActorError)
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(1)
    with pytest.raises(ray.exceptions.RayActorError):
        copy.put(1)

    forced = Queue()
    forced.put(1)
    forced.shutdown(force=True)
    assert forced.actor is None
    with pytest.raises(RuntimeError, match="shut down"):
        forced.get_nowait()


# -- async code -------------------------------------------------------------------------------
async def test_put_async_get_async(aray: Any) -> None:
    q = Queue(maxsize=1)
    await q.put_async(1)
    with pytest.raises(Full):
        await q.put_async(2, block=False)
    with pytest.raises(Full):
        await q.put_async(2, timeout=0.05)
    assert await q.get_async() == 1
    with pytest.raises(Empty):
        await q.get_async(block=False)
    with pytest.raises(Empty):
        await q.get_async(timeout=0.05)
    getter = asyncio.ensure_future(q.get_async(timeout=TIMEOUT))
    await asyncio.sleep(0)
    await q.put_async(ray.put("from a ref"))
    assert await getter == "from a ref"


async def test_sync_calls_on_the_loop_thread(aray: Any) -> None:
    q = Queue(maxsize=2)
    q.put(1)  # room: completes without waiting
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(RuntimeError, match="put_async"):
        q.put(3)  # would have to wait
    with pytest.raises(Full):
        q.put(3, timeout=0)
    assert q.get() == 1 and q.get_nowait_batch(1) == [2]
    with pytest.raises(RuntimeError, match="get_async"):
        q.get()
    with pytest.raises(Empty):
        q.get_nowait()
    q.put_nowait_batch([5, 6])
    assert await q.get_async() == 5


async def test_async_producer_consumer_tasks(aray: Any) -> None:
    q = Queue(maxsize=3)

    @ray.remote
    async def produce(q: Any, n: int) -> None:
        for i in range(n):
            await q.put_async(i)
        await q.put_async(None)

    @ray.remote
    async def consume(q: Any) -> list[int]:
        out = []
        while (item := await q.get_async(timeout=TIMEOUT)) is not None:
            out.append(item)
        return out

    c = consume.remote(q)
    await produce.remote(q, 100)
    assert await c == list(range(100))


async def test_worker_consumer_with_async_driver_producer(aray: Any) -> None:
    q = Queue()

    @ray.remote
    def consume(q: Any, n: int) -> list[int]:
        return [q.get(timeout=TIMEOUT) for _ in range(n)]

    ref = consume.remote(q, 5)
    for i in range(5):
        await q.put_async(i)
    assert await ref == [0, 1, 2, 3, 4]
