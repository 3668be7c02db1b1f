"""Wrong code that mypy must reject: each line marked with an expected-error comment must get an
error containing its text, and no other line may get one (tests/test_typing.py checks both;
never executed)."""

from __future__ import annotations

from collections.abc import Iterator

import aioray as ray
from aioray import ObjectRef


@ray.remote
def to_str(x: int, *, prefix: str = "") -> str:
    return prefix + str(x)


@ray.remote
async def double(x: int) -> int:
    return 2 * x


@ray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


class _Counter:
    def incr(self, by: int) -> int:
        return by


Counter = ray.remote(_Counter)


def wrong() -> None:
    to_str.remote("1")  # E: Argument 1 to "remote" of "RemoteFunction" has incompatible type "str"; expected "int"
    to_str.remote()  # E: Missing positional argument "x" in call to "remote" of "RemoteFunction"
    to_str.remote(1, 2)  # E: Too many positional arguments for "remote" of "RemoteFunction"
    to_str.remote(1, prefx="a")  # E: Unexpected keyword argument "prefx" for "remote" of "RemoteFunction"
    to_str.options(num_cpus=1).remote(b"1")  # E: Argument 1 to "remote" of "_BoundRemoteFunction" has incompatible type "bytes"; expected "int"
    to_str.options(num_returns=2).remote("1")  # E: incompatible type "str"; expected "int"
    double.remote(1.5)  # E: incompatible type "float"; expected "int"
    n: int = ray.get(to_str.remote(1))  # E: Incompatible types in assignment (expression has type "str", variable has type "int")
    m: list[int] = ray.get([to_str.remote(1)])  # E: List item 0 has incompatible type "ObjectRef[str]"; expected "ObjectRef[int]"
    r: ObjectRef[str] = double.remote(1)  # E: Incompatible types in assignment (expression has type "ObjectRef[int]", variable has type "ObjectRef[str]")
    ray.get(count.remote(3))  # E: No overload variant of "get" matches argument type "ObjectRefGenerator[int]"
    ray.get(1)  # E: No overload variant of "get" matches argument type "int"
    ray.wait([1, 2])  # E: Value of type variable "W" of "wait" cannot be "int"
    for ref in count.remote(3):
        s: str = ray.get(ref)  # E: Incompatible types in assignment (expression has type "int", variable has type "str")
    h: ray.ActorHandle[int] = Counter.remote()  # E: Incompatible types in assignment (expression has type "ActorHandle[_Counter]", variable has type "ActorHandle[int]")
    print(n, m, r, s, h)


async def wrong_async() -> None:
    x: str = await double.remote(1)  # E: Incompatible types in assignment (expression has type "int", variable has type "str")
    async for ref in count.remote(2):
        y: bytes = await ref  # E: Incompatible types in assignment (expression has type "int", variable has type "bytes")
        print(x, y)
