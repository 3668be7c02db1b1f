"""Tasks: where they run, how arguments and returns travel, options, retries, nesting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import aioray
from aioray.exceptions import RayTaskError, RuntimeShutdownError


@aioray.remote
def add(a: int, b: int = 0) -> int:
    return a + b


@aioray.remote
def where() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


@aioray.remote
async def async_where() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


@aioray.remote
def identity(x: Any) -> Any:
    return x


@aioray.remote
def is_ref(x: Any) -> bool:
    return isinstance(x, aioray.ObjectRef)


# -- where task bodies run ---------------------------------------------------------------------
def test_sync_function_runs_in_worker_process(ray: Any) -> None:
    pid, _ = aioray.get(where.remote())
    assert pid != os.getpid()


def test_async_function_runs_on_runtime_loop(ray: Any) -> None:
    pid, tid = aioray.get(async_where.remote())
    rt = aioray._engine.runtime.current_runtime()
    assert pid == os.getpid()
    assert tid == rt.loop_thread_id


def test_executor_thread_option_runs_sync_function_in_driver(ray: Any) -> None:
    pid, tid = aioray.get(where.options(executor="thread").remote())
    assert pid == os.getpid()
    assert tid not in (threading.get_ident(), aioray._engine.runtime.current_runtime().loop_thread_id)


def test_executor_thread_in_decorator(ray: Any) -> None:
    @aioray.remote(executor="thread")
    def touch(box: list[int]) -> int:
        return os.getpid()

    assert aioray.get(touch.remote([1])) == os.getpid()


def test_local_mode_runs_sync_tasks_in_this_process() -> None:
    aioray.init(num_cpus=2, local_mode=True)
    assert aioray.get(where.remote())[0] == os.getpid()
    # Task errors still come back as task errors.
    with pytest.raises(ZeroDivisionError):
        aioray.get(_div.remote(1, 0))


@aioray.remote
def _div(a: int, b: int) -> float:
    return a / b


# -- arguments -----------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_kwargs_and_defaults(ray: Any) -> None:
    assert aioray.get(add.remote(1, b=2)) == 3
    assert aioray.get(add.remote(5)) == 5
    assert aioray.get(add.remote(a=1, b=aioray.put(4))) == 5


@pytest.mark.all_backends
def test_top_level_refs_resolved_nested_refs_passed_as_refs(ray: Any) -> None:
    r = aioray.put(41)
    assert aioray.get(is_ref.remote(r)) is False
    assert aioray.get(identity.remote(r)) == 41

    @aioray.remote
    def nested(xs: list[Any]) -> Any:
        assert all(isinstance(x, aioray.ObjectRef) for x in xs)
        return sum(aioray.get(xs))

    assert aioray.get(nested.remote([r, aioray.put(1)])) == 42


@pytest.mark.all_backends
def test_chained_tasks(ray: Any) -> None:
    x = add.remote(0, 1)
    for _ in range(5):
        x = add.remote(x, 1)
    assert aioray.get(x) == 6


@pytest.mark.all_backends
def test_mixed_async_and_sync_dependencies(ray: Any) -> None:
    @aioray.remote
    async def double(x: int) -> int:
        return 2 * x

    assert aioray.get(add.remote(double.remote(2), double.remote(add.remote(1, 1)))) == 8


def test_arguments_are_copied_at_submit(ray: Any) -> None:
    box = [1, 2]
    ref = identity.options(executor="thread").remote(box)
    box.append(3)
    assert aioray.get(ref) == [1, 2]


@pytest.mark.all_backends
def test_large_numpy_argument_in_process_task(ray: Any) -> None:
    np = pytest.importorskip("numpy")

    @aioray.remote
    def total(a: Any) -> tuple[float, bool]:
        return float(a.sum()), bool(a.flags.writeable)

    arr = np.ones(1 << 18)  # 2 MiB: travels through shared memory
    s, writeable = aioray.get(total.remote(arr))
    assert s == float(1 << 18)
    assert writeable is False
    s2, _ = aioray.get(total.remote(aioray.put(arr)))
    assert s2 == s


@pytest.mark.all_backends
def test_large_numpy_result_from_process_task(ray: Any) -> None:
    np = pytest.importorskip("numpy")

    @aioray.remote
    def make(n: int) -> Any:
        return np.arange(n, dtype=np.float64)

    out = aioray.get(make.remote(1 << 18))
    assert out.shape == (1 << 18,) and out[-1] == (1 << 18) - 1
    assert not out.flags.writeable


# -- returns ------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_num_returns(ray: Any) -> None:
    @aioray.remote(num_returns=3)
    def three() -> tuple[int, int, int]:
        return 1, 2, 3

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert aioray.get(refs) == [1, 2, 3]


@pytest.mark.all_backends
def test_num_returns_via_options_and_async(ray: Any) -> None:
    @aioray.remote
    async def pair() -> list[int]:
        return [7, 8]

    x, y = pair.options(num_returns=2).remote()
    assert aioray.get([y, x]) == [8, 7]


@pytest.mark.all_backends
def test_num_returns_zero(ray: Any) -> None:
    @aioray.remote(num_returns=0)
    def nothing() -> None:
        return None

    assert nothing.remote() is None


def test_return_value_is_immutable_copy(ray: Any) -> None:
    @aioray.remote(executor="thread")
    def keep(store: dict[str, Any]) -> list[int]:
        lst = [1]
        store["lst"] = lst
        return lst

    ref = keep.remote({})
    first = aioray.get(ref)
    first.append(99)
    assert aioray.get(ref) == [1]


# -- options, names --------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_options_do_not_change_the_original(ray: Any) -> None:
    @aioray.remote
    def two() -> tuple[int, int]:
        return 1, 2

    bound = two.options(num_returns=2)
    assert aioray.get(bound.remote()) == [1, 2]
    assert aioray.get(two.remote()) == (1, 2)
    assert aioray.get(bound.options(name="x").remote()) == [1, 2]


@pytest.mark.all_backends
def test_task_name_in_error(ray: Any) -> None:
    @aioray.remote
    def boom() -> None:
        raise ValueError("x")

    with pytest.raises(RayTaskError) as ei:
        aioray.get(boom.options(name="my-special-task").remote())
    assert "my-special-task" in str(ei.value)


@pytest.mark.all_backends
def test_remote_function_keeps_metadata() -> None:
    def documented(x: int) -> int:
        """Adds one."""
        return x + 1

    rf = aioray.remote(documented)
    assert rf.__name__ == "documented"
    assert rf.__doc__ == "Adds one."
    assert rf.__wrapped__ is documented
    assert "documented" in repr(rf)


# -- retries --------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_retry_exceptions(ray: Any, tmp_path: Any) -> None:
    marker = tmp_path / "count"

    @aioray.remote(max_retries=3, retry_exceptions=[OSError])
    def flaky(path: str) -> int:
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise OSError("try again")
        return n

    assert aioray.get(flaky.remote(str(marker))) == 2


@pytest.mark.all_backends
def test_no_retry_for_other_exceptions(ray: Any, tmp_path: Any) -> None:
    marker = tmp_path / "count"

    @aioray.remote(max_retries=3, retry_exceptions=[OSError])
    def fails(path: str) -> None:
        with open(path, "a") as f:
            f.write("x")
        raise KeyError("no")

    with pytest.raises(KeyError):
        aioray.get(fails.remote(str(marker)))
    assert marker.read_text() == "x"


def test_retry_exceptions_true_then_give_up(ray: Any) -> None:
    calls = []

    @aioray.remote(max_retries=2, retry_exceptions=True)
    async def always() -> None:
        calls.append(1)
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        aioray.get(always.remote())
    assert len(calls) == 3


# -- functions from anywhere --------------------------------------------------------------------
def test_closure_and_lambda_in_process_tasks(ray: Any) -> None:
    k = 10

    def closure(x: int) -> int:
        return x + k

    f = aioray.remote(closure)
    g = aioray.remote(lambda x: x * 3)
    assert aioray.get(f.remote(1)) == 11
    assert aioray.get(g.remote(f.remote(2))) == 36
    pid_g = aioray.remote(lambda: os.getpid())
    assert aioray.get(pid_g.remote()) != os.getpid()


def _module_helper(x: int) -> int:
    return x * 100


@aioray.remote
def uses_module_helper(x: int) -> int:
    return _module_helper(x)


@pytest.mark.all_backends
def test_test_module_function_in_worker_process(ray: Any) -> None:
    assert aioray.get(uses_module_helper.remote(3)) == 300


def test_functions_from_main_script(tmp_path: Any) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import os
        import aioray as ray

        SCALE = 7

        def helper(x):
            return x * SCALE

        @ray.remote
        def f(x):
            return helper(x), os.getpid()

        class Box:
            def __init__(self, v):
                self.v = v

        @ray.remote
        def unbox(b):
            return b.v

        if __name__ == "__main__":
            ray.init(num_cpus=2)
            value, pid = ray.get(f.remote(6))
            assert pid != os.getpid()
            assert ray.get(unbox.remote(Box(5))) == 5
            sq = ray.remote(lambda x: x * x)
            print("RESULT", value, ray.get(sq.remote(9)))
            ray.shutdown()
    """))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(aioray.__file__)), env.get("PYTHONPATH"))
        if p)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "RESULT 42 81" in out.stdout


