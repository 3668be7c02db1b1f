"""Wrong actor code mypy must reject with aioray.mypy_plugin (see tests/test_typing.py)."""

from __future__ import annotations

import aioray as ray


@ray.remote
class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def incr(self, times: int = 1) -> int:
        self.value += times
        return self.value

    @ray.method(concurrency_group="io")
    def read(self, path: str) -> bytes:
        return path.encode()


def wrong() -> None:
    Counter.remote("0")  # E: Argument 1 to "remote" of "Counter" has incompatible type "str"; expected "int"
    Counter.remote()  # E: Missing positional argument "start" in call to "remote" of "Counter"
    c = Counter.remote(0)
    c.incr.remote("2")  # E: Argument 1 to "remote" of "ActorMethod" has incompatible type "str"; expected "int"
    c.incr.remote(1, 2)  # E: Too many arguments for "remote" of "ActorMethod"
    c.inrc.remote()  # E: Actor "Counter" has no method "inrc"
    s: str = ray.get(c.incr.remote())  # E: Incompatible types in assignment (expression has type "int", variable has type "str")
    c.incr.options(name="x").remote(b"")  # E: incompatible type "bytes"; expected "int"
    c.read.remote(1)  # E: Argument 1 to "remote" of "ActorMethod" has incompatible type "int"; expected "str"
    print(s)
