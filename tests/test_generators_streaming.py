"""Streaming generators: every executor, every way to iterate, eager and truly live execution."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray import ObjectRefGenerator


def _wait_for_file(path: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(path)
        time.sleep(0.005)


def _poll(cond: Any, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


@aioray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@aioray.remote
async def acount(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


EXECUTORS = {
    "process": count,
    "thread": count.options(executor="thread"),
    "loop": acount,
}


# -- every executor, every iteration protocol ------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_for_loop_each_executor(ray: Any, kind: str) -> None:
    gen = EXECUTORS[kind].remote(5)
    assert isinstance(gen, ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, aioray.ObjectRef) for r in refs)
    assert aioray.get(refs) == [0, 1, 2, 3, 4]


@pytest.mark.all_backends
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_next_then_stop_iteration(ray: Any, kind: str) -> None:
    gen = EXECUTORS[kind].remote(2)
    assert aioray.get(next(gen)) == 0
    assert aioray.get(next(gen)) == 1
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(StopIteration):  # stays exhausted
        next(gen)
    assert gen.is_finished()


@pytest.mark.all_backends
@pytest.mark.parametrize("kind", list(EXECUTORS))
async def test_async_for_under_pytest_asyncio(aray: Any, kind: str) -> None:
    out = [await ref async for ref in EXECUTORS[kind].remote(4)]
    assert out == [0, 1, 2, 3]


@pytest.mark.all_backends
@pytest.mark.parametrize("kind", list(EXECUTORS))
async def test_anext_then_stop_async_iteration(aray: Any, kind: str) -> None:
    gen = EXECUTORS[kind].remote(1)
    assert await (await gen.__anext__()) == 0
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()


@pytest.mark.all_backends
def test_async_for_from_sync_script(ray: Any) -> None:
    """asyncio.run() on the main thread while the runtime runs on its own loop thread."""

    async def main() -> list[int]:
        return [await ref async for ref in count.remote(3)]

    assert asyncio.run(main()) == [0, 1, 2]


@pytest.mark.all_backends
def test_num_returns_streaming_alias(ray: Any) -> None:
    @aioray.remote(num_returns="streaming")
    def f() -> Iterator[str]:
        yield "a"
        yield "b"

    gen = f.remote()
    assert isinstance(gen, ObjectRefGenerator)
    assert [aioray.get(r) for r in gen] == ["a", "b"]
    gen2 = count.options(num_returns="streaming").remote(2)
    assert isinstance(gen2, ObjectRefGenerator)
    assert aioray.get(list(gen2)) == [0, 1]


def test_large_items_stream_through_shared_memory(ray: Any) -> None:
    @aioray.remote
    def big() -> Iterator[bytes]:
        for i in range(3):
            yield bytes([i]) * (2 << 20)

    for i, ref in enumerate(big.remote()):
        v = aioray.get(ref)
        assert len(v) == 2 << 20 and v[:1] == bytes([i])


# -- eager execution: nobody polls, the task still runs to the end ---------------------------
def test_eager_process_generator_runs_without_polling(ray: Any, tmp_path: Path) -> None:
    @aioray.remote
    def producer(path: str, n: int) -> Iterator[int]:
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i

    log = tmp_path / "log"
    gen = producer.remote(str(log), 20)
    aioray.get(gen.completed(), timeout=60)  # never called next()
    assert log.read_text().split() == [str(i) for i in range(20)]
    assert aioray.get(list(gen)) == list(range(20))  # the refs were all kept


@aioray.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def value(self) -> int:
        return self.n


def test_eager_loop_and_thread_generators_run_without_polling(ray: Any) -> None:
    @aioray.remote
    async def aproducer(c: Any, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await c.incr.remote()
            yield i

    @aioray.remote
    def tproducer(c: Any, n: int) -> Iterator[int]:
        for i in range(n):
            aioray.get(c.incr.remote())
            yield i

    c = Counter.remote()
    g1 = aproducer.remote(c, 10)
    g2 = tproducer.options(executor="thread").remote(c, 10)
    aioray.get([g1.completed(), g2.completed()], timeout=60)
    assert aioray.get(c.value.remote()) == 20


# -- truly live: the first ref is there while the task is still running ----------------------
@aioray.remote
def gated(gate: str) -> Iterator[str]:
    yield "first"
    _wait_for_file(gate)
    yield "second"


@pytest.mark.all_backends
def test_live_streaming_from_worker_process(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote(str(gate))
    first = next(gen)  # would block forever if items only arrived at task end
    assert aioray.get(first, timeout=60) == "first"
    ready, _ = aioray.wait([gen.completed()], timeout=0)
    assert ready == []  # still running: blocked on the gate the test controls
    gate.touch()
    assert aioray.get(next(gen), timeout=60) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_live_streaming_from_thread_executor(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.options(executor="thread").remote(str(gate))
    assert aioray.get(next(gen), timeout=60) == "first"
    assert aioray.wait([gen.completed()], timeout=0)[0] == []
    gate.touch()
    assert aioray.get(list(gen)) == ["second"]


async def test_live_streaming_from_loop(aray: Any) -> None:
    gate = asyncio.Event()

    @aioray.remote
    async def agated() -> AsyncIterator[str]:
        yield "first"
        await gate.wait()
        yield "second"

    gen = agated.remote()
    assert await (await gen.__anext__()) == "first"
    assert (await aioray.wait_async([gen.completed()], timeout=0))[0] == []
    gate.set()
    assert [await r async for r in gen] == ["second"]


@pytest.mark.all_backends
async def test_live_streaming_async_from_worker_process(aray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote(str(gate))
    assert await asyncio.wait_for(await gen.__anext__(), 60) == "first"
    gate.touch()
    assert [await r async for r in gen] == ["second"]


# -- completed(), get(gen), passing generators around, return values --------------------------
@pytest.mark.all_backends
def test_completed_resolves_when_task_ends(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gen = gated.remote(str(gate))
    done = gen.completed()
    assert isinstance(done, aioray.ObjectRef)
    assert aioray.get(next(gen)) == "first"
    assert aioray.wait([done], timeout=0)[0] == []
    gate.touch()
    assert aioray.get(done, timeout=60) is None


@pytest.mark.all_backends
def test_get_of_generator_is_a_clear_type_error(ray: Any) -> None:
    gen = count.remote(1)
    with pytest.raises(TypeError, match=r"next\(gen\).*completed\(\)"):
        aioray.get(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        aioray.get([gen])


@pytest.mark.all_backends
async def test_get_async_of_generator_is_a_type_error(aray: Any) -> None:
    gen = acount.remote(1)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        await aioray.get_async(gen)


def test_passing_generator_to_task_or_actor_is_a_type_error(ray: Any) -> None:
    @aioray.remote
    def takes(x: Any) -> int:
        return 1

    gen = count.remote(1)
    with pytest.raises(TypeError, match="cannot be passed"):
        takes.remote(gen)
    with pytest.raises(TypeError, match="cannot be passed"):
        takes.remote(x=gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        takes.remote([gen])  # nested: refused when pickled
    @aioray.remote
    class Taker:
        def take(self, x: Any) -> int:
            return 1

    c = Taker.remote()
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        c.take.remote(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        aioray.put(gen)
    assert aioray.get(list(gen)) == [0]  # the generator itself is unharmed


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_return_value_is_ignored_with_a_warning(ray: Any, executor: str,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    @aioray.remote
    def returns() -> Iterator[int]:
        yield 1
        return 42

    if executor == "thread":
        with pytest.warns(RuntimeWarning, match="return value of a generator task is ignored"):
            refs = list(returns.options(executor="thread").remote())
            aioray.get(refs[-1])
    else:
        refs = list(returns.remote())
        # The warning is printed by the worker process, on the shared stderr.
        seen: list[str] = []
        _poll(lambda: seen.append(capfd.readouterr().err) or "is ignored" in "".join(seen))
    assert aioray.get(refs) == [1]


# -- generators consumed from inside a worker process ---------------------------------------
@pytest.mark.all_backends
def test_generator_consumed_inside_worker_process(ray: Any) -> None:
    @aioray.remote
    def consumer(n: int) -> list[int]:
        gen = count.remote(n)
        first = aioray.get(next(gen))
        rest = [aioray.get(r) for r in gen]
        assert aioray.get(gen.completed()) is None
        return [first, *rest]

    assert aioray.get(consumer.remote(4), timeout=60) == [0, 1, 2, 3]


def test_async_generator_consumed_inside_worker_process(ray: Any) -> None:
    @aioray.remote
    def consumer(n: int) -> list[int]:
        async def main() -> list[int]:
            return [aioray.get(r) async for r in acount.remote(n)]
        return asyncio.run(main())

    assert aioray.get(consumer.remote(3), timeout=60) == [0, 1, 2]


def test_generator_error_consumed_inside_worker_process(ray: Any) -> None:
    @aioray.remote
    def bad() -> Iterator[int]:
        yield 1
        raise KeyError("boom")

    @aioray.remote
    def consumer() -> list[str]:
        out = []
        for r in bad.remote():
            try:
                out.append(str(aioray.get(r)))
            except KeyError:
                out.append("KeyError")
        return out

    assert aioray.get(consumer.remote(), timeout=60) == ["1", "KeyError"]


@aioray.remote
def forever() -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.01)


def test_worker_side_get_wait_cancel_of_generator(ray: Any, tmp_path: Path) -> None:
    @aioray.remote
    def inside(gate: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        gen = gated.remote(gate)
        assert isinstance(gen, ObjectRefGenerator)  # the seed's isinstance check works here
        try:
            aioray.get(gen)  # would otherwise iterate the generator to its end
        except TypeError as e:
            out["get"] = str(e)
        out["first"] = aioray.get(next(gen))
        ref = aioray.put(1)
        out["wait0"] = aioray.wait([gen, ref], num_returns=2, timeout=0)[0] == [ref]
        open(gate, "w").close()
        ready, unready = aioray.wait([gen, ref], num_returns=2, timeout=60)
        out["wait"] = ready == [gen, ref] and unready == []
        out["rest"] = [aioray.get(r) for r in gen]
        inf = forever.options(num_cpus=0).remote()
        next(inf)
        aioray.cancel(inf)
        out["cancelled_ends"] = len(list(inf)) < 1000
        try:
            aioray.get(inf.completed(), timeout=60)
        except aioray.exceptions.TaskCancelledError:
            out["cancelled"] = True
        try:
            count.remote(inf)
        except TypeError:
            out["pass_refused"] = True
        return out

    out = aioray.get(inside.remote(str(tmp_path / "gate")), timeout=90)
    assert "does not accept an ObjectRefGenerator" in out["get"]
    assert out["first"] == "first"
    assert out["wait0"] and out["wait"]
    assert out["rest"] == ["second"]
    assert out["cancelled_ends"] and out["cancelled"] and out["pass_refused"]


def test_worker_side_anext(ray: Any) -> None:
    @aioray.remote
    def inside() -> list[Any]:
        async def main() -> list[Any]:
            gen = count.remote(1)
            first = aioray.get(await gen.__anext__())
            try:
                await gen.__anext__()
            except StopAsyncIteration:
                return [first, "stop"]
            return [first]
        return asyncio.run(main())

    assert aioray.get(inside.remote(), timeout=60) == [0, "stop"]


def test_shutdown_wakes_a_blocked_consumer(ray: Any) -> None:
    import threading
    gen = forever.options(_generator_backpressure_num_objects=1).remote()
    out: list[str] = []

    def consume() -> None:
        for ref in gen:
            try:
                aioray.get(ref)
            except aioray.exceptions.RuntimeShutdownError:
                out.append("shutdown")
        out.append("stop")

    t = threading.Thread(target=consume)
    t.start()
    _poll(lambda: gen._stream.consumed >= 2)
    aioray.shutdown()
    t.join(60)
    assert not t.is_alive()
    assert out[-2:] == ["shutdown", "stop"]


async def test_sync_next_on_the_loop_thread_is_refused(aray: Any, tmp_path: Path) -> None:
    gen = gated.remote(str(tmp_path / "gate"))
    with pytest.raises(RuntimeError, match=r"await gen.__anext__\(\)"):
        next(gen)  # would block the loop that feeds it
    assert await (await gen.__anext__()) == "first"
    aioray.cancel(gen)


def test_is_finished_inside_a_worker_process(ray: object) -> None:
    @aioray.remote
    def produce(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    @aioray.remote
    def consume() -> tuple[bool, list[int], bool]:
        gen = produce.remote(3)
        aioray.get(gen.completed())  # the task has ended, but its refs are not taken yet
        before = gen.is_finished()
        values = [aioray.get(r) for r in gen]
        return before, values, gen.is_finished()

    before, values, after = aioray.get(consume.remote())
    assert values == [0, 1, 2]
    assert before is False
    assert after is True
