"""Typed actors with aioray.mypy_plugin (checked by tests/test_typing.py; never executed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from typing_extensions import assert_type

import aioray as ray
from aioray import ActorHandle, ObjectRef, ObjectRefGenerator
from aioray.actor import ActorMethod


@ray.remote
class Counter:
    def __init__(self, start: int, *, step: int = 1) -> None:
        self.value = start
        self.step = step

    def incr(self, times: int = 1) -> int:
        self.value += self.step * times
        return self.value

    async def aget(self) -> str:
        return str(self.value)

    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    async def acount(self, n: int) -> AsyncIterator[bytes]:
        for i in range(n):
            yield bytes(i)


@ray.remote(max_concurrency=4, num_cpus=0, concurrency_groups={"io": 2})
class NoInit:
    def ping(self) -> None:
        pass

    @ray.method(concurrency_group="io")
    async def io(self, path: str) -> bytes:
        return path.encode()

    @ray.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return 1, 2


def check() -> None:
    c = Counter.remote(1, step=2)
    assert_type(c, ActorHandle[Counter])
    assert_type(Counter.options(name="c").remote(0), ActorHandle[Counter])
    assert_type(c.incr.remote(), ObjectRef[int])
    assert_type(c.incr.remote(3), ObjectRef[int])
    assert_type(ray.get(c.incr.remote(times=3)), int)
    assert_type(c.aget.remote(), ObjectRef[str])
    assert_type(c.count.remote(3), ObjectRefGenerator[int])
    assert_type(c.acount.remote(3), ObjectRefGenerator[bytes])
    assert_type(c.incr.options(name="x").remote(1), ObjectRef[int])
    assert_type(c.incr.options(num_returns=1).remote(1), Any)
    n = NoInit.remote()
    assert_type(n, ActorHandle[NoInit])
    assert_type(n.ping.remote(), ObjectRef[None])
    assert_type(n.io.remote("p"), ObjectRef[bytes])  # @ray.method(...) keeps the types
    assert_type(n.pair.remote(), Any)  # ... unless num_returns changes what .remote() gives
    assert_type(ray.get_actor("c").anything.remote(1, 2), Any)  # ActorHandle[Any]: unchecked
    h: ActorHandle[Counter] = ray.get_actor("c")
    assert_type(h.incr.remote(2), ObjectRef[int])
    m = c.incr
    assert isinstance(m, ActorMethod)
    print(c.binary(), c.hex())


async def check_async() -> None:
    c = Counter.remote(0)
    assert_type(await c.incr.remote(), int)
    assert_type(await c.aget.remote(), str)
    async for ref in c.acount.remote(2):
        assert_type(await ref, bytes)