# -- nested work from inside tasks -----------------------------------------------------------------
@aioray.remote
def fan_out(n: int) -> int:
    refs = [add.remote(i, 1) for i in range(n)]
    ready, rest = aioray.wait(refs, num_returns=n, timeout=30)
    assert len(ready) == n and not rest
    box = aioray.put([sum(aioray.get(refs))])
    return aioray.get(identity.remote(box))[0]


@pytest.mark.all_backends
def test_nested_remote_get_put_wait_in_worker(ray: Any) -> None:
    assert aioray.get(fan_out.remote(4)) == 10


@pytest.mark.all_backends
def test_nested_tasks_two_levels_in_worker(ray: Any) -> None:
    @aioray.remote
    def outer() -> int:
        return aioray.get(fan_out.remote(2)) + aioray.get(async_plus.remote(1))

    assert aioray.get(outer.remote(), timeout=60) == 3 + 2


@aioray.remote
async def async_plus(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@pytest.mark.all_backends
def test_async_task_submits_and_awaits(ray: Any) -> None:
    @aioray.remote
    async def parent() -> int:
        return sum(await asyncio.gather(*[add.remote(i) for i in range(4)]))

    assert aioray.get(parent.remote()) == 6


@pytest.mark.all_backends
def test_worker_returns_ref_it_created(ray: Any) -> None:
    @aioray.remote
    def make_ref() -> list[Any]:
        return [aioray.put("inside"), add.remote(2, 2)]

    refs = aioray.get(make_ref.remote())
    assert aioray.get(refs) == ["inside", 4]


def test_seed003_nested_remote_func_with_gpu() -> None:
    # seed 003: @ray.remote(num_cpus=1, num_gpus=1) then ray.get(f.remote()) — the seed's
    # "num=gpus=1" is a typo for num_gpus=1.
    aioray.init(num_cpus=2, num_gpus=1)

    @aioray.remote(num_cpus=1, num_gpus=1)
    def f() -> int:
        return 1

    assert aioray.get(f.remote()) == 1


@pytest.mark.all_backends
def test_many_small_tasks(ray: Any) -> None:
    refs = [add.remote(i, i) for i in range(200)]
    assert aioray.get(refs) == [2 * i for i in range(200)]


# -- after shutdown -----------------------------------------------------------------------------
def test_pending_ref_after_shutdown_raises_shutdown_error() -> None:
    aioray.init(num_cpus=1)
    gate = threading.Event()

    @aioray.remote(executor="thread")
    def wait_gate() -> int:
        gate.wait(30)
        return 1

    ref = wait_gate.remote()
    aioray.shutdown()
    gate.set()
    with pytest.raises(RuntimeShutdownError):
        aioray.get(ref, timeout=10)


def test_implicit_reinit_after_shutdown() -> None:
    aioray.init(num_cpus=1)
    aioray.shutdown()
    assert not aioray.is_initialized()
    assert aioray.get(add.remote(1, 1)) == 2  # first use starts a runtime again, as Ray does
    assert aioray.is_initialized()


# -- seed 003, task parts (generator tasks) ----------------------------------------------------------
SEED_SLEEP = 0.01  # the seed sleeps 1 s / 5 s per item


@aioray.remote
def seed003_failing_gen() -> Any:
    for i in range(5):
        if i == 1:
            raise ValueError
        yield i


@pytest.mark.all_backends
def test_seed003_generator_error(ray: Any, capsys: Any) -> None:
    try:
        for obj_ref in seed003_failing_gen.remote():
            print(aioray.get(obj_ref))
    except ValueError as e:
        print("caught", type(e.cause).__name__)  # type: ignore[attr-defined]
    assert capsys.readouterr().out == "0\ncaught ValueError\n"


@aioray.remote
def seed003_task() -> Any:
    import time
    for i in range(5):
        time.sleep(SEED_SLEEP)
        yield i


@pytest.mark.all_backends
def test_seed003_async_for_over_generator_in_asyncio_run(ray: Any) -> None:
    seen: list[int] = []

    async def async_task() -> None:
        async for ref in seed003_task.remote():
            seen.append(await ref)

    async def main() -> None:
        t1 = async_task()
        t2 = async_task()
        await asyncio.gather(t1, t2)

    asyncio.run(main())
    assert sorted(seen) == sorted([0, 1, 2, 3, 4] * 2)


@pytest.mark.all_backends
def test_seed003_wait_on_generators_and_refs(ray: Any) -> None:
    # The seed imports ObjectRefGenerator from ray._raylet (aioray exports it at top level) and
    # mixes in an undefined `ref` list: we use two plain task refs.
    ObjectRefGenerator = aioray.ObjectRefGenerator
    gen = [seed003_task.remote()]
    ref = [add.remote(10, 0), add.remote(20, 0)]
    ready, unready = [], [*gen, *ref]
    result = []
    while unready:
        ready, unready = aioray.wait(unready)
        for r in ready:
            if isinstance(r, ObjectRefGenerator):
                try:
                    ref = next(r)
                    result.append(aioray.get(ref))
                except StopIteration:
                    pass
                else:
                    unready.append(r)
            else:
                result.append(aioray.get(r))
    assert sorted(result) == [0, 1, 2, 3, 4, 10, 20]


# -- odds and ends ---------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_task_returning_a_ref(ray: Any) -> None:
    @aioray.remote
    def make() -> Any:
        return aioray.put("inner")

    inner = aioray.get(make.remote())
    assert isinstance(inner, aioray.ObjectRef)
    assert aioray.get(inner) == "inner"


@pytest.mark.all_backends
def test_submitting_from_many_threads(ray: Any) -> None:
    results: dict[int, list[int]] = {}

    def submitter(k: int) -> None:
        refs = [async_plus.remote(k * 1000 + i) for i in range(200)]
        results[k] = aioray.get(refs, timeout=60)

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1, 2, 3]
    for k, values in results.items():
        assert values == [k * 1000 + i + 1 for i in range(200)]
