"""The Ray backend: the same programs on a real (local) Ray and on the embedded runtime.

Tests marked ``all_backends`` run on both backends (``[embedded]`` and ``[ray]``, see
tests/conftest.py) and must behave the same; the core test modules mark theirs the same way.
The tests here cover the whole API surface through the seam; the Ray-only tests (``on_ray``,
``ray_session``) check what only the Ray backend does: selection, attaching in Ray workers, the
error mapping. Without Ray installed the Ray variants skip (``make test-ray`` runs them in
``.venv-ray``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import aioray
from aioray._backend import registry
from aioray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
    TaskCancelledError,
)


# -- fixtures --------------------------------------------------------------------------------
# `backend`, `ray`, `aray` and the session's Ray (`ray_session`) are tests/conftest.py's.
@pytest.fixture
def on_ray(ray_session: Any) -> Iterator[Any]:
    """A Ray-only test: runs on the session's Ray; yields the RayBackend."""
    registry._ray = ray_session
    try:
        yield ray_session
    finally:
        registry._ray = None


# -- functions and classes the tests run -------------------------------------------------------
@aioray.remote
def add(a: int, b: int = 0) -> int:
    return a + b


@aioray.remote
async def async_add(a: int, b: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b


@aioray.remote
def total(xs: list[Any]) -> int:
    assert all(isinstance(x, aioray.ObjectRef) for x in xs)  # nested refs stay refs
    return sum(aioray.get(xs))


@aioray.remote
def fail(msg: str) -> None:
    raise ValueError(msg)


@aioray.remote
def fail_via(ref: Any) -> Any:
    return aioray.get(ref[0])


class CodeError(Exception):
    """Its __init__ takes other arguments than it passes on: plain pickling breaks."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"code {code}: {msg}")
        self.code = code


@aioray.remote
def raise_code() -> None:
    raise CodeError(404, "not found")


@aioray.remote
def sleeper(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "slept"


@aioray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@aioray.remote
def count_then_fail(n: int) -> Iterator[int]:
    yield from range(n)
    raise KeyError("after")


@aioray.remote
async def acount(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


@aioray.remote(num_returns=2)
def pair(a: int) -> tuple[int, int]:
    return a, -a


@aioray.remote
def in_task_backend() -> tuple[str, int, int]:
    # User code in a task uses aioray too: put/get/nested submit work where the task runs.
    r = aioray.put(20)
    return (type(registry.current()).__name__, aioray.get(add.remote(r, 1)),
            os.getpid())


@aioray.remote
def call_actor(h: Any, x: int) -> int:
    return int(aioray.get(h.incr.remote(x)))


@aioray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @aioray.method(num_returns=2)
    def split(self) -> tuple[int, int]:
        return self.n, -self.n

    def gen(self, k: int) -> Iterator[int]:
        for i in range(k):
            yield self.n + i

    def quit(self) -> None:
        from aioray.actor import exit_actor
        exit_actor()


@aioray.remote
class AsyncBox:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait_open(self) -> str:
        await self.event.wait()  # only returns if another call runs meanwhile
        return "opened"

    async def open(self) -> None:
        self.event.set()

    async def agen(self, k: int) -> Any:
        for i in range(k):
            await asyncio.sleep(0)
            yield i

    async def add_remote(self, a: int) -> int:
        return int(await add.remote(a, 1))


@aioray.remote(max_concurrency=2)
class Threaded:
    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=60)

    def meet(self) -> int:
        return self.barrier.wait()  # both calls must run at once to pass


@aioray.remote
class BadInit:
    def __init__(self) -> None:
        raise RuntimeError("no")

    def ping(self) -> int:
        return 1


# -- tasks ---------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_tasks_args_and_chains(ray: Any) -> None:
    r = add.remote(1, b=2)
    assert isinstance(r, aioray.ObjectRef)
    x = r
    for _ in range(3):
        x = add.remote(x, 1)  # top-level refs resolve before the call
    assert aioray.get(x) == 6
    assert aioray.get([r, add.remote(a=aioray.put(4))]) == [3, 4]
    assert aioray.get(total.remote([aioray.put(1), add.remote(2)])) == 3


@pytest.mark.all_backends
def test_async_def_tasks(ray: Any) -> None:
    assert aioray.get(async_add.remote(async_add.remote(1), 2)) == 3


@pytest.mark.all_backends
def test_num_returns(ray: Any) -> None:
    a, b = pair.remote(5)
    assert aioray.get([a, b]) == [5, -5]


@pytest.mark.all_backends
def test_put_get_and_timeout(ray: Any) -> None:
    big = list(range(1000))
    assert aioray.get(aioray.put(big)) == big
    slow = sleeper.remote(60)
    with pytest.raises(GetTimeoutError):
        aioray.get(slow, timeout=0.2)
    with pytest.raises(TimeoutError):  # GetTimeoutError is also the builtin
        aioray.get([slow], timeout=0)
    aioray.cancel(slow, force=True)


@pytest.mark.all_backends
def test_put_rejects_refs(ray: Any) -> None:
    with pytest.raises(TypeError):
        aioray.put(aioray.put(1))


@pytest.mark.all_backends
def test_wait(ray: Any) -> None:
    slow = sleeper.remote(60)
    fast = [add.remote(i) for i in range(3)]
    ready, rest = aioray.wait([slow, *fast], num_returns=3, timeout=60)
    assert ready == fast and rest == [slow]
    ready, rest = aioray.wait([slow], timeout=0.1)
    assert ready == [] and rest == [slow]
    with pytest.raises(ValueError):
        aioray.wait([slow, slow])
    aioray.cancel(slow, force=True)


@pytest.mark.all_backends
def test_task_error_is_users_class_and_ray_task_error(ray: Any) -> None:
    with pytest.raises(ValueError, match="bad thing") as ei:
        aioray.get(fail.remote("bad thing"))
    assert isinstance(ei.value, RayTaskError)
    assert isinstance(ei.value, aioray.exceptions.RayError)
    assert isinstance(ei.value.cause, ValueError)
    assert "fail" in str(ei.value)
    # A task that fails because a ref it read failed: still a RayTaskError.
    with pytest.raises(RayTaskError):
        aioray.get(fail_via.remote([fail.remote("inner")]))


@pytest.mark.all_backends
def test_exception_with_custom_init_keeps_its_class(ray: Any) -> None:
    with pytest.raises(CodeError) as ei:  # plain Ray: UnserializableException
        aioray.get(raise_code.remote())
    assert isinstance(ei.value, RayTaskError) and ei.value.code == 404


@pytest.mark.all_backends
def test_wrong_arguments_are_a_type_error(ray: Any) -> None:
    with pytest.raises(TypeError):  # Ray: at submit (the adapter keeps the signature)
        aioray.get(add.remote(1, 2, 3))


@pytest.mark.all_backends
def test_cancel_running_task(ray: Any) -> None:
    r = sleeper.remote(60)
    aioray.cancel(r, force=True)
    with pytest.raises((TaskCancelledError, aioray.exceptions.WorkerCrashedError)):
        aioray.get(r, timeout=60)


@pytest.mark.all_backends
def test_cancel_pending_task_raises_task_cancelled(ray: Any) -> None:
    blockers = [sleeper.remote(60) for _ in range(2)]  # take both CPUs
    queued = add.options(num_cpus=2).remote(1)  # cannot start before both blockers end
    aioray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        aioray.get(queued, timeout=60)
    for b in blockers:
        aioray.cancel(b, force=True)


# -- generators ------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_streaming_generator(ray: Any) -> None:
    gen = count.remote(4)
    assert isinstance(gen, aioray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, aioray.ObjectRef) for r in refs)
    assert aioray.get(refs) == [0, 1, 2, 3]


@pytest.mark.all_backends
def test_async_generator_task(ray: Any) -> None:
    assert [aioray.get(r) for r in acount.remote(3)] == [0, 10, 20]


@pytest.mark.all_backends
def test_generator_error_is_next_ref(ray: Any) -> None:
    gen = count_then_fail.remote(2)
    assert aioray.get(next(gen)) == 0
    assert aioray.get(next(gen)) == 1
    with pytest.raises(KeyError):
        aioray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.all_backends
def test_generator_completed_and_wait(ray: Any) -> None:
    gen = count.remote(2)
    ready, _ = aioray.wait([gen], timeout=60)
    assert ready == [gen]
    assert aioray.get(gen.completed(), timeout=60) is None
    assert [aioray.get(r) for r in gen] == [0, 1]


@pytest.mark.all_backends
async def test_generator_async_iteration(ray: Any) -> None:
    out = [await r async for r in acount.remote(3)]
    assert out == [0, 10, 20]


# -- actors ------------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_sync_actor_in_order(ray: Any) -> None:
    c = Counter.remote(10)
    assert aioray.get([c.incr.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    a, b = c.split.remote()  # @aioray.method(num_returns=2)
    assert aioray.get([a, b]) == [15, -15]
    assert [aioray.get(r) for r in c.gen.remote(3)] == [15, 16, 17]


@pytest.mark.all_backends
def test_async_actor_runs_calls_concurrently(ray: Any) -> None:
    box = AsyncBox.remote()
    waiting = box.wait_open.remote()
    box.open.remote()
    assert aioray.get(waiting, timeout=60) == "opened"
    assert [aioray.get(r) for r in box.agen.remote(3)] == [0, 1, 2]
    assert aioray.get(box.add_remote.remote(1)) == 2  # awaits a task from inside the actor


@pytest.mark.all_backends
def test_threaded_actor(ray: Any) -> None:
    t = Threaded.remote()
    assert sorted(aioray.get([t.meet.remote(), t.meet.remote()], timeout=60)) == [0, 1]


@pytest.mark.all_backends
def test_handle_passed_to_task(ray: Any) -> None:
    c = Counter.remote()
    assert aioray.get(call_actor.remote(c, 5)) == 5
    assert aioray.get(c.incr.remote()) == 6


@pytest.mark.all_backends
def test_named_actor_and_get_actor(ray: Any, backend: str) -> None:
    name = f"counter-{backend}-{os.getpid()}"
    c = Counter.options(name=name).remote(1)
    h = aioray.get_actor(name)
    assert isinstance(h, aioray.ActorHandle)
    assert aioray.get(h.incr.remote()) == 2
    a, b = h.split.remote()  # method options survive get_actor
    assert aioray.get([a, b]) == [2, -2]
    assert aioray.get(c.incr.remote()) == 3
    with pytest.raises(ValueError):
        aioray.get_actor(f"no-such-actor-{backend}")
    aioray.kill(c)


@pytest.mark.all_backends
def test_kill_actor(ray: Any, backend: str) -> None:
    c = Counter.remote()
    assert aioray.get(c.incr.remote()) == 1
    aioray.kill(c)
    # Embedded: the kill is ordered before the next call, which fails at once. Ray's kill is
    # asynchronous: a call racing it may still run, but calls must fail soon after.
    deadline = time.monotonic() + 60
    while True:
        try:
            aioray.get(c.incr.remote(), timeout=60)
        except ActorDiedError:
            break
        assert backend == "ray", "an embedded kill must fail the very next call"
        assert time.monotonic() < deadline, "calls still succeed a minute after kill()"
        time.sleep(0.05)


@pytest.mark.all_backends
def test_exit_actor(ray: Any) -> None:
    c = Counter.remote()
    assert aioray.get(c.incr.remote()) == 1
    c.quit.remote()
    with pytest.raises(RayActorError):
        aioray.get(c.incr.remote(), timeout=60)


@pytest.mark.all_backends
def test_actor_init_error(ray: Any) -> None:
    a = BadInit.remote()
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=60)


# -- what plain Ray accepts and the backend once refused or got wrong (issue 18) ----------------
@aioray.remote
class Pair:
    """Two ``meet`` calls must run at once: a sync actor runs them one by one unless they share
    a concurrency group of two."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=60)

    def meet(self, i: int) -> int:
        self.barrier.wait()
        return i

    def plain(self) -> str:
        return "default group"


@aioray.remote
class AsyncPair:
    def __init__(self) -> None:
        self.arrived = 0
        self.both: asyncio.Event | None = None

    async def meet(self, i: int) -> int:
        if self.both is None:
            self.both = asyncio.Event()
        self.arrived += 1
        if self.arrived == 2:
            self.both.set()
        await asyncio.wait_for(self.both.wait(), 60)
        return i

    async def plain(self) -> str:
        return "default group"


@aioray.remote(concurrency_groups={"io": 1})
class DeclaredGroups:
    @aioray.method(concurrency_group="io")
    def io(self) -> str:
        return "io"

    def echo(self, x: int) -> int:
        return x


@pytest.mark.all_backends
@pytest.mark.parametrize("cls", [Pair, AsyncPair], ids=["sync", "async"])
def test_concurrency_groups_in_options(ray: Any, cls: Any) -> None:
    # Plain Ray only takes concurrency_groups in @ray.remote(...); aioray takes them in
    # .options() too, on both backends.
    a = cls.options(concurrency_groups={"pair": 2}).remote()
    refs = [a.meet.options(concurrency_group="pair").remote(i) for i in range(2)]
    assert aioray.get(refs, timeout=60) == [0, 1]
    assert aioray.get(a.plain.remote(), timeout=60) == "default group"


@pytest.mark.all_backends
def test_concurrency_groups_declared_and_replaced_in_options(ray: Any) -> None:
    a = DeclaredGroups.remote()
    assert aioray.get(a.io.remote(), timeout=60) == "io"
    b = DeclaredGroups.options(concurrency_groups={"io": 1, "extra": 2}).remote()
    assert aioray.get([b.io.remote(), b.echo.options(concurrency_group="extra").remote(2)],
                      timeout=60) == ["io", 2]


@pytest.mark.all_backends
def test_taken_actor_name_is_a_value_error(ray: Any, backend: str) -> None:
    name = f"taken-{backend}-{os.getpid()}"
    first = Counter.options(name=name).remote(1)
    with pytest.raises(ValueError, match=rf"'{name}' already exists.*get_if_exists"):
        Counter.options(name=name).remote(2)
    assert aioray.get(aioray.get_actor(name).incr.remote(), timeout=60) == 2  # the first one
    aioray.kill(first)


@aioray.remote
def dynamic_total(gen: aioray.DynamicObjectRefGenerator[int]) -> tuple[int, int]:
    assert isinstance(gen, aioray.DynamicObjectRefGenerator), type(gen)
    return len(gen), sum(aioray.get(list(gen)))


@aioray.remote
async def async_dynamic_total(gen: aioray.DynamicObjectRefGenerator[int]) -> tuple[int, int]:
    assert isinstance(gen, aioray.DynamicObjectRefGenerator), type(gen)
    return len(gen), sum(await asyncio.gather(*gen))


@pytest.mark.all_backends
@pytest.mark.filterwarnings("ignore:num_returns='dynamic' is deprecated")
def test_dynamic_generator_passed_to_another_task(ray: Any) -> None:
    dyn = count.options(num_returns="dynamic").remote(5)
    assert aioray.get(dynamic_total.remote(dyn), timeout=60) == (5, 10)  # resolved argument
    assert aioray.get(async_dynamic_total.remote(dyn), timeout=60) == (5, 10)
    value = aioray.get(dyn)
    assert aioray.get(dynamic_total.remote(value), timeout=60) == (5, 10)  # the value itself


# -- aioray's additions ----------------------------------------------------------------------
@pytest.mark.all_backends
async def test_await_get_async_wait_async(ray: Any) -> None:
    r = add.remote(1, 1)
    assert await r == 2
    assert await aioray.get_async([r, async_add.remote(2)]) == [2, 2]
    with pytest.raises(ValueError):
        await fail.remote("async")
    slow = sleeper.remote(60)
    with pytest.raises(GetTimeoutError):
        await aioray.get_async(slow, timeout=0.2)
    ready, rest = await aioray.wait_async([slow, r], num_returns=1, timeout=60)
    assert ready == [r] and rest == [slow]
    aioray.cancel(slow, force=True)


@pytest.mark.all_backends
def test_as_completed_sync(ray: Any) -> None:
    refs = [add.remote(i) for i in range(4)]
    got = [aioray.get(r) for r in aioray.as_completed(refs, timeout=60)]
    assert sorted(got) == [0, 1, 2, 3]


@pytest.mark.all_backends
async def test_as_completed_async(ray: Any) -> None:
    slow = sleeper.remote(60)
    fast = add.remote(7)
    it = aioray.as_completed([slow, fast], timeout=60)
    first = await it.__anext__()
    assert first == fast and await first == 7
    aioray.cancel(slow, force=True)


@pytest.mark.all_backends
def test_ref_future(ray: Any) -> None:
    assert add.remote(2, 3).future().result(timeout=60) == 5
    with pytest.raises(ValueError):
        fail.remote("f").future().result(timeout=60)


@pytest.mark.all_backends
def test_cluster_resources(ray: Any) -> None:
    assert aioray.cluster_resources()["CPU"] == 2
    # Ray leaves a resource out while all of it is in use, and gives back a force-cancelled
    # task's CPU (an earlier test's, on the session's Ray) only once its worker is gone.
    deadline = time.monotonic() + 60
    while aioray.available_resources().get("CPU") != 2:
        assert time.monotonic() < deadline, aioray.available_resources()
        time.sleep(0.05)
    assert aioray.is_initialized()


# -- Ray only: selection, worker attach, what differs -------------------------------------------
def test_inside_ray_workers_aioray_uses_ray(on_ray: Any) -> None:
    name, value, pid = aioray.get(in_task_backend.remote())
    assert name == "RayBackend" and value == 21 and pid != os.getpid()


def test_runtime_context_is_rays(on_ray: Any) -> None:
    ctx = aioray.get_runtime_context()
    assert ctx.get_job_id() == registry._ray.job_id
    assert aioray.nodes() and aioray.nodes()[0]["Alive"]


@pytest.mark.filterwarnings("ignore:num_returns='dynamic' is deprecated")
def test_dynamic_num_returns(on_ray: Any) -> None:
    gen = aioray.get(count.options(num_returns="dynamic").remote(3))
    assert isinstance(gen, aioray.DynamicObjectRefGenerator)
    assert aioray.get(list(gen)) == [0, 1, 2]


def test_runtime_env_option_accepted_on_ray(on_ray: Any) -> None:
    assert aioray.get(add.options(runtime_env={"env_vars": {"X": "1"}}).remote(1)) == 1


def test_init_twice_and_ignore_reinit(on_ray: Any) -> None:
    with pytest.raises(RuntimeError, match="twice"):
        aioray.init(address="local-ray")
    info = aioray.init(address="local-ray", ignore_reinit_error=True)
    assert info["backend"] == "ray"


def test_refs_cannot_cross_backends(on_ray: Any) -> None:
    registry._ray = None
    aioray.init(address="local", num_cpus=1)
    embedded_ref = aioray.put(1)
    registry.shutdown()
    registry._ray = on_ray
    with pytest.raises(TypeError, match="refs cannot cross backends"):
        aioray.get(embedded_ref)


# -- selection rules (run without Ray too) ---------------------------------------------------------
def test_selection_from_address_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioray._backend.registry import wants_ray
    monkeypatch.delenv("AIORAY_BACKEND", raising=False)
    assert wants_ray("auto") and wants_ray("local-ray") and wants_ray("ray://head:10001")
    assert not wants_ray(None)
    monkeypatch.setenv("AIORAY_BACKEND", "ray")
    assert wants_ray(None)
    monkeypatch.setenv("AIORAY_BACKEND", "spark")
    with pytest.raises(ValueError, match="AIORAY_BACKEND"):
        wants_ray(None)


def test_cluster_address_without_scheme_explains_options() -> None:
    with pytest.raises(ValueError, match="local-ray"):
        aioray.init(address="10.0.0.1:6379")


def test_selecting_ray_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = registry._ray
    registry._ray = None
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    try:
        with pytest.raises(ImportError, match=r"pip install 'aioray\[ray\]'"):
            aioray.init(address="local-ray")
    finally:
        registry._ray = saved


def test_error_mapping_of_ray_system_errors(ray_session: Any) -> None:
    import ray.exceptions as rex

    from aioray._ray.backend import map_error
    assert isinstance(map_error(rex.GetTimeoutError("t")), GetTimeoutError)
    assert isinstance(map_error(rex.TaskCancelledError()), TaskCancelledError)
    assert isinstance(map_error(rex.WorkerCrashedError()),
                      aioray.exceptions.WorkerCrashedError)
    assert isinstance(map_error(rex.ActorDiedError()), ActorDiedError)
    assert isinstance(map_error(rex.ObjectLostError("00" * 28, None, "")),
                      aioray.exceptions.ObjectLostError)
    other = map_error(rex.RaySystemError("boom"))
    assert isinstance(other, RayError) and "boom" in str(other)
    plain = ValueError("x")
    assert map_error(plain) is plain


# -- aioray.util on both backends ------------------------------------------------------------------
@aioray.remote
class Doubler:
    def double(self, x: int) -> int:
        return 2 * x


@aioray.remote
def produce(q: Any, n: int) -> int:
    for i in range(n):
        q.put(i)
    return n


@pytest.mark.all_backends
def test_actor_pool(ray: Any) -> None:
    from aioray.util import ActorPool
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    out = list(pool.map(lambda a, v: a.double.remote(v), range(5)))
    assert out == [0, 2, 4, 6, 8]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(3))) == [0, 2, 4]


@pytest.mark.all_backends
def test_queue_between_driver_and_task(ray: Any) -> None:
    from aioray.util.queue import Empty, Queue
    q = Queue(maxsize=10)
    assert aioray.get(produce.remote(q, 3)) == 3
    assert [q.get(timeout=60) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Empty):
        q.get(timeout=0.1)


@pytest.mark.all_backends
def test_placement_group(ray: Any) -> None:
    from aioray.util import placement_group, placement_group_table, remove_placement_group
    from aioray.util.placement_group import PlacementGroup
    from aioray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    pg = placement_group([{"CPU": 1}], strategy="PACK")
    assert isinstance(pg, PlacementGroup)
    assert pg.wait(60)
    assert aioray.get(pg.ready(), timeout=60) == pg
    assert pg.bundle_count == 1
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    assert aioray.get(add.options(scheduling_strategy=strategy, num_cpus=1).remote(2)) == 2
    assert placement_group_table(pg)["state"] == "CREATED"
    remove_placement_group(pg)
