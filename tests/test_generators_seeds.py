"""Every code block of the three generator seeds (Ray's generator docs), with ``import aioray as
ray``. Only the sleeps are shortened (``SLEEP`` instead of 5 s / 1 s) and the 100 MB arrays made
small. Seed 001 is the older page: the same examples with ``num_returns="streaming"``, so the
streaming examples run both ways (``DECORATE``)."""

# The seeds' code is kept as written, style included.
# ruff: noqa: UP028, B007

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aioray as ray
from aioray import DynamicObjectRefGenerator, ObjectRefGenerator

SLEEP = 0.02

# 000 uses bare @ray.remote, 001 uses @ray.remote(num_returns="streaming").
DECORATE = {
    "000": ray.remote,
    "001": ray.remote(num_returns="streaming"),
}
seeds = pytest.mark.parametrize("seed", list(DECORATE))
# Seed 001's only inline code is the intro block; its other examples are 000's (literalinclude).
seed_000 = pytest.mark.parametrize("seed", ["000"])


def _task(seed: str, sleep: float = SLEEP) -> Any:
    @DECORATE[seed]
    def task() -> Iterator[int]:
        for i in range(5):
            time.sleep(sleep)
            yield i
    return task


# == 000/001: Ray generators ==================================================================
@seeds
def test_intro_diff_block(ray: Any, seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    @DECORATE[seed]
    def f() -> Iterator[int]:
        for i in range(5):
            time.sleep(SLEEP)
            yield i

    for obj_ref in f.remote():
        # Prints every 5 seconds and stops after 25 seconds.
        print(ray.get(obj_ref))
    assert capsys.readouterr().out.split() == ["0", "1", "2", "3", "4"]


@seed_000
def test_getting_started(ray: Any, seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    task = _task(seed)
    gen = task.remote()
    # Blocks for 5 seconds.
    ref = next(gen)
    # return 0
    assert ray.get(ref) == 0
    # Blocks for 5 seconds.
    ref = next(gen)
    # Return 1
    assert ray.get(ref) == 1
    # Returns 2~4 every 5 seconds.
    for ref in gen:
        print(ray.get(ref))
    assert capsys.readouterr().out.split() == ["2", "3", "4"]


@seed_000
def test_error_handling(ray: Any, seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    @DECORATE[seed]
    def task() -> Iterator[int]:
        for i in range(5):
            time.sleep(SLEEP)
            if i == 1:
                raise ValueError
            yield i

    gen = task.remote()
    # it's okay.
    ray.get(next(gen))
    # Raises an exception
    try:
        ray.get(next(gen))
    except ValueError as e:
        print(f"Exception is raised when i == 1 as expected {e}")
    else:
        pytest.fail("no exception")
    assert "as expected" in capsys.readouterr().out
    with pytest.raises(StopIteration):
        next(gen)


def _actor_classes(seed: str) -> tuple[Any, Any, Any]:
    opts: dict[str, Any] = {} if seed == "000" else {"num_returns": "streaming"}

    @ray.remote
    class Actor:
        @ray.method(**opts)
        def f(self) -> Iterator[int]:
            for i in range(5):
                yield i

    @ray.remote
    class AsyncActor:
        @ray.method(**opts)
        async def f(self) -> Any:
            for i in range(5):
                yield i

    @ray.remote(max_concurrency=5)
    class ThreadedActor:
        @ray.method(**opts)
        def f(self) -> Iterator[int]:
            for i in range(5):
                yield i

    return Actor, AsyncActor, ThreadedActor


@seeds
def test_generator_from_actor_tasks(ray: Any, seed: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    Actor, AsyncActor, ThreadedActor = _actor_classes(seed)
    actor = Actor.remote()
    for ref in actor.f.remote():
        print(ray.get(ref))

    actor = AsyncActor.remote()
    for ref in actor.f.remote():
        print(ray.get(ref))

    actor = ThreadedActor.remote()
    for ref in actor.f.remote():
        print(ray.get(ref))
    assert capsys.readouterr().out.split() == ["0", "1", "2", "3", "4"] * 3


@seed_000
def test_asyncio_from_sync_script(ray: Any, seed: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    task = _task(seed)

    async def main() -> None:
        async for ref in task.remote():
            print(await ref)

    asyncio.run(main())
    assert capsys.readouterr().out.split() == ["0", "1", "2", "3", "4"]


@seed_000
async def test_asyncio_under_pytest_asyncio(aray: Any, seed: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    task = _task(seed)

    async def main() -> None:
        async for ref in task.remote():
            print(await ref)

    await main()  # asyncio.run(main()) where a loop already runs
    assert capsys.readouterr().out.split() == ["0", "1", "2", "3", "4"]


@seed_000
def test_garbage_collection(ray: Any, seed: str) -> None:
    task = _task(seed)
    gen = task.remote()
    ref1 = next(gen)
    del gen
    assert ray.get(ref1) == 0  # still a normal ref


@seed_000
def test_completed(ray: Any, seed: str) -> None:
    gen = _task(seed).remote()
    assert ray.get(gen.completed()) is None
    with pytest.raises(TypeError):
        ray.get(gen)  # "using ray.get to ObjectRefGenerator isn't allowed"


@seed_000
def test_concurrent_asyncio_tasks(ray: Any, seed: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    task = _task(seed)

    async def async_task() -> None:
        async for ref in task.remote():
            print(await ref)

    async def main() -> None:
        t1 = async_task()
        t2 = async_task()
        await asyncio.gather(t1, t2)

    asyncio.run(main())
    assert sorted(capsys.readouterr().out.split()) == sorted(["0", "1", "2", "3", "4"] * 2)


@seed_000
async def test_concurrent_asyncio_tasks_under_pytest_asyncio(aray: Any, seed: str) -> None:
    task = _task(seed)
    out: list[int] = []

    async def async_task() -> None:
        async for ref in task.remote():
            out.append(await ref)

    await asyncio.gather(async_task(), async_task())
    assert sorted(out) == sorted(list(range(5)) * 2)


@seed_000
def test_wait_simple(ray: Any, seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    # This block relies on the gap between yields being long compared with a few lines of
    # Python; 1 s stands in for the seed's 5 s.
    task = _task(seed, sleep=1.0)
    gen = task.remote()

    # Because it takes 5 seconds to make the first yield,
    # with 0 timeout, the generator is unready.
    ready, unready = ray.wait([gen], timeout=0)
    print("timeout 0, nothing is ready.")
    print(ready)
    assert len(ready) == 0
    assert len(unready) == 1

    # Without a timeout argument, ray.wait waits until the given argument
    # is ready. When a next item is ready, it returns.
    ready, unready = ray.wait([gen])
    print("Wait for 5 seconds. The next item is ready.")
    assert len(ready) == 1
    assert len(unready) == 0
    next(gen)

    # Because the second yield hasn't happened yet,
    ready, unready = ray.wait([gen], timeout=0)
    print("Wait for 0 seconds. The next item is not ready.")
    print(ready, unready)
    assert len(ready) == 0
    assert len(unready) == 1
    ray.cancel(gen)  # not in the seed: don't wait for the remaining 3 s at shutdown


@seeds
def test_wait_mixed_refs_and_generators(ray: Any, seed: str) -> None:
    @DECORATE[seed]
    def generator_task() -> Iterator[int]:
        for i in range(5):
            time.sleep(SLEEP)
            yield i

    @ray.remote
    def regular_task() -> None:
        for _i in range(5):
            time.sleep(SLEEP)
            return

    gen = [generator_task.remote()]
    ref = [regular_task.remote()]
    ready, unready = [], [*gen, *ref]
    result = []

    while unready:
        ready, unready = ray.wait(unready)
        for r in ready:
            if isinstance(r, ObjectRefGenerator):
                try:
                    ref = next(r)
                    result.append(ray.get(ref))
                except StopIteration:
                    pass
                else:
                    unready.append(r)
            else:
                result.append(ray.get(r))

    assert sorted(result, key=repr) == sorted([0, 1, 2, 3, 4, None], key=repr)


def test_whole_seed_as_a_sync_script(tmp_path: Path) -> None:
    """Seed 000's main blocks as an unguarded script (no ``__main__`` check, as in Ray docs)."""
    script = tmp_path / "seed000.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio
        import time
        import aioray as ray
        from aioray import ObjectRefGenerator

        @ray.remote
        def task():
            for i in range(5):
                time.sleep({SLEEP})
                yield i

        gen = task.remote()
        ref = next(gen)
        print("got", ray.get(ref))
        for ref in gen:
            print("got", ray.get(ref))

        @ray.remote
        class AsyncActor:
            async def f(self):
                for i in range(5):
                    yield i

        actor = AsyncActor.remote()
        for ref in actor.f.remote():
            print("actor", ray.get(ref))

        async def main():
            async for ref in task.remote():
                print("async", await ref)

        asyncio.run(main())

        @ray.remote
        def regular_task():
            time.sleep({SLEEP})
            return

        unready = [task.remote(), regular_task.remote()]
        result = []
        while unready:
            ready, unready = ray.wait(unready)
            for r in ready:
                if isinstance(r, ObjectRefGenerator):
                    try:
                        result.append(ray.get(next(r)))
                    except StopIteration:
                        pass
                    else:
                        unready.append(r)
                else:
                    result.append(ray.get(r))
        print("mixed", len(result))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert [ln for ln in lines if ln.startswith("got")] == [f"got {i}" for i in range(5)]
    assert [ln for ln in lines if ln.startswith("actor")] == [f"actor {i}" for i in range(5)]
    assert [ln for ln in lines if ln.startswith("async")] == [f"async {i}" for i in range(5)]
    assert "mixed 6" in lines


# == 002: dynamic generators ==================================================================
SIZE = 1_000  # the seed's 100_000_000-element arrays, made small


def test_static_num_returns_list_and_generator(ray: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    @ray.remote
    def large_values(num_returns: int) -> list[Any]:
        return [
            np.random.randint(np.iinfo(np.int8).max, size=(SIZE, 1), dtype=np.int8)
            for _ in range(num_returns)
        ]

    @ray.remote
    def large_values_generator(num_returns: int) -> Iterator[Any]:
        for i in range(num_returns):
            yield np.random.randint(
                np.iinfo(np.int8).max, size=(SIZE, 1), dtype=np.int8
            )
            print(f"yielded return value {i}")

    for fn in (large_values, large_values_generator):
        refs = fn.options(num_returns=3).remote(3)
        assert len(refs) == 3
        for arr in ray.get(refs):
            assert arr.shape == (SIZE, 1) and arr.dtype == np.int8


@ray.remote(num_returns="dynamic")
def split(array: Any, chunk_size: int) -> Iterator[Any]:
    while len(array) > 0:
        yield array[:chunk_size]
        array = array[chunk_size:]


@ray.remote
def get_size(ref_generator: DynamicObjectRefGenerator[Any]) -> int:
    print(ref_generator)
    num_elements = 0
    for ref in ref_generator:
        array = ray.get(ref)
        assert len(array) <= block_size
        num_elements += len(array)
    return num_elements


block_size = 1000


def test_dynamic_num_returns(ray: Any, capsys: pytest.CaptureFixture[str]) -> None:
    array_ref = ray.put(np.zeros(np.random.randint(100_000)))

    # Returns an ObjectRef[DynamicObjectRefGenerator].
    dynamic_ref = split.remote(array_ref, block_size)
    print(dynamic_ref)
    # ObjectRef(c8ef45ccd0112571ffffffffffffffffffffffff0100000001000000)

    i = -1
    ref_generator = ray.get(dynamic_ref)
    print(ref_generator)
    # <ray._raylet.DynamicObjectRefGenerator object at 0x7f7e2116b290>
    for i, ref in enumerate(ref_generator):
        # Each DynamicObjectRefGenerator iteration returns an ObjectRef.
        assert len(ray.get(ref)) <= block_size
    num_blocks_generated = i + 1
    array_size = len(ray.get(array_ref))
    assert array_size <= num_blocks_generated * block_size
    print(f"Split array of size {array_size} into {num_blocks_generated} blocks of "
          f"size {block_size} each.")
    # Split array of size 63153 into 64 blocks of size 1000 each.

    # NOTE: The dynamic_ref points to the generated ObjectRefs. Make sure that this
    # ObjectRef goes out of scope so that Ray can garbage-collect the internal
    # ObjectRefs.
    del dynamic_ref

    # Returns an ObjectRef[DynamicObjectRefGenerator].
    dynamic_ref = split.remote(array_ref, block_size)
    assert array_size == ray.get(get_size.remote(dynamic_ref))
    # (get_size pid=1504184)
    # <ray._raylet.DynamicObjectRefGenerator object at 0x7f81c4250ad0>

    # This also works, but should be avoided because you have to call an additional
    # `ray.get`, which blocks the driver.
    ref_generator = ray.get(dynamic_ref)
    assert array_size == ray.get(get_size.remote(ref_generator))
    assert "Split array of size" in capsys.readouterr().out


@ray.remote
def generator() -> Iterator[int]:
    for i in range(2):
        yield i
    raise Exception("error")


def test_exception_handling_static_and_dynamic(ray: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ref1, ref2, ref3, ref4 = generator.options(num_returns=4).remote()
    assert ray.get([ref1, ref2]) == [0, 1]
    # All remaining ObjectRefs will contain the error.
    try:
        ray.get([ref3, ref4])
    except Exception as error:
        print(error)
    else:
        pytest.fail("no error")

    dynamic_ref = generator.options(num_returns="dynamic").remote()
    ref_generator = ray.get(dynamic_ref)
    ref1, ref2, ref3 = ref_generator
    assert ray.get([ref1, ref2]) == [0, 1]
    # Generators with num_returns="dynamic" will store the exception in the final
    # ObjectRef.
    try:
        ray.get(ref3)
    except Exception as error:
        print(error)
    else:
        pytest.fail("no error")
    assert capsys.readouterr().out.count("error") >= 2


def test_exception_after_all_static_values(ray: Any) -> None:
    # Generators that yield more values than expected currently do not throw an
    # exception (the error is only logged).
    # See https://github.com/ray-project/ray/issues/28689.
    ref1, ref2 = generator.options(num_returns=2).remote()
    assert ray.get([ref1, ref2]) == [0, 1]
