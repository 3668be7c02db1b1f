"""Actor handles everywhere: pickled, passed to process/thread/async tasks, to other actors and
inside containers; calls from worker processes keep per-caller order."""

from __future__ import annotations

import asyncio
import pickle
import time
from typing import Any

import pytest

import aioray
from aioray.exceptions import ActorDiedError, RayTaskError

TIMEOUT = 60


@aioray.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def increment(self) -> int:
        self.value += 1
        return self.value

    def get_counter(self) -> int:
        return self.value


@aioray.remote
class Recorder:
    def __init__(self) -> None:
        self.log: list[Any] = []

    def record(self, item: Any) -> None:
        self.log.append(item)

    def get_log(self) -> list[Any]:
        return self.log

    @aioray.method(num_returns=2)
    def two(self, x: int) -> tuple[int, int]:
        return x, -x

    def fail(self) -> None:
        raise KeyError("from the actor")


# -- the blog seed's Counter example --------------------------------------------------------
@aioray.remote
def bump(counter: Any, times: int) -> None:
    for _ in range(times):
        counter.increment.remote()


@pytest.mark.all_backends
def test_three_process_tasks_increment_one_actor(ray: Any) -> None:
    counter = Counter.options(name="demo").remote()
    aioray.get([bump.remote(counter, 10) for _ in range(3)], timeout=TIMEOUT)
    # the tasks fire and forget; every increment arrives
    deadline = time.monotonic() + TIMEOUT
    while aioray.get(counter.get_counter.remote()) < 30:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert aioray.get(counter.get_counter.remote()) == 30


# -- per-caller order from worker processes -------------------------------------------------
@aioray.remote
def send_in_order(rec: Any, tag: str, n: int) -> int:
    for i in range(n):
        rec.record.remote((tag, i))
    return n


def test_calls_from_a_process_task_keep_their_order(ray: Any) -> None:
    rec = Recorder.remote()
    assert aioray.get(send_in_order.remote(rec, "a", 200), timeout=TIMEOUT) == 200
    log = aioray.get(rec.get_log.remote(), timeout=TIMEOUT)
    assert log == [("a", i) for i in range(200)]


def test_per_caller_order_with_several_process_callers(ray: Any) -> None:
    rec = Recorder.remote()
    aioray.get([send_in_order.remote(rec, t, 100) for t in "abc"], timeout=TIMEOUT)
    log = aioray.get(rec.get_log.remote(), timeout=TIMEOUT)
    assert len(log) == 300
    for t in "abc":
        assert [i for tag, i in log if tag == t] == list(range(100))


@pytest.mark.all_backends
def test_driver_order_with_ref_arguments(ray: Any) -> None:
    @aioray.remote
    def value(i: int) -> int:
        return i

    rec = Recorder.remote()
    for i in range(20):
        rec.record.remote(value.remote(i) if i % 3 == 0 else i)
    assert aioray.get(rec.get_log.remote(), timeout=TIMEOUT) == list(range(20))


# -- handles in worker processes ------------------------------------------------------------
@aioray.remote
def use_handle(rec: Any) -> tuple[int, int, str]:
    a, b = rec.two.remote(5)
    try:
        aioray.get(rec.fail.remote())
        err = "no error"
    except KeyError as e:
        err = f"{'from the actor' in str(e)}:{isinstance(e, RayTaskError)}"
    return aioray.get(a), aioray.get(b), err


@pytest.mark.all_backends
def test_worker_gets_results_num_returns_and_errors(ray: Any) -> None:
    rec = Recorder.remote()
    assert aioray.get(use_handle.remote(rec), timeout=TIMEOUT) == (5, -5, "True:True")


@aioray.remote
def make_counter() -> Any:
    c = Counter.remote()
    c.increment.remote()
    return c


def test_actor_created_in_worker_returned_to_driver(ray: Any) -> None:
    c = aioray.get(make_counter.remote(), timeout=TIMEOUT)
    assert aioray.get(c.increment.remote(), timeout=TIMEOUT) == 2


@aioray.remote
def kill_it(handle: Any) -> None:
    aioray.kill(handle)


