"""anyio: refs and generators are awaitable under anyio's asyncio backend (aioray on its own
loop thread, or adopting anyio's loop); under trio awaiting fails with an error that says so."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioray
from aioray._engine.runtime import NOT_ASYNCIO

anyio = pytest.importorskip("anyio")


@aioray.remote
async def plus_one(x: int) -> int:
    return x + 1


@aioray.remote
async def gate_then(x: int, gate: Any) -> int:
    await gate.wait.remote()
    return x


@aioray.remote
def count(n: int) -> Any:
    yield from range(n)


@aioray.remote
async def gated_count(n: int, gate: Any) -> Any:
    await gate.wait.remote()
    for i in range(n):
        yield i


@aioray.remote
class Gate:
    """An async actor: wait() returns once open() was called."""

    def __init__(self) -> None:
        import asyncio
        self.event = asyncio.Event()

    async def open(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


async def _exercise() -> dict[str, Any]:
    gate = Gate.remote()
    pending = gate_then.remote(7, gate)
    gate.open.remote()
    out: dict[str, Any] = {"pending": await pending}
    out["await"] = await plus_one.remote(1)
    out["gen"] = [await ref async for ref in count.remote(3)]
    out["get_async"] = await aioray.get_async([plus_one.remote(i) for i in range(3)])
    ready, rest = await aioray.wait_async([plus_one.remote(5)], timeout=30)
    out["wait"] = (len(ready), len(rest))
    out["as_completed"] = sorted([await r async for r in aioray.as_completed(
        [plus_one.remote(10), plus_one.remote(20)], timeout=30)])
    return out


EXPECTED = {"pending": 7, "await": 2, "gen": [0, 1, 2], "get_async": [1, 2, 3],
            "wait": (1, 0), "as_completed": [11, 21]}


def test_anyio_asyncio_backend_with_runtime_on_its_own_thread(ray: Any) -> None:
    assert anyio.run(_exercise, backend="asyncio") == EXPECTED


def test_anyio_asyncio_backend_adopting_anyios_loop() -> None:
    async def main() -> dict[str, Any]:
        aioray.shutdown()
        info = aioray.init(num_cpus=2)
        try:
            # adopted: the runtime runs on anyio's loop, so awaits never cross a thread
            rt = aioray._engine.runtime.current_runtime()
            assert rt is not None and rt.loop is asyncio.get_running_loop()
            assert info["loop"]
            return await _exercise()
        finally:
            aioray.shutdown()
    assert anyio.run(main, backend="asyncio") == EXPECTED


def test_awaiting_outside_asyncio_says_trio_is_not_supported(ray: Any) -> None:
    """Without trio installed this still proves the error path: step the awaits by hand with no
    asyncio loop running, as they would be stepped under trio."""
    gate = Gate.remote()
    ref = gate_then.remote(1, gate)
    with pytest.raises(RuntimeError) as info:
        ref.__await__().send(None)
    assert str(info.value) == NOT_ASYNCIO
    with pytest.raises(RuntimeError) as info:
        gated_count.remote(2, gate).__anext__().send(None)
    assert str(info.value) == NOT_ASYNCIO
    gate.open.remote()
    assert ray.get(ref) == 1
    # A ref that is already resolved needs no loop at all (no await happens).
    with pytest.raises(StopIteration) as done:
        ref.__await__().send(None)
    assert done.value.value == 1


class TestTrio:
    trio = pytest.importorskip("trio")

    def test_awaiting_a_pending_ref_under_trio_raises_clearly(self, ray: Any) -> None:
        gate = Gate.remote()
        ref = gate_then.remote(3, gate)

        async def main() -> None:
            await ref

        with pytest.raises(RuntimeError) as info:
            self.trio.run(main)
        assert "trio is not supported" in str(info.value)
        assert "backend='asyncio'" in str(info.value)
        gate.open.remote()
        assert ray.get(ref) == 3

    def test_anyio_trio_backend_generator_and_as_completed_raise_clearly(self, ray: Any) -> None:
        gate = Gate.remote()
        ref = gate_then.remote(4, gate)

        async def gen_main() -> None:
            async for _ in gated_count.remote(2, gate):
                pass

        async def as_completed_main() -> None:
            async for _ in aioray.as_completed([ref]):
                pass

        for main in (gen_main, as_completed_main):
            with pytest.raises(RuntimeError, match="trio is not supported"):
                anyio.run(main, backend="trio")
        gate.open.remote()
        assert ray.get(ref) == 4

    def test_the_documented_workaround_works_under_trio(self, ray: Any) -> None:
        async def main() -> int:
            ref = plus_one.remote(41)
            value: int = await self.trio.to_thread.run_sync(aioray.get, ref)
            return value

        assert self.trio.run(main) == 42
