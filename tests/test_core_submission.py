"""Submission-time behaviour (issue 17): arguments bound to the signature at ``.remote()``,
placement-group removal that leaves no waiter behind, error classes as Ray raises them,
``ObjectRefGenerator.send/throw/close``, and ``runtime_env`` on the embedded runtime."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray._handles.signature import Binder, function_binder
from aioray.exceptions import PlacementGroupRemovedError, RayTaskError, TaskCancelledError
from aioray.util import placement_group, remove_placement_group
from aioray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

TIMEOUT = 30


# -- 1. argument binding at submission -------------------------------------------------------
@aioray.remote
def square(x: int) -> int:
    return x * x


@aioray.remote
def kw_only(a: int, b: int = 2, *, c: int, d: int = 4) -> int:
    return a + b + c + d


@aioray.remote
def anything(*args: Any, **kwargs: Any) -> int:
    return len(args) + len(kwargs)


@aioray.remote
async def async_add(x: int, y: int) -> int:
    return x + y


@aioray.remote
def pos_only(a: int, /, b: int) -> int:
    return a - b


@aioray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    async def aincr(self, by: int) -> int:
        self.n += by
        return self.n

    def many(self, *args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)


@aioray.remote
class NoInit:
    def ping(self) -> str:
        return "pong"


@pytest.mark.all_backends
def test_remote_function_binds_arguments_at_submission(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"square\(\) missing 1 required positional argument: 'x'"):
        square.remote()
    with pytest.raises(TypeError, match=r"square\(\) takes 1 positional argument but 2 were"):
        square.remote(1, 2)
    with pytest.raises(TypeError, match=r"square\(\) got an unexpected keyword argument 'y'"):
        square.remote(1, y=2)
    with pytest.raises(TypeError, match=r"square\(\) got multiple values for argument 'x'"):
        square.remote(1, x=2)
    with pytest.raises(TypeError, match=r"kw_only\(\) missing 1 required keyword-only"):
        kw_only.remote(1)
    with pytest.raises(TypeError, match=r"pos_only\(\) got some positional-only"):
        pos_only.remote(a=1, b=2)
    with pytest.raises(TypeError, match=r"async_add\(\) missing 1 required positional"):
        async_add.remote(1)
    with pytest.raises(TypeError, match=r"square\(\) missing 1"):  # through .options() too
        square.options(num_cpus=1).remote()
    # What fits is submitted as before.
    assert aioray.get(square.remote(x=3)) == 9
    assert aioray.get(kw_only.remote(1, c=3)) == 10
    assert aioray.get(anything.remote(1, 2, k=3)) == 3
    assert aioray.get(async_add.remote(1, y=2)) == 3
    assert aioray.get(pos_only.remote(5, b=2)) == 3


@pytest.mark.all_backends
def test_actor_constructor_and_methods_bind_without_self(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"Counter.__init__\(\) takes from 1 to 2 positional"):
        Counter.remote(1, 2)
    with pytest.raises(TypeError, match=r"Counter.__init__\(\) got an unexpected keyword"):
        Counter.options(max_concurrency=1).remote(begin=1)
    with pytest.raises(TypeError, match=r"NoInit\(\) takes 0 positional"):
        NoInit.remote(1)
    c = Counter.remote(10)
    with pytest.raises(TypeError, match=r"Counter.incr\(\) takes from 1 to 2 positional"):
        c.incr.remote(1, 2)
    with pytest.raises(TypeError, match=r"Counter.aincr\(\) missing 1 required positional"):
        c.aincr.remote()
    with pytest.raises(TypeError, match=r"Counter.incr\(\) got an unexpected keyword"):
        c.incr.options(name="x").remote(step=1)
    assert aioray.get(c.incr.remote()) == 11  # self is not an argument to pass
    assert aioray.get(c.incr.remote(by=2)) == 13
    assert aioray.get(c.aincr.remote(1)) == 14
    assert aioray.get(c.many.remote(1, 2, a=3)) == 3
    assert aioray.get(NoInit.remote().ping.remote()) == "pong"


@aioray.remote
def call_with_wrong_args(h: Any) -> str:
    try:
        h.incr.remote(1, 2, 3)
    except TypeError as e:
        inner = str(e)
    else:
        return "not raised"
    try:
        square.remote()
    except TypeError as e:
        return f"{inner} | {e}"
    return "not raised"


@pytest.mark.all_backends
def test_binding_holds_inside_worker_processes(ray: Any) -> None:
    """Handles and remote functions pickled into a worker keep their binders."""
    out = aioray.get(call_with_wrong_args.remote(Counter.remote()))
    assert "Counter.incr() takes from 1 to 2 positional arguments but 4 were given" in out
    assert "square() missing 1 required positional argument: 'x'" in out


def test_binder_pickles_as_text_and_skips_unreadable_signatures() -> None:
    b = function_binder(square._function)
    assert b is not None
    b2 = pickle.loads(pickle.dumps(b))
    assert isinstance(b2, Binder) and b2.params == "(x)"
    b2.bind((1,), {})
    with pytest.raises(TypeError, match="square"):
        b2.bind((), {})
    assert function_binder(dict) is None  # no readable signature: not checked, no error


# -- 2. placement-group removal leaves nothing behind ----------------------------------------
@aioray.remote(num_cpus=1)
async def hold(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "held"


@aioray.remote(num_cpus=1)
async def quick() -> str:
    return "ok"


def _dead_waiters() -> int:
    """Cancelled waiters still in the node's queue, once the cancellations were delivered
    (a cancelled asyncio task handles its CancelledError on a later loop iteration)."""
    rt = aioray._engine.runtime.current_runtime()
    assert rt is not None
    deadline = time.monotonic() + 2
    while True:
        dead = sum(1 for q in list(rt.node_pool._queues.values()) for w in list(q)
                   if w.fut.done())
        if not dead or time.monotonic() > deadline:
            return dead
        time.sleep(0.01)


def test_removing_a_pending_group_frees_its_place_in_the_queue(ray: Any) -> None:
    blocker = hold.remote(60)  # 1 of 2 CPUs
    deadline = time.monotonic() + TIMEOUT
    while aioray.available_resources().get("CPU", 0) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    big = placement_group([{"CPU": 2}])  # can't be reserved while the blocker runs
    assert not big.wait(0.2)
    remove_placement_group(big)
    assert _dead_waiters() == 0
    small = placement_group([{"CPU": 1}])  # one CPU is free: ready at once
    assert aioray.get(small.ready(), timeout=5) is not None
    remove_placement_group(small)
    assert aioray.get(quick.remote(), timeout=5) == "ok"  # and a task schedules
    aioray.cancel(blocker)


def _scenario() -> dict[str, Any]:
    """On 2 CPUs: a ready group, a half-used group (a task running in its bundle and one
    queued behind it), a pending group, and a plain task queued behind the pending group."""
    ready = placement_group([{"CPU": 1}])
    assert ready.wait(TIMEOUT)
    half = placement_group([{"CPU": 1}])
    assert half.wait(TIMEOUT)
    strategy = PlacementGroupSchedulingStrategy(half, placement_group_bundle_index=0)
    running = hold.options(scheduling_strategy=strategy).remote(60)
    queued = hold.options(scheduling_strategy=strategy).remote(0)
    pending = placement_group([{"CPU": 1}])
    assert not pending.wait(0.1)
    task = quick.remote()
    return {"ready": ready, "half": half, "pending": pending, "running": running,
            "queued": queued, "task": task}


@pytest.mark.parametrize("order", list(itertools.permutations(["ready", "half", "pending"])))
def test_remove_groups_in_every_order_then_everything_schedules(
        ray: Any, order: tuple[str, ...]) -> None:
    s = _scenario()
    for name in order:
        remove_placement_group(s[name])
        assert _dead_waiters() == 0, f"a removed waiter stayed queued after removing {name}"
    for ref in (s["running"], s["queued"]):
        with pytest.raises(PlacementGroupRemovedError):
            aioray.get(ref, timeout=TIMEOUT)
    assert aioray.get(s["task"], timeout=TIMEOUT) == "ok"
    whole = placement_group([{"CPU": 2}])  # both CPUs came back
    assert aioray.get(whole.ready(), timeout=TIMEOUT) is not None
    remove_placement_group(whole)
    assert aioray.get([quick.remote() for _ in range(4)], timeout=TIMEOUT) == ["ok"] * 4
    deadline = time.monotonic() + TIMEOUT
    while aioray.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert aioray.available_resources().get("CPU") == 2
    assert _dead_waiters() == 0


def test_cancelled_task_waiting_for_a_cpu_leaves_the_queue(ray: Any) -> None:
    blockers = [hold.remote(60), hold.remote(60)]  # both CPUs
    waiting = quick.remote()
    time.sleep(0.1)
    aioray.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        aioray.get(waiting, timeout=TIMEOUT)
    assert _dead_waiters() == 0
    for b in blockers:
        aioray.cancel(b)
    assert aioray.get(quick.remote(), timeout=TIMEOUT) == "ok"


# -- 3. error classes as Ray raises them -----------------------------------------------------
@aioray.remote
class Napper:
    def __init__(self) -> None:
        self.running = 0

    async def nap(self) -> str:
        self.running += 1
        await asyncio.sleep(60)
        return "woke"

    async def is_running(self) -> int:
        return self.running


def test_cancelled_running_async_actor_call_is_a_task_error(ray: Any) -> None:
    a = Napper.remote()
    ref = a.nap.remote()
    deadline = time.monotonic() + TIMEOUT
    while not aioray.get(a.is_running.remote()) and time.monotonic() < deadline:
        time.sleep(0.01)
    aioray.cancel(ref)
    with pytest.raises(RayTaskError) as ei:  # Ray's actor docs catch RayTaskError
        aioray.get(ref, timeout=TIMEOUT)
    err = ei.value
    assert isinstance(err, TaskCancelledError)  # ... and except TaskCancelledError still works
    assert isinstance(err.cause, TaskCancelledError)
    assert "was cancelled" in str(err)
    assert err.function_name == "Napper.nap"
    err2 = pickle.loads(pickle.dumps(err))
    assert isinstance(err2, RayTaskError) and isinstance(err2, TaskCancelledError)


@pytest.mark.all_backends
def test_cancelled_queued_actor_call_is_a_plain_cancel(ray: Any) -> None:
    a = Napper.options(max_concurrency=1).remote()
    first = a.nap.remote()
    second = a.nap.remote()  # queued behind the first: never starts
    aioray.cancel(second)
    with pytest.raises(TaskCancelledError) as ei:
        aioray.get(second, timeout=TIMEOUT)
    assert not isinstance(ei.value, RayTaskError)
    aioray.cancel(first)


@aioray.remote
def gen_n(n: int) -> Iterator[int]:
    yield from range(n)


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_static_num_returns_count_errors_are_task_errors(ray: Any, executor: str) -> None:
    r0, r1, r2 = gen_n.options(num_returns=3, executor=executor).remote(2)
    assert aioray.get([r0, r1]) == [0, 1]
    with pytest.raises(RayTaskError) as ei:
        aioray.get(r2)
    assert isinstance(ei.value, ValueError)
    assert "yielded 2 values but num_returns=3" in str(ei.value)
    s0, s1 = gen_n.options(num_returns=2, executor=executor).remote(3)
    assert aioray.get(s0) == 0
    with pytest.raises(RayTaskError) as ei2:
        aioray.get(s1)
    assert isinstance(ei2.value, ValueError)


# -- 4. ObjectRefGenerator.send/throw/close ---------------------------------------------------
@pytest.mark.all_backends
def test_object_ref_generator_send_throw_close_are_not_implemented(ray: Any) -> None:
    gen = gen_n.remote(2)
    with pytest.raises(NotImplementedError, match=r"`gen\.send` is not supported\."):
        gen.send(None)
    with pytest.raises(NotImplementedError, match=r"`gen\.throw` is not supported\."):
        gen.throw(ValueError())
    with pytest.raises(NotImplementedError, match=r"`gen\.close` is not supported\."):
        gen.close()
    for name, args in (("asend", (None,)), ("athrow", (ValueError(),)), ("aclose", ())):
        with pytest.raises(NotImplementedError, match=rf"`gen\.{name}` is not supported\."):
            asyncio.run(getattr(gen, name)(*args))
    assert [aioray.get(r) for r in gen] == [0, 1]  # still readable


# -- 5. runtime_env ----------------------------------------------------------------------------
@pytest.fixture
def one_worker() -> Iterator[None]:
    """One CPU: every process task runs on the same worker, one after the other."""
    aioray.shutdown()
    aioray.init(address="local", num_cpus=1)
    yield
    aioray.shutdown()


@aioray.remote
def env_of(*names: str) -> list[str | None]:
    return [os.environ.get(n) for n in names]


@aioray.remote
def where() -> tuple[str, str]:
    return os.getcwd(), sys.path[0]


@aioray.remote
def import_from_working_dir() -> Any:
    import aioray_wd_mod  # type: ignore[import-not-found]
    return aioray_wd_mod.VALUE


@aioray.remote
def import_py_module() -> Any:
    import aioray_pm_pkg  # type: ignore[import-not-found]
    return aioray_pm_pkg.VALUE


@aioray.remote
def child_env() -> list[str | None]:
    return aioray.get(env_of.remote("AIORAY_T_PARENT", "AIORAY_T_CHILD"))


def test_env_vars_apply_to_their_task_only(one_worker: None) -> None:
    env = {"env_vars": {"AIORAY_T_X": "1", "PATH": "/aioray-extra:${PATH}"}}
    x, path = aioray.get(env_of.options(runtime_env=env).remote("AIORAY_T_X", "PATH"))
    assert x == "1"
    assert path is not None and path.startswith("/aioray-extra:") and len(path) > 14
    # The same worker, next task: nothing leaked.
    x2, path2 = aioray.get(env_of.remote("AIORAY_T_X", "PATH"))
    assert x2 is None and path2 is not None and "/aioray-extra" not in path2


def test_job_and_task_env_vars_merge_as_in_ray() -> None:
    aioray.shutdown()
    aioray.init(address="local", num_cpus=1,
                runtime_env={"env_vars": {"AIORAY_T_A": "job", "AIORAY_T_B": "job"}})
    try:
        assert aioray.get(env_of.remote("AIORAY_T_A", "AIORAY_T_B")) == ["job", "job"]
        task_env = {"env_vars": {"AIORAY_T_B": "task"}}
        assert aioray.get(env_of.options(runtime_env=task_env).remote(
            "AIORAY_T_A", "AIORAY_T_B")) == ["job", "task"]
        assert aioray.get(env_of.remote("AIORAY_T_A", "AIORAY_T_B")) == ["job", "job"]
    finally:
        aioray.shutdown()


def test_child_tasks_inherit_the_parents_runtime_env(ray: Any) -> None:
    parent_env = {"env_vars": {"AIORAY_T_PARENT": "p"}}
    assert aioray.get(child_env.options(runtime_env=parent_env).remote()) == ["p", None]


def test_working_dir_and_py_modules(one_worker: None, tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "aioray_wd_mod.py").write_text("VALUE = 42\n")
    pkg = tmp_path / "mods" / "aioray_pm_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 'pm'\n")
    renv = {"working_dir": str(wd)}
    assert aioray.get(import_from_working_dir.options(runtime_env=renv).remote()) == 42
    cwd, first = aioray.get(where.options(runtime_env=renv).remote())
    assert cwd == str(wd) and first == str(wd)
    cwd2, first2 = aioray.get(where.remote())  # the same worker afterwards
    assert cwd2 != str(wd) and first2 != str(wd)
    assert aioray.get(import_py_module.options(
        runtime_env={"py_modules": [str(pkg)]}).remote()) == "pm"


def test_unsupported_runtime_env_keys_are_clear_errors(ray: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"runtime_env\['pip'\].*own"):
        env_of.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(ValueError, match=r"runtime_env\['conda'\]"):
        Counter.options(runtime_env={"conda": "env"})
    with pytest.raises(ValueError, match=r"runtime_env\['container'\].*container"):
        env_of.options(runtime_env={"container": {"image": "x"}})
    with pytest.raises(ValueError, match="local directories only"):
        env_of.options(runtime_env={"working_dir": "s3://bucket/wd.zip"})
    with pytest.raises(ValueError, match="local directories only"):
        env_of.options(runtime_env={"py_modules": ["https://example.com/m.whl"]})
    with pytest.raises(ValueError, match="not an existing local directory"):
        env_of.options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(TypeError, match=r"env_vars'\] must be a dict of str -> str"):
        env_of.options(runtime_env={"env_vars": {"N": 1}})


def test_init_runtime_env_is_checked() -> None:
    aioray.shutdown()
    with pytest.raises(ValueError, match=r"runtime_env\['pip'\]"):
        aioray.init(address="local", runtime_env={"pip": ["x"]})
    assert not aioray.is_initialized()


def test_runtime_env_for_code_in_the_driver_is_refused(ray: Any) -> None:
    renv = {"env_vars": {"AIORAY_T_X": "1"}}
    with pytest.raises(ValueError, match="async def task"):
        async_add.options(runtime_env=renv).remote(1, 2)
    with pytest.raises(ValueError, match="thread task"):
        env_of.options(runtime_env=renv, executor="thread").remote("AIORAY_T_X")
    with pytest.raises(ValueError, match="actor Counter"):
        Counter.options(runtime_env=renv).remote()


# -- names real Ray programs touch ----------------------------------------------------------
@pytest.mark.all_backends
def test_object_ref_round_trips_through_binary_and_hex(ray: Any) -> None:
    ref = aioray.put([1, 2, 3])
    again = aioray.ObjectRef(ref.binary())
    assert again == ref and aioray.get(again) == [1, 2, 3]
    assert aioray.get(aioray.ObjectRef.from_binary(ref.binary())) == [1, 2, 3]
    assert aioray.get(aioray.ObjectRef.from_hex(ref.hex())) == [1, 2, 3]
    with pytest.raises(ValueError, match="28 bytes"):
        aioray.ObjectRef(b"short")


def test_runtime_context_names(ray: Any) -> None:
    from aioray.runtime_context import RuntimeContext, get_runtime_context
    from aioray.util.placement_group import placement_group
    from aioray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ctx = get_runtime_context()
    assert isinstance(ctx, RuntimeContext)
    assert ctx.node_id == ctx.get_node_id()
    assert ctx.get_placement_group_id() is None
    assert ctx.get_runtime_env_string() == "{}"

    pg = placement_group([{"CPU": 1}])
    aioray.get(pg.ready(), timeout=60)

    @aioray.remote(runtime_env={"env_vars": {"AIORAY_T": "1"}})
    def where() -> tuple[str | None, str]:
        c = aioray.get_runtime_context()
        return c.get_placement_group_id(), c.get_runtime_env_string()

    strategy = PlacementGroupSchedulingStrategy(pg)
    pg_id, env = aioray.get(where.options(scheduling_strategy=strategy).remote(), timeout=60)
    assert pg_id == pg.id.hex()
    assert json.loads(env) == {"env_vars": {"AIORAY_T": "1"}}


def test_job_config_cloudpickle_and_node_ip() -> None:
    from aioray.job_config import JobConfig

    aioray.shutdown()
    info = aioray.init(num_cpus=1, job_config=JobConfig(ray_namespace="jobs-ns"))
    try:
        assert info["namespace"] == "jobs-ns"
        assert aioray.get_runtime_context().get_namespace() == "jobs-ns"
    finally:
        aioray.shutdown()
    from aioray import cloudpickle
    assert cloudpickle.loads(cloudpickle.dumps(lambda x: x + 1))(1) == 2
    assert aioray.cloudpickle is cloudpickle
    assert aioray.util.get_node_ip_address() == "127.0.0.1"
