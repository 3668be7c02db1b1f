"""User-facing types, checked by mypy --strict (tests/test_typing.py runs it; never executed).

Every ``assert_type`` here must hold and the file must have no mypy error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from typing_extensions import assert_type

import aioray as ray
from aioray import (
    ActorClass,
    ActorHandle,
    DynamicObjectRefGenerator,
    ObjectRef,
    ObjectRefGenerator,
)
from aioray.actor import ActorMethod


@ray.remote
def to_str(x: int, *, prefix: str = "") -> str:
    return prefix + str(x)


@ray.remote
async def double(x: int) -> int:
    return 2 * x


@ray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@ray.remote
async def acount(n: int) -> AsyncIterator[float]:
    for i in range(n):
        yield float(i)


@ray.remote(num_cpus=1, max_retries=0)
def with_options(x: bytes) -> list[bytes]:
    return [x]


@ray.remote(num_returns=2)
def two(x: int) -> tuple[int, int]:
    return x, x


# mypy ignores what a class decorator returns (python/mypy#3135), so typed actor code uses the
# call form; ``@ray.remote class C`` keeps type[C] under mypy (pyright follows the decorator).
class _Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def incr(self, by: int) -> int:
        self.value += by
        return self.value


Counter = ray.remote(_Counter)


class _Threaded:
    def ping(self) -> str:
        return "pong"


Threaded = ray.remote(max_concurrency=4)(_Threaded)


def check_tasks() -> None:
    ref = to_str.remote(1, prefix="n=")
    assert_type(ref, ObjectRef[str])
    assert_type(ray.get(ref), str)
    assert_type(ray.get([ref, to_str.remote(2)]), list[str])
    assert_type(ray.get(ref, timeout=1.5), str)
    assert_type(double.remote(3), ObjectRef[int])
    assert_type(with_options.remote(b"x"), ObjectRef[list[bytes]])
    # .options() keeps the types, unless num_returns changes what .remote() returns.
    assert_type(to_str.options(num_cpus=2).remote(1), ObjectRef[str])
    assert_type(to_str.options(name="t").options(max_retries=1).remote(1), ObjectRef[str])
    assert_type(to_str.options(num_returns=2).remote(1), Any)
    assert_type(two.remote(1), Any)
    r1, r2 = two.remote(1)
    print(ray.get([r1, r2]))
    put_ref = ray.put({"a": 1})
    assert_type(put_ref, ObjectRef[dict[str, int]])
    assert_type(ray.get(put_ref), dict[str, int])
    ready, not_ready = ray.wait([ref, to_str.remote(2)], num_returns=1, timeout=None)
    assert_type(ready, list[ObjectRef[str]])
    assert_type(not_ready, list[ObjectRef[str]])
    for done in ray.as_completed([double.remote(1)]):
        assert_type(done, ObjectRef[int])
    ray.cancel(ref, force=True)
    assert_type(ref.future().result(), str)


def check_generators() -> None:
    gen = count.remote(3)
    assert_type(gen, ObjectRefGenerator[int])
    assert_type(next(gen), ObjectRef[int])
    for item in gen:
        assert_type(ray.get(item), int)
    assert_type(gen.completed(), ObjectRef[None])
    assert_type(acount.remote(2), ObjectRefGenerator[float])
    assert_type(count.options(num_cpus=0).remote(1), ObjectRefGenerator[int])
    ready, _ = ray.wait([gen], timeout=0)
    assert_type(ready, list[ObjectRefGenerator[int]])
    # A mixed list (the guide's ray.wait loop) comes back as the union:
    mixed_ready, _ = ray.wait([*[count.remote(2)], *[to_str.remote(1)]])
    for r in mixed_ready:
        if isinstance(r, ObjectRefGenerator):
            assert_type(next(r), ObjectRef[Any])
        else:
            assert_type(ray.get(r), Any)
    dyn: ObjectRef[DynamicObjectRefGenerator[int]] = count.options(
        num_returns="dynamic").remote(3)
    for r in ray.get(dyn):
        assert_type(r, ObjectRef[int])


async def check_async() -> None:
    assert_type(await to_str.remote(1), str)
    assert_type(await double.remote(2), int)
    assert_type(await ray.get_async(double.remote(2)), int)
    assert_type(await ray.get_async([double.remote(2)]), list[int])
    async for item in acount.remote(2):
        assert_type(item, ObjectRef[float])
        assert_type(await item, float)
    async for r in count.remote(2):
        assert_type(await r, int)
    ready, _ = await ray.wait_async([double.remote(1)])
    assert_type(ready, list[ObjectRef[int]])
    async for done in ray.as_completed([to_str.remote(1)], timeout=5):
        assert_type(done, ObjectRef[str])


def check_actors() -> None:
    assert_type(Counter, ActorClass[_Counter])
    assert_type(Threaded, ActorClass[_Threaded])
    counter = Counter.remote(5)
    assert_type(counter, ActorHandle[_Counter])
    assert_type(Counter.options(name="c", lifetime="detached").remote(), ActorHandle[_Counter])
    # Without aioray.mypy_plugin, method calls go through __getattr__, where mypy cannot see
    # the class's methods: .remote() is Any (tests/typing/plugin/ has the typed version).
    # Annotate the ref to get types back:
    assert_type(counter.incr, ActorMethod[..., Any])
    value: ObjectRef[int] = counter.incr.remote(1)
    assert_type(ray.get(value), int)
    named = ray.get_actor("c")
    assert_type(named, ActorHandle[Any])
    ray.kill(counter)


def check_runtime() -> None:
    info = ray.init(num_cpus=2, ignore_reinit_error=True)
    assert_type(info, ray.RuntimeInfo)
    assert_type(ray.is_initialized(), bool)
    assert_type(ray.cluster_resources(), dict[str, float])
    ray.shutdown()