@pytest.mark.all_backends
def test_kill_from_a_worker_process(ray: Any) -> None:
    c = Counter.remote()
    aioray.get(c.increment.remote())
    aioray.get(kill_it.remote(c), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        aioray.get(c.increment.remote(), timeout=TIMEOUT)


@aioray.remote
def call_dead(handle: Any) -> str:
    try:
        aioray.get(handle.increment.remote())
    except ActorDiedError as e:
        return f"died: {e}"
    return "alive"


@pytest.mark.all_backends
def test_worker_calling_a_dead_actor(ray: Any) -> None:
    c = Counter.remote()
    aioray.kill(c)
    assert aioray.get(call_dead.remote(c), timeout=TIMEOUT).startswith("died")


@aioray.remote
def pass_method_result(c: Any) -> int:
    ref = c.increment.remote()

    @aioray.remote
    def plus(x: int) -> int:
        return x + 100
    return int(aioray.get(plus.remote(ref)))


@pytest.mark.all_backends
def test_worker_passes_method_result_to_a_task(ray: Any) -> None:
    c = Counter.remote()
    assert aioray.get(pass_method_result.remote(c), timeout=TIMEOUT) == 101


# -- thread and async tasks, other actors, containers --------------------------------------
def test_handle_in_thread_and_async_tasks(ray: Any) -> None:
    @aioray.remote
    async def async_use(c: Any) -> int:
        return int(await c.increment.remote())

    @aioray.remote(executor="thread")
    def thread_use(c: Any) -> int:
        return int(aioray.get(c.increment.remote()))

    c = Counter.remote()
    assert aioray.get(async_use.remote(c), timeout=TIMEOUT) == 1
    assert aioray.get(thread_use.remote(c), timeout=TIMEOUT) == 2


@pytest.mark.all_backends
def test_handle_passed_to_other_actors(ray: Any) -> None:
    @aioray.remote
    class Forwarder:
        def __init__(self, target: Any) -> None:
            self.target = target

        def forward(self) -> int:
            return int(aioray.get(self.target.increment.remote()))

    @aioray.remote
    class AsyncForwarder:
        async def forward(self, target: Any) -> int:
            return int(await target.increment.remote())

    c = Counter.remote()
    f = Forwarder.remote(c)
    af = AsyncForwarder.remote()
    assert aioray.get(f.forward.remote(), timeout=TIMEOUT) == 1
    assert aioray.get(af.forward.remote(c), timeout=TIMEOUT) == 2
    assert aioray.get(c.get_counter.remote()) == 2


@aioray.remote
def sum_from_container(box: dict[str, list[Any]]) -> int:
    return sum(aioray.get([h.increment.remote() for h in box["handles"]]))


@pytest.mark.all_backends
def test_handles_inside_containers(ray: Any) -> None:
    cs = [Counter.remote() for _ in range(3)]
    assert aioray.get(sum_from_container.remote({"handles": cs}), timeout=TIMEOUT) == 3
    stored = aioray.put({"handles": cs})
    assert aioray.get(sum_from_container.remote(stored), timeout=TIMEOUT) == 6
    back = aioray.get(stored)["handles"]
    assert back == cs
    assert aioray.get([h.get_counter.remote() for h in back]) == [2, 2, 2]


@pytest.mark.all_backends
def test_handle_pickles_in_the_driver(ray: Any) -> None:
    c = Counter.remote()
    c2 = pickle.loads(pickle.dumps(c))
    assert c2 == c and hash(c2) == hash(c)
    assert aioray.get(c2.increment.remote(), timeout=TIMEOUT) == 1


@pytest.mark.all_backends
def test_handle_returned_from_a_method(ray: Any) -> None:
    @aioray.remote
    class Factory:
        def make(self) -> Any:
            return Counter.remote()

    f = Factory.remote()
    c = aioray.get(f.make.remote(), timeout=TIMEOUT)
    assert aioray.get(c.increment.remote(), timeout=TIMEOUT) == 1


@pytest.mark.all_backends
async def test_handles_from_async_app(aray: Any) -> None:
    c = Counter.remote()
    results = await asyncio.gather(*[bump.remote(c, 5) for _ in range(2)])
    assert results == [None, None]
    deadline = time.monotonic() + TIMEOUT
    while await c.get_counter.remote() < 10:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


# -- __ray_invocation_decorator__ (Ray's caller-side hook on a method's .remote()) -----------
def _add_ten_to_the_argument(invocation: Any) -> Any:
    def wrapped(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return invocation((args[0] + 10, *args[1:]), kwargs)
    return wrapped


def _refs_as_list(invocation: Any) -> Any:
    return lambda args, kwargs: [invocation(args, kwargs)]


@aioray.remote
class Decorated:
    def echo(self, x: int) -> int:
        return x

    echo.__ray_invocation_decorator__ = _add_ten_to_the_argument  # type: ignore[attr-defined]

    def wrapped(self) -> str:
        return "value"

    wrapped.__ray_invocation_decorator__ = _refs_as_list  # type: ignore[attr-defined]


@aioray.remote
def call_echo(actor: Any) -> int:
    return aioray.get(actor.echo.remote(1))  # type: ignore[no-any-return]


@pytest.mark.all_backends
def test_invocation_decorator_wraps_remote_once(ray: Any) -> None:
    a = Decorated.remote()
    assert ray.get(a.echo.remote(1), timeout=TIMEOUT) == 11  # 21 would be applied twice
    assert ray.get(a.echo.options(name="named").remote(2), timeout=TIMEOUT) == 12
    [ref] = a.wrapped.remote()  # what the decorated invocation returns is what .remote() returns
    assert ray.get(ref, timeout=TIMEOUT) == "value"
    # The handle (and the hook with it) crosses into a task in a worker process.
    assert ray.get(call_echo.remote(a), timeout=TIMEOUT) == 11
