"""Actors, the basics: creation, method calls, results as refs, errors, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import aioray
from aioray.exceptions import ActorDiedError, RayActorError, RayTaskError


@aioray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def increment(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value


@aioray.remote
class AsyncCounter:
    def __init__(self) -> None:
        self.value = 0

    async def increment(self) -> int:
        await asyncio.sleep(0)
        self.value += 1
        return self.value

    def get(self) -> int:  # a sync method of an async actor runs on the loop too
        return self.value


@aioray.remote
def plus_one(x: int) -> int:
    return x + 1


@aioray.remote
async def async_double(x: int) -> int:
    return 2 * x


def wait_until(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


# -- calls and state ---------------------------------------------------------------------
@pytest.mark.all_backends
def test_sync_actor_keeps_state(ray: Any) -> None:
    c = Counter.remote()
    refs = [c.increment.remote() for _ in range(5)]
    assert aioray.get(refs) == [1, 2, 3, 4, 5]
    assert aioray.get(c.get.remote()) == 5


@pytest.mark.all_backends
def test_constructor_arguments_and_kwargs(ray: Any) -> None:
    c = Counter.remote(10)
    assert aioray.get(c.increment.remote(by=5)) == 15
    c2 = Counter.remote(start=aioray.put(100))  # a ref argument is resolved first
    assert aioray.get(c2.get.remote()) == 100


@pytest.mark.all_backends
def test_async_actor_state(ray: Any) -> None:
    a = AsyncCounter.remote()
    assert sorted(aioray.get([a.increment.remote() for _ in range(20)])) == list(range(1, 21))
    assert aioray.get(a.get.remote()) == 20


@pytest.mark.all_backends
async def test_await_method_results(aray: Any) -> None:
    c = Counter.remote()
    assert await c.increment.remote() == 1
    a = AsyncCounter.remote()
    # Ray starts an async actor's calls in order but does not keep them in order across an await.
    assert sorted(await asyncio.gather(*[a.increment.remote() for _ in range(3)])) == [1, 2, 3]
    assert await aioray.get_async(c.get.remote()) == 1


@pytest.mark.all_backends
def test_method_results_are_ordinary_refs(ray: Any) -> None:
    c = Counter.remote()
    ref = c.increment.remote(2)
    assert isinstance(ref, aioray.ObjectRef)
    # passed to a process task, an async task and another actor's method
    assert aioray.get(plus_one.remote(ref)) == 3
    assert aioray.get(async_double.remote(ref)) == 4
    c2 = Counter.remote()
    assert aioray.get(c2.increment.remote(ref)) == 2
    ready, not_ready = aioray.wait([ref], timeout=30)
    assert ready == [ref] and not_ready == []


@pytest.mark.all_backends
def test_ref_arguments_to_methods_are_resolved(ray: Any) -> None:
    c = Counter.remote()
    assert aioray.get(c.increment.remote(plus_one.remote(1))) == 2
    assert aioray.get(c.increment.remote(by=aioray.put(3))) == 5


@pytest.mark.all_backends
def test_nested_refs_are_passed_as_refs(ray: Any) -> None:
    @aioray.remote
    class Holder:
        def take(self, box: list[Any]) -> int:
            assert isinstance(box[0], aioray.ObjectRef)
            return int(aioray.get(box[0]))

    h = Holder.remote()
    assert aioray.get(h.take.remote([aioray.put(7)])) == 7


# -- num_returns ---------------------------------------------------------------------------
@pytest.mark.all_backends
def test_num_returns_with_method_decorator(ray: Any) -> None:
    @aioray.remote
    class Splitter:
        @aioray.method(num_returns=2)
        def pair(self, x: int) -> tuple[int, int]:
            return x, x + 1

        @aioray.method(num_returns=3)
        async def triple(self) -> list[int]:
            return [1, 2, 3]

    s = Splitter.remote()
    a, b = s.pair.remote(1)
    assert aioray.get([a, b]) == [1, 2]
    assert aioray.get(s.triple.remote()) == [1, 2, 3]


@pytest.mark.all_backends
def test_num_returns_with_options(ray: Any) -> None:
    @aioray.remote
    class Splitter:
        def pair(self) -> tuple[str, str]:
            return "x", "y"

        def nothing(self) -> None:
            return None

    s = Splitter.remote()
    refs = s.pair.options(num_returns=2).remote()
    assert len(refs) == 2 and aioray.get(refs) == ["x", "y"]
    assert aioray.get(s.pair.remote()) == ("x", "y")
    assert s.nothing.options(num_returns=0).remote() is None


@pytest.mark.all_backends
def test_num_returns_mismatch_is_an_error_and_actor_lives(ray: Any) -> None:
    @aioray.remote
    class Splitter:
        @aioray.method(num_returns=2)
        def pair(self) -> int:
            return 1

        def ok(self) -> str:
            return "ok"

    s = Splitter.remote()
    a, _b = s.pair.remote()
    with pytest.raises(RayTaskError):
        aioray.get(a)
    assert aioray.get(s.ok.remote()) == "ok"


# -- errors --------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_method_exception_is_returned_and_actor_stays_alive(ray: Any) -> None:
    @aioray.remote
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def boom(self) -> None:
            self.calls += 1
            raise KeyError("nope")

        async def aboom(self) -> None:
            raise ZeroDivisionError("async nope")

        def count(self) -> int:
            return self.calls

    f = Flaky.remote()
    with pytest.raises(KeyError) as ei:
        aioray.get(f.boom.remote())
    assert isinstance(ei.value, RayTaskError)
    assert "Flaky.boom" in str(ei.value)
    with pytest.raises(ZeroDivisionError):
        aioray.get(f.aboom.remote())
    assert aioray.get(f.count.remote()) == 1


@pytest.mark.all_backends
async def test_async_method_exception_awaited(aray: Any) -> None:
    @aioray.remote
    class Bad:
        async def f(self) -> None:
            raise ValueError("bad value")

        async def g(self) -> int:
            return 1

    b = Bad.remote()
    with pytest.raises(ValueError, match="bad value"):
        await b.f.remote()
    assert await b.g.remote() == 1


def test_init_failure_makes_every_call_raise_actor_died(ray: Any) -> None:
    @aioray.remote
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("cannot start")

        def f(self) -> int:
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(ActorDiedError) as ei:
            aioray.get(b.f.remote(), timeout=30)
        err = ei.value
        assert isinstance(err, RayActorError)
        assert "cannot start" in str(err)
        assert isinstance(err.cause, RayTaskError)
        assert isinstance(err.cause, RuntimeError)


def test_async_actor_init_failure(ray: Any) -> None:
    @aioray.remote
    class Broken:
        def __init__(self, x: int) -> None:
            1 / x

        async def f(self) -> int:
            return 1

    b = Broken.remote(0)
    with pytest.raises(ActorDiedError) as ei:
        aioray.get(b.f.remote(), timeout=30)
    assert isinstance(ei.value.cause, ZeroDivisionError)


@pytest.mark.all_backends
def test_failed_constructor_argument_kills_actor(ray: Any) -> None:
    @aioray.remote
    def fail() -> int:
        raise OSError("no input")

    b = Counter.remote(fail.remote())
    with pytest.raises(ActorDiedError, match="no input"):
        aioray.get(b.get.remote(), timeout=30)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.all_backends
def test_missing_method_names_the_class(ray: Any) -> None:
    c = Counter.remote()
    with pytest.raises(AttributeError, match="Counter") as ei:
        c.incremnt.remote()
    assert "increment" in str(ei.value)  # lists the methods that exist


@pytest.mark.all_backends
def test_calling_method_without_remote(ray: Any) -> None:
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"increment\.remote\(\)"):
        c.increment()


@pytest.mark.all_backends
def test_instantiating_the_class_directly(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"Counter\.remote\(\)"):
        Counter()


@pytest.mark.all_backends
def test_unknown_actor_option(ray: Any) -> None:
    with pytest.raises(ValueError, match="max_concurency"):
        Counter.options(max_concurency=2)
    with pytest.raises(ValueError, match="bogus"):
        aioray.remote(bogus=1)(type("X", (), {}))


@pytest.mark.all_backends
@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_invalid_max_concurrency(ray: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        Counter.options(max_concurrency=bad)
    with pytest.raises(ValueError, match="max_concurrency"):
        aioray.remote(max_concurrency=bad)(type("X", (), {"f": lambda self: 1}))


@pytest.mark.all_backends
def test_unknown_method_option(ray: Any) -> None:
    c = Counter.remote()
    with pytest.raises(ValueError, match="num_cpus"):
        c.increment.options(num_cpus=1)
    with pytest.raises(TypeError):
        aioray.method(lambda self: 1, num_returns=1)  # a function and options together
    with pytest.raises(TypeError):
        aioray.method(1)  # not a function


@pytest.mark.all_backends
def test_class_metadata_kept(ray: Any) -> None:
    assert Counter.__name__ == "Counter"
    c = Counter.remote()
    assert "Counter" in repr(c)
    assert isinstance(c, aioray.ActorHandle)
    assert c == c and hash(c) == hash(c)
    assert len(c.hex()) == 2 * len(c.binary())


@aioray.remote
class WithStatic:
    BASE = 10

    @staticmethod
    def helper(x: int) -> int:
        return x + 1

    @classmethod
    def base(cls, plus: int = 0) -> int:
        return cls.BASE + plus

    def f(self) -> int:
        return self.helper(1) + 1


@pytest.mark.all_backends
def test_static_and_class_methods_are_remote_methods_too(ray: Any) -> None:
    """As on Ray: ``handle.static_method.remote(...)`` runs it in the actor; arguments are
    checked against its own signature (no ``self``/``cls`` to skip)."""
    w = WithStatic.remote()
    assert aioray.get([w.f.remote(), w.helper.remote(1), w.base.remote(),
                       w.base.remote(plus=5)], timeout=60) == [3, 2, 10, 15]
    with pytest.raises(TypeError):
        w.helper.remote()  # missing x
    assert WithStatic.helper(2) == 3  # still callable on the remote class itself


def test_static_methods_in_thread_actors(ray: Any) -> None:
    w = WithStatic.options(executor="thread").remote()
    assert aioray.get([w.helper.remote(4), w.base.remote(1)], timeout=60) == [5, 11]


@pytest.mark.all_backends
def test_inherited_methods(ray: Any) -> None:
    class Base:
        def base(self) -> str:
            return "base"

    @aioray.remote
    class Child(Base):
        def child(self) -> str:
            return "child"

    ch = Child.remote()
    assert aioray.get([ch.base.remote(), ch.child.remote()]) == ["base", "child"]


@pytest.mark.all_backends
def test_call_dunder_call(ray: Any) -> None:
    @aioray.remote
    class Callable_:
        def __call__(self, x: int) -> int:
            return x * 3

    c = Callable_.remote()
    assert aioray.get(c.__call__.remote(2)) == 6


# -- resources -----------------------------------------------------------------------------
@pytest.mark.all_backends
def test_creation_waits_for_resources_and_holds_them(ray: Any) -> None:
    @aioray.remote(num_cpus=2)
    class Big:
        def ping(self) -> str:
            return "pong"

    a = Big.remote()
    assert aioray.get(a.ping.remote(), timeout=30) == "pong"
    assert aioray.available_resources().get("CPU", 0) == 0  # held for the actor's lifetime
    b = Big.remote()
    ref = b.ping.remote()
    ready, _ = aioray.wait([ref], timeout=0.3)
    assert ready == []  # b cannot be created while a holds the CPUs
    aioray.kill(a)
    assert aioray.get(ref, timeout=30) == "pong"
    assert aioray.available_resources().get("CPU", 0) == 0
    aioray.kill(b)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)


@pytest.mark.all_backends
def test_default_actor_holds_no_cpu(ray: Any) -> None:
    actors = [Counter.remote() for _ in range(5)]  # more actors than CPUs: Ray's default 0
    assert aioray.get([a.increment.remote() for a in actors], timeout=30) == [1] * 5


def test_infeasible_actor_is_an_error(ray: Any) -> None:
    @aioray.remote(num_gpus=4)
    class NeedsGPU:
        def f(self) -> int:
            return 1

    a = NeedsGPU.remote()
    with pytest.raises(RayActorError, match="GPU"):
        aioray.get(a.f.remote(), timeout=30)


def test_custom_resources(ray: Any) -> None:
    aioray.shutdown()
    aioray.init(num_cpus=2, resources={"disk": 1})

    @aioray.remote(resources={"disk": 1})
    class Disk:
        def f(self) -> int:
            return 1

    d = Disk.remote()
    assert aioray.get(d.f.remote(), timeout=30) == 1
    assert aioray.available_resources().get("disk", 0) == 0


def test_methods_run_on_an_actor_thread_not_the_loop(ray: Any) -> None:
    @aioray.remote
    class Where:
        def thread(self) -> int:
            return threading.get_ident()

    w = Where.remote()
    rt = aioray._engine.runtime.current_runtime()
    assert aioray.get(w.thread.remote()) != rt.loop_thread_id


# -- runtime context inside actors ---------------------------------------------------------
@aioray.remote
class Context:
    def __init__(self) -> None:
        self.init_task = aioray.get_runtime_context().get_task_id()

    def ids(self) -> tuple[str | None, str | None, str | None]:
        ctx = aioray.get_runtime_context()
        return ctx.get_task_id(), ctx.get_actor_id(), ctx.get_actor_name()

    async def aids(self) -> tuple[str | None, bool]:
        ctx = aioray.get_runtime_context()
        return ctx.get_task_id(), ctx.is_canceled()

    def quit(self) -> None:
        from aioray.actor import exit_actor
        exit_actor()


def test_runtime_context_in_actor_methods(ray: Any) -> None:
    c = Context.options(name="ctx").remote()
    ref = c.ids.remote()
    task_id, actor_id, name = aioray.get(ref, timeout=30)
    assert task_id == ref.task_id()
    assert actor_id == c.hex()
    assert name == "ctx"
    aref = c.aids.remote()
    assert aioray.get(aref, timeout=30) == (aref.task_id(), False)


def test_actor_called_from_an_async_task_has_its_own_context(ray: Any) -> None:
    @aioray.remote
    async def caller(c: Any) -> tuple[Any, Any, str]:
        ref = c.aids.remote()
        sync_ref = c.ids.remote()
        return await ref, (await sync_ref)[0], ref.task_id()

    c = Context.remote()
    (task_id, cancelled), sync_task_id, expected = aioray.get(caller.remote(c), timeout=30)
    assert task_id == expected and not cancelled
    assert sync_task_id is not None and sync_task_id != task_id
    q = Context.remote()

    @aioray.remote
    async def quitter(c: Any) -> str:
        try:
            await c.quit.remote()
        except ActorDiedError:
            return "died"
        return "alive"

    assert aioray.get(quitter.remote(q), timeout=30) == "died"


def test_actor_call_from_a_task_does_not_touch_the_tasks_cpu(ray: Any) -> None:
    @aioray.remote
    class Middle:
        async def work(self) -> float:
            await async_double.remote(1)  # a wait inside the method, then...
            return float(aioray.available_resources().get("CPU", 0))

    @aioray.remote(num_cpus=2)
    async def caller(m: Any) -> float:
        return float(await m.work.remote())

    # The caller blocks on the actor, so it lends its 2 CPUs (as Ray does); the actor's own
    # waits must not take them back on the caller's behalf.
    assert aioray.get(caller.remote(Middle.remote()), timeout=30) == 2


@pytest.mark.all_backends
def test_bare_method_decorator_is_accepted(ray: object) -> None:
    @aioray.remote
    class Plain:
        @aioray.method
        def x(self) -> int:
            return 3

    assert aioray.get(Plain.remote().x.remote()) == 3


@aioray.remote
class Shadowed:
    def __init__(self) -> None:
        self.should_stop = True  # an instance attribute named like a method

    def should_stop(self) -> str:  # type: ignore[no-redef]
        return f"method sees {self.__dict__['should_stop']}"


@aioray.remote
class AsyncShadowed:
    def __init__(self) -> None:
        self.ping = "attribute"

    async def ping(self) -> str:  # type: ignore[no-redef]
        return "async method"


@pytest.mark.all_backends
def test_methods_are_looked_up_on_the_class(ray: Any) -> None:
    """As on Ray: ``a.m.remote()`` calls the class's method even when ``__init__`` set an
    instance attribute of that name (Ray's streaming-generator test relies on it)."""
    assert ray.get(Shadowed.remote().should_stop.remote(), timeout=60) == "method sees True"
    assert ray.get(AsyncShadowed.remote().ping.remote(), timeout=60) == "async method"


def test_methods_are_looked_up_on_the_class_in_thread_actors(ray: Any) -> None:
    a = Shadowed.options(executor="thread").remote()
    assert ray.get(a.should_stop.remote(), timeout=60) == "method sees True"
