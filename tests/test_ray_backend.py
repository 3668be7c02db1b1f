"""The Ray backend: the same programs on a real (local) Ray, and on the embedded runtime.

Tests taking ``backend`` run twice, on aioray's embedded runtime and on Ray, and must behave
the same. Ray is started once per module (``num_cpus=2``); without Ray installed the Ray
variants skip (``make test-ray`` runs them in ``.venv-ray``).
"""

from __future__ import annotations

import asyncio
import importlib.util
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

HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "Ray is not installed here: run `make test-ray` (a venv with pip install 'aioray[ray]')"


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_leftover_runtime() -> Iterator[None]:
    """Overrides conftest's: the module's Ray must outlive each test (starting it is slow)."""
    yield


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """One local Ray for the module; yields the RayBackend."""
    if not HAVE_RAY:
        pytest.skip(NO_RAY)
    aioray.shutdown()
    # Ray workers import what tasks reference by module (e.g. this file's exception class).
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    info = aioray.init(address="local-ray", num_cpus=2, include_dashboard=False,
                       log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": tests_dir}})
    assert info["backend"] == "ray"
    rb = registry._ray
    yield rb
    registry._ray = rb
    aioray.shutdown()


def _use_ray(rb: Any) -> None:
    registry._ray = rb


@pytest.fixture
def on_ray(ray_session: Any) -> Iterator[Any]:
    """The test runs on the module's Ray; yields the RayBackend."""
    _use_ray(ray_session)
    yield ray_session


@pytest.fixture(params=["embedded", "ray"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each backend: the embedded runtime (fresh) and the module's Ray."""
    if request.param == "ray":
        _use_ray(request.getfixturevalue("ray_session"))
        yield "ray"
        return
    saved = registry._ray
    registry._ray = None  # detach Ray without stopping it
    aioray.init(address="local", num_cpus=2)  # "local": embedded even with AIORAY_BACKEND=ray
    try:
        yield "embedded"
    finally:
        registry.shutdown()
        registry._ray = saved


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
def test_tasks_args_and_chains(backend: str) -> None:
    r = add.remote(1, b=2)
    assert isinstance(r, aioray.ObjectRef)
    x = r
    for _ in range(3):
        x = add.remote(x, 1)  # top-level refs resolve before the call
    assert aioray.get(x) == 6
    assert aioray.get([r, add.remote(a=aioray.put(4))]) == [3, 4]
    assert aioray.get(total.remote([aioray.put(1), add.remote(2)])) == 3


def test_async_def_tasks(backend: str) -> None:
    assert aioray.get(async_add.remote(async_add.remote(1), 2)) == 3


def test_num_returns(backend: str) -> None:
    a, b = pair.remote(5)
    assert aioray.get([a, b]) == [5, -5]


def test_put_get_and_timeout(backend: str) -> None:
    big = list(range(1000))
    assert aioray.get(aioray.put(big)) == big
    slow = sleeper.remote(60)
    with pytest.raises(GetTimeoutError):
        aioray.get(slow, timeout=0.2)
    with pytest.raises(TimeoutError):  # GetTimeoutError is also the builtin
        aioray.get([slow], timeout=0)
    aioray.cancel(slow, force=True)


def test_put_rejects_refs(backend: str) -> None:
    with pytest.raises(TypeError):
        aioray.put(aioray.put(1))


def test_wait(backend: str) -> None:
    slow = sleeper.remote(60)
    fast = [add.remote(i) for i in range(3)]
    ready, rest = aioray.wait([slow, *fast], num_returns=3, timeout=60)
    assert ready == fast and rest == [slow]
    ready, rest = aioray.wait([slow], timeout=0.1)
    assert ready == [] and rest == [slow]
    with pytest.raises(ValueError):
        aioray.wait([slow, slow])
    aioray.cancel(slow, force=True)


def test_task_error_is_users_class_and_ray_task_error(backend: str) -> None:
    with pytest.raises(ValueError, match="bad thing") as ei:
        aioray.get(fail.remote("bad thing"))
    assert isinstance(ei.value, RayTaskError)
    assert isinstance(ei.value, aioray.exceptions.RayError)
    assert isinstance(ei.value.cause, ValueError)
    assert "fail" in str(ei.value)
    # A task that fails because a ref it read failed: still a RayTaskError.
    with pytest.raises(RayTaskError):
        aioray.get(fail_via.remote([fail.remote("inner")]))


def test_exception_with_custom_init_keeps_its_class(backend: str) -> None:
    with pytest.raises(CodeError) as ei:  # plain Ray: UnserializableException
        aioray.get(raise_code.remote())
    assert isinstance(ei.value, RayTaskError) and ei.value.code == 404


def test_wrong_arguments_are_a_type_error(backend: str) -> None:
    with pytest.raises(TypeError):  # Ray: at submit (the adapter keeps the signature)
        aioray.get(add.remote(1, 2, 3))


def test_cancel_running_task(backend: str) -> None:
    r = sleeper.remote(60)
    aioray.cancel(r, force=True)
    with pytest.raises((TaskCancelledError, aioray.exceptions.WorkerCrashedError)):
        aioray.get(r, timeout=60)


def test_cancel_pending_task_raises_task_cancelled(backend: str) -> None:
    blockers = [sleeper.remote(60) for _ in range(2)]  # take both CPUs
    queued = add.options(num_cpus=2).remote(1)  # cannot start before both blockers end
    aioray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        aioray.get(queued, timeout=60)
    for b in blockers:
        aioray.cancel(b, force=True)


# -- generators ------------------------------------------------------------------------------------
def test_streaming_generator(backend: str) -> None:
    gen = count.remote(4)
    assert isinstance(gen, aioray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, aioray.ObjectRef) for r in refs)
    assert aioray.get(refs) == [0, 1, 2, 3]


def test_async_generator_task(backend: str) -> None:
    assert [aioray.get(r) for r in acount.remote(3)] == [0, 10, 20]


def test_generator_error_is_next_ref(backend: str) -> None:
    gen = count_then_fail.remote(2)
    assert aioray.get(next(gen)) == 0
    assert aioray.get(next(gen)) == 1
    with pytest.raises(KeyError):
        aioray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_completed_and_wait(backend: str) -> None:
    gen = count.remote(2)
    ready, _ = aioray.wait([gen], timeout=60)
    assert ready == [gen]
    assert aioray.get(gen.completed(), timeout=60) is None
    assert [aioray.get(r) for r in gen] == [0, 1]


async def test_generator_async_iteration(backend: str) -> None:
    out = [await r async for r in acount.remote(3)]
    assert out == [0, 10, 20]


# -- actors ------------------------------------------------------------------------------------------
def test_sync_actor_in_order(backend: str) -> None:
    c = Counter.remote(10)
    assert aioray.get([c.incr.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    a, b = c.split.remote()  # @aioray.method(num_returns=2)
    assert aioray.get([a, b]) == [15, -15]
    assert [aioray.get(r) for r in c.gen.remote(3)] == [15, 16, 17]


def test_async_actor_runs_calls_concurrently(backend: str) -> None:
    box = AsyncBox.remote()
    waiting = box.wait_open.remote()
    box.open.remote()
    assert aioray.get(waiting, timeout=60) == "opened"
    assert [aioray.get(r) for r in box.agen.remote(3)] == [0, 1, 2]
    assert aioray.get(box.add_remote.remote(1)) == 2  # awaits a task from inside the actor


def test_threaded_actor(backend: str) -> None:
    t = Threaded.remote()
    assert sorted(aioray.get([t.meet.remote(), t.meet.remote()], timeout=60)) == [0, 1]


def test_handle_passed_to_task(backend: str) -> None:
    c = Counter.remote()
    assert aioray.get(call_actor.remote(c, 5)) == 5
    assert aioray.get(c.incr.remote()) == 6


def test_named_actor_and_get_actor(backend: str) -> None:
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


def test_kill_actor(backend: str) -> None:
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


def test_exit_actor(backend: str) -> None:
    c = Counter.remote()
    assert aioray.get(c.incr.remote()) == 1
    c.quit.remote()
    with pytest.raises(RayActorError):
        aioray.get(c.incr.remote(), timeout=60)


def test_actor_init_error(backend: str) -> None:
    a = BadInit.remote()
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=60)


# -- aioray's additions ----------------------------------------------------------------------
async def test_await_get_async_wait_async(backend: str) -> None:
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


def test_as_completed_sync(backend: str) -> None:
    refs = [add.remote(i) for i in range(4)]
    got = [aioray.get(r) for r in aioray.as_completed(refs, timeout=60)]
    assert sorted(got) == [0, 1, 2, 3]


async def test_as_completed_async(backend: str) -> None:
    slow = sleeper.remote(60)
    fast = add.remote(7)
    it = aioray.as_completed([slow, fast], timeout=60)
    first = await it.__anext__()
    assert first == fast and await first == 7
    aioray.cancel(slow, force=True)


def test_ref_future(backend: str) -> None:
    assert add.remote(2, 3).future().result(timeout=60) == 5
    with pytest.raises(ValueError):
        fail.remote("f").future().result(timeout=60)


def test_cluster_resources(backend: str) -> None:
    assert aioray.cluster_resources()["CPU"] == 2
    assert "CPU" in aioray.available_resources() or aioray.available_resources() == {}
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
    _use_ray(on_ray)
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


def test_actor_pool(backend: str) -> None:
    from aioray.util import ActorPool
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    out = list(pool.map(lambda a, v: a.double.remote(v), range(5)))
    assert out == [0, 2, 4, 6, 8]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(3))) == [0, 2, 4]


def test_queue_between_driver_and_task(backend: str) -> None:
    from aioray.util.queue import Empty, Queue
    q = Queue(maxsize=10)
    assert aioray.get(produce.remote(q, 3)) == 3
    assert [q.get(timeout=60) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Empty):
        q.get(timeout=0.1)


def test_placement_group(backend: str) -> None:
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


# -- the project's own tests, re-run on Ray ---------------------------------------------------------
# Tests from the core modules that must hold on both backends; their embedded run is in their own
# modules. Left out: tests of embedded-only behaviour (worker processes, shared memory, the loop
# thread, local mode, shutdown), tests whose tasks close over driver-only objects (locks,
# events), and the Ray differences listed in the README.
_ADOPTED: dict[str, list[str]] = {
    "test_core_errors": [
        "test_task_error_is_dual_class",
        "test_async_task_error",
        "test_task_error_pickles",
        "test_locally_defined_exception_class",
        "test_unpicklable_exception_still_reported",
        "test_error_chains_through_async_and_kwargs",
        "test_nested_get_error_keeps_user_class",
        "test_error_in_one_of_several_refs",
        "test_catching_error_inside_task",
        "test_exception_names_exist",
        "test_errors_pickle",
        "test_get_non_ref",
        "test_get_python_generator",
        "test_get_object_ref_generator",
        "test_wrong_option_name_lists_valid_options",
        "test_wrong_option_types",
        "test_remote_with_positional_and_options",
        "test_negative_timeout",
        "test_wait_duplicates_rejected",
        "test_wait_num_returns_too_large",
        "test_wait_bad_arguments",
        "test_wait_empty_list_and_num_returns_zero",
        "test_wait_async_empty_list",
        "test_bad_input_from_inside_worker_process",
        "test_calling_remote_function_directly",
        "test_put_generator_rejected",
        "test_generator_as_argument_rejected",
    ],
    "test_core_objects": [
        "test_put_get_roundtrip",
        "test_get_list_keeps_order",
        "test_put_is_an_immutable_copy",
        "test_put_custom_object",
        "test_put_of_ref_rejected_but_container_of_ref_ok",
        "test_object_ref_identity",
        "test_multiple_returns_share_a_task_id",
        "test_ref_survives_pickling_in_driver",
        "test_ref_not_iterable",
        "test_wait_counts_errors_as_ready",
        "test_small_array_put_mutation_isolated",
        "test_large_array_in_container_and_result",
    ],
    "test_core_tasks": [
        "test_kwargs_and_defaults",
        "test_top_level_refs_resolved_nested_refs_passed_as_refs",
        "test_chained_tasks",
        "test_mixed_async_and_sync_dependencies",
        "test_large_numpy_argument_in_process_task",
        "test_large_numpy_result_from_process_task",
        "test_num_returns",
        "test_num_returns_via_options_and_async",
        "test_num_returns_zero",
        "test_options_do_not_change_the_original",
        "test_task_name_in_error",
        "test_remote_function_keeps_metadata",
        "test_retry_exceptions",
        "test_no_retry_for_other_exceptions",
        "test_test_module_function_in_worker_process",
        "test_nested_remote_get_put_wait_in_worker",
        "test_nested_tasks_two_levels_in_worker",
        "test_async_task_submits_and_awaits",
        "test_worker_returns_ref_it_created",
        "test_many_small_tasks",
        "test_seed003_generator_error",
        "test_seed003_async_for_over_generator_in_asyncio_run",
        "test_seed003_wait_on_generators_and_refs",
        "test_task_returning_a_ref",
        "test_submitting_from_many_threads",
    ],
    "test_generators_streaming": [
        "test_for_loop_each_executor",
        "test_next_then_stop_iteration",
        "test_async_for_under_pytest_asyncio",
        "test_anext_then_stop_async_iteration",
        "test_async_for_from_sync_script",
        "test_num_returns_streaming_alias",
        "test_live_streaming_from_worker_process",
        "test_live_streaming_async_from_worker_process",
        "test_completed_resolves_when_task_ends",
        "test_get_of_generator_is_a_clear_type_error",
        "test_get_async_of_generator_is_a_type_error",
        "test_generator_consumed_inside_worker_process",
    ],
    "test_generators_errors": [
        "test_application_error_async_iteration",
        "test_error_before_first_yield",
        "test_failed_dependency_ends_stream_with_its_error",
        "test_crash_retry_reruns_without_duplicating_refs",
        "test_retry_exceptions_reruns_without_duplicating_refs",
        "test_refs_taken_before_the_failure_stay_valid_across_retry",
        "test_no_retry_for_application_error_by_default",
    ],
    "test_actors_basic": [
        "test_sync_actor_keeps_state",
        "test_constructor_arguments_and_kwargs",
        "test_async_actor_state",
        "test_method_results_are_ordinary_refs",
        "test_ref_arguments_to_methods_are_resolved",
        "test_nested_refs_are_passed_as_refs",
        "test_num_returns_with_method_decorator",
        "test_num_returns_with_options",
        "test_num_returns_mismatch_is_an_error_and_actor_lives",
        "test_method_exception_is_returned_and_actor_stays_alive",
        "test_async_method_exception_awaited",
        "test_failed_constructor_argument_kills_actor",
        "test_missing_method_names_the_class",
        "test_calling_method_without_remote",
        "test_instantiating_the_class_directly",
        "test_unknown_actor_option",
        "test_invalid_max_concurrency",
        "test_unknown_method_option",
        "test_class_metadata_kept",
        "test_static_and_class_methods_are_not_remote_methods",
        "test_inherited_methods",
        "test_call_dunder_call",
        "test_bare_method_decorator_is_accepted",
    ],
    "test_actors_concurrency": [
        "test_async_actor_default_concurrency_is_high",
        "test_async_actor_from_async_app",
        "test_undeclared_group_on_method_is_a_clear_error",
        "test_invalid_concurrency_groups",
        "test_cancel_running_async_call",
    ],
    "test_actors_handles": [
        "test_handle_passed_to_other_actors",
        "test_handle_pickles_in_the_driver",
    ],
    "test_actors_names": [
        "test_get_actor_by_name",
        "test_get_if_exists_returns_the_existing_actor",
        "test_get_actor_bad_name",
        "test_name_must_be_a_string",
        "test_get_if_exists_respects_namespace",
        "test_name_is_released_when_the_actor_dies",
        "test_get_if_exists_after_death_creates_a_new_actor",
    ],
}


@pytest.fixture
def ray(ray_session: Any) -> Iterator[Any]:
    """conftest's ``ray`` fixture, but on the module's Ray (for the adopted tests)."""
    _use_ray(ray_session)
    yield aioray


@pytest.fixture
async def aray(ray_session: Any) -> Any:
    """conftest's ``aray`` fixture, but on the module's Ray."""
    _use_ray(ray_session)
    yield aioray


def _adopt() -> None:
    if not HAVE_RAY:
        return  # without Ray they would only repeat the embedded runs
    import importlib
    for modname, names in _ADOPTED.items():
        mod = importlib.import_module(modname)
        for name in names:
            globals()[f"test_ray__{modname[5:]}__{name[5:]}"] = getattr(mod, name)


_adopt()
