"""Actor lifetimes: kill, restarts and call retries, exit_actor, __ray_terminate__, going out of
scope when the last handle is dropped, detached actors, shutdown."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest
from xproc import FileEvent, FileLog

import aioray
from aioray.actor import exit_actor
from aioray.exceptions import ActorDiedError, RayActorError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT = 30
# Cross-process: sync actors run in their own processes, async actors on the driver's loop.
GATE = FileEvent()
EVENTS = FileLog()  # what actors did, in order


@pytest.fixture(autouse=True)
def _reset() -> None:
    GATE.clear()
    EVENTS.clear()


def wait_until(cond: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@aioray.remote
class Life:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.calls = 0
        self.started = threading.Event()
        EVENTS.append(f"init{tag}")

    def ping(self) -> str:
        self.calls += 1
        return "pong"

    def count(self) -> int:
        return self.calls

    def block(self) -> str:
        self.started.set()
        GATE.wait(TIMEOUT)
        return "unblocked"

    def exit(self) -> None:
        exit_actor()

    def wait_started(self) -> None:
        assert self.started.wait(TIMEOUT)


# -- kill ----------------------------------------------------------------------------------
def test_kill_fails_running_pending_and_later_calls(ray: Any) -> None:
    a = Life.options(max_concurrency=2).remote()
    running = a.block.remote()
    aioray.get(a.wait_started.remote(), timeout=TIMEOUT)
    aioray.kill(a)
    with pytest.raises(ActorDiedError, match="kill"):
        aioray.get(running, timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)
    GATE.set()  # let the interrupted thread go


def test_kill_fails_queued_calls(ray: Any) -> None:
    a = Life.remote()
    running = a.block.remote()
    queued = [a.ping.remote() for _ in range(3)]
    aioray.kill(a)
    for ref in [running, *queued]:
        with pytest.raises(ActorDiedError):
            aioray.get(ref, timeout=TIMEOUT)
    GATE.set()


def test_kill_async_actor_cancels_running_coroutines(ray: Any) -> None:
    @aioray.remote
    class Sleeper:
        def __init__(self) -> None:
            self.started = asyncio.Event()

        async def sleep(self) -> None:
            self.started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                EVENTS.append("cancelled")
                raise

        async def wait_started(self) -> None:
            await asyncio.wait_for(self.started.wait(), TIMEOUT)

    s = Sleeper.remote()
    ref = s.sleep.remote()
    aioray.get(s.wait_started.remote(), timeout=TIMEOUT)
    aioray.kill(s)
    with pytest.raises(ActorDiedError):
        aioray.get(ref, timeout=TIMEOUT)
    wait_until(lambda: EVENTS == ["cancelled"])


def test_kill_releases_resources(ray: Any) -> None:
    a = Life.options(num_cpus=2).remote()
    aioray.get(a.ping.remote(), timeout=TIMEOUT)
    assert aioray.available_resources().get("CPU", 0) == 0
    aioray.kill(a)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)


def test_kill_actor_waiting_for_resources(ray: Any) -> None:
    holder = Life.options(num_cpus=2).remote()
    aioray.get(holder.ping.remote(), timeout=TIMEOUT)
    waiting = Life.options(num_cpus=1).remote("w")
    ref = waiting.ping.remote()
    aioray.kill(waiting)
    with pytest.raises(ActorDiedError):
        aioray.get(ref, timeout=TIMEOUT)
    aioray.kill(holder)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)
    assert "initw" not in EVENTS  # never constructed


def test_kill_twice_and_kill_dead_actor(ray: Any) -> None:
    a = Life.remote()
    aioray.get(a.ping.remote())
    aioray.kill(a)
    aioray.kill(a)
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)


def test_kill_of_a_handle_from_a_previous_runtime(ray: Any) -> None:
    stale = Life.remote()
    aioray.get(stale.ping.remote())
    aioray.shutdown()
    aioray.init(num_cpus=2)
    with pytest.raises(aioray.exceptions.ActorHandleNotFoundError, match="not known") as info:
        aioray.kill(stale)
    assert isinstance(info.value, ValueError)  # as Ray's
    fresh = Life.remote()
    aioray.get(fresh.ping.remote())
    aioray.kill(fresh)
    aioray.kill(fresh)  # a dead actor of this runtime: nothing to do, as before


def test_kill_rejects_non_handles(ray: Any) -> None:
    with pytest.raises(TypeError, match="actor handle"):
        aioray.kill(aioray.put(1))  # type: ignore[arg-type]


# -- restarts ------------------------------------------------------------------------------
def test_kill_with_restart_runs_init_again(ray: Any) -> None:
    a = Life.options(max_restarts=1).remote()
    assert aioray.get([a.ping.remote(), a.ping.remote()]) == ["pong", "pong"]
    assert aioray.get(a.count.remote()) == 2
    aioray.kill(a, no_restart=False)
    assert aioray.get(a.count.remote(), timeout=TIMEOUT) == 0  # fresh state
    assert EVENTS == ["init", "init"]
    # restarts used up: the next kill is final
    aioray.kill(a, no_restart=False)
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)


def test_kill_no_restart_true_ends_restartable_actor(ray: Any) -> None:
    a = Life.options(max_restarts=5).remote()
    aioray.get(a.ping.remote())
    aioray.kill(a)  # no_restart=True by default
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)
    assert EVENTS == ["init"]


def test_infinite_restarts(ray: Any) -> None:
    a = Life.options(max_restarts=-1).remote()
    for _ in range(3):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)
        aioray.kill(a, no_restart=False)
    assert aioray.get(a.count.remote(), timeout=TIMEOUT) == 0
    assert EVENTS == ["init"] * 4


def test_in_flight_call_fails_without_task_retries(ray: Any) -> None:
    a = Life.options(max_restarts=1, max_concurrency=2).remote()
    running = a.block.remote()
    aioray.get(a.wait_started.remote(), timeout=TIMEOUT)
    aioray.kill(a, no_restart=False)
    with pytest.raises(ActorDiedError, match="restarted"):
        aioray.get(running, timeout=TIMEOUT)
    GATE.set()
    assert aioray.get(a.ping.remote(), timeout=TIMEOUT) == "pong"  # restarted


def test_max_task_retries_retries_in_flight_call(ray: Any) -> None:
    @aioray.remote(max_restarts=1, max_task_retries=1, max_concurrency=2)
    class Retry:
        def __init__(self) -> None:
            self.started = threading.Event()
            EVENTS.append("init")

        def work(self) -> str:
            EVENTS.append("work")
            if EVENTS.items().count("init") == 1:  # first incarnation: block until killed
                self.started.set()
                GATE.wait(TIMEOUT)
                return "first"
            return "second"

        def wait_started(self) -> None:
            assert self.started.wait(TIMEOUT)

    r = Retry.remote()
    ref = r.work.remote()
    aioray.get(r.wait_started.remote(), timeout=TIMEOUT)
    aioray.kill(r, no_restart=False)
    assert aioray.get(ref, timeout=TIMEOUT) == "second"
    GATE.set()
    assert EVENTS == ["init", "work", "init", "work"]


def test_max_task_retries_on_async_actor(ray: Any) -> None:
    @aioray.remote(max_restarts=2, max_task_retries=-1)
    class AsyncRetry:
        def __init__(self) -> None:
            self.started = asyncio.Event()
            EVENTS.append("init")

        async def work(self) -> int:
            if EVENTS.items().count("init") < 3:
                self.started.set()
                await asyncio.sleep(3600)
            return EVENTS.items().count("init")

        async def wait_started(self) -> None:
            await asyncio.wait_for(self.started.wait(), TIMEOUT)

    a = AsyncRetry.remote()
    ref = a.work.remote()
    for _ in range(2):
        aioray.get(a.wait_started.remote(), timeout=TIMEOUT)
        aioray.kill(a, no_restart=False)
    assert aioray.get(ref, timeout=TIMEOUT) == 3


def test_queued_calls_survive_a_restart(ray: Any) -> None:
    a = Life.options(max_restarts=1).remote()
    aioray.get(a.ping.remote())
    aioray.kill(a, no_restart=False)
    refs = [a.ping.remote() for _ in range(3)]  # submitted while it restarts
    assert aioray.get(refs, timeout=TIMEOUT) == ["pong"] * 3
    assert aioray.get(a.count.remote(), timeout=TIMEOUT) == 3


def test_restart_keeps_resources(ray: Any) -> None:
    a = Life.options(num_cpus=1, max_restarts=1).remote()
    aioray.get(a.ping.remote(), timeout=TIMEOUT)
    aioray.kill(a, no_restart=False)
    assert aioray.get(a.ping.remote(), timeout=TIMEOUT) == "pong"
    assert aioray.available_resources().get("CPU", 0) == 1
    aioray.kill(a)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)


def test_was_current_actor_reconstructed(ray: Any) -> None:
    @aioray.remote(max_restarts=1)
    class Recon:
        def recon(self) -> bool:
            return aioray.get_runtime_context().was_current_actor_reconstructed

    r = Recon.remote()
    assert aioray.get(r.recon.remote()) is False
    aioray.kill(r, no_restart=False)
    assert aioray.get(r.recon.remote(), timeout=TIMEOUT) is True


# -- exit_actor and __ray_terminate__ ------------------------------------------------------
def test_exit_actor_inside_a_method(ray: Any) -> None:
    a = Life.remote()
    assert aioray.get(a.ping.remote()) == "pong"
    with pytest.raises(ActorDiedError, match="exit_actor"):
        aioray.get(a.exit.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)


def test_exit_actor_fails_queued_calls(ray: Any) -> None:
    a = Life.remote()
    first = a.block.remote()
    ex = a.exit.remote()
    later = a.ping.remote()
    GATE.set()
    assert aioray.get(first, timeout=TIMEOUT) == "unblocked"
    for ref in (ex, later):
        with pytest.raises(ActorDiedError):
            aioray.get(ref, timeout=TIMEOUT)


def test_exit_actor_is_not_restarted(ray: Any) -> None:
    a = Life.options(max_restarts=3).remote()
    with pytest.raises(ActorDiedError):
        aioray.get(a.exit.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)
    assert EVENTS == ["init"]


def test_exit_actor_lets_running_calls_of_a_threaded_actor_finish(ray: Any) -> None:
    a = Life.options(max_concurrency=2).remote()
    running = a.block.remote()
    aioray.get(a.wait_started.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        aioray.get(a.exit.remote(), timeout=TIMEOUT)
    GATE.set()
    assert aioray.get(running, timeout=TIMEOUT) == "unblocked"  # as in Ray


def test_exit_actor_in_async_actor(ray: Any) -> None:
    @aioray.remote
    class AsyncExit:
        async def bye(self) -> None:
            await asyncio.sleep(0)
            exit_actor()

        async def ping(self) -> str:
            return "pong"

    a = AsyncExit.remote()
    assert aioray.get(a.ping.remote()) == "pong"
    with pytest.raises(ActorDiedError):
        aioray.get(a.bye.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)


def test_exit_actor_is_not_caught_by_except_exception(ray: Any) -> None:
    @aioray.remote
    class Careless:
        def bye(self) -> str:
            try:
                exit_actor()
            except Exception:
                return "swallowed"
            return "not reached"

    c = Careless.remote()
    with pytest.raises(ActorDiedError):
        aioray.get(c.bye.remote(), timeout=TIMEOUT)


def test_exit_actor_in_init(ray: Any) -> None:
    @aioray.remote
    class Quits:
        def __init__(self) -> None:
            exit_actor()

        def f(self) -> int:
            return 1

    q = Quits.remote()
    with pytest.raises(ActorDiedError, match="exit_actor"):
        aioray.get(q.f.remote(), timeout=TIMEOUT)


def test_exit_actor_outside_an_actor(ray: Any) -> None:
    with pytest.raises(TypeError, match="exit_actor API is called on a non-actor worker"):
        exit_actor()  # Ray's words (Ray's tests match on them)

    @aioray.remote
    async def in_task() -> None:
        exit_actor()

    with pytest.raises(TypeError, match="task"):
        aioray.get(in_task.remote(), timeout=TIMEOUT)


def test_exit_actor_releases_resources_and_name(ray: Any) -> None:
    a = Life.options(name="leaver", num_cpus=1).remote()
    aioray.get(a.ping.remote(), timeout=TIMEOUT)
    assert aioray.available_resources().get("CPU", 0) == 1
    with pytest.raises(ActorDiedError):
        aioray.get(a.exit.remote(), timeout=TIMEOUT)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)
    with pytest.raises(ValueError):
        aioray.get_actor("leaver")
    b = Life.options(name="leaver").remote()
    assert aioray.get(b.ping.remote(), timeout=TIMEOUT) == "pong"


def test_ray_terminate_runs_after_queued_calls(ray: Any) -> None:
    a = Life.remote()
    refs = [a.ping.remote() for _ in range(5)]
    term = a.__ray_terminate__.remote()
    assert aioray.get(refs, timeout=TIMEOUT) == ["pong"] * 5
    with pytest.raises(RayActorError):
        aioray.get(term, timeout=TIMEOUT)
    with pytest.raises(ActorDiedError, match="__ray_terminate__"):
        aioray.get(a.ping.remote(), timeout=TIMEOUT)


# -- out of scope, detached ----------------------------------------------------------------
def test_dropping_last_handle_ends_actor_after_queued_calls(ray: Any) -> None:
    @aioray.remote
    class Tracked:
        def __init__(self) -> None:
            self.n = 0

        def step(self) -> int:
            self.n += 1
            EVENTS.append(f"step{self.n}")
            return self.n

        def __del__(self) -> None:
            EVENTS.append("del")

    t = Tracked.remote()
    actor_id = t._actor_id
    refs = [t.step.remote() for _ in range(3)]
    del t
    gc.collect()
    assert aioray.get(refs, timeout=TIMEOUT) == [1, 2, 3]  # queued calls finish first
    rt = aioray._engine.runtime.current_runtime()
    wait_until(lambda: actor_id not in rt.actors.actors)
    wait_until(lambda: EVENTS.items()[-1:] == ["del"])
    assert EVENTS == ["step1", "step2", "step3", "del"]


def test_dropping_last_handle_of_async_actor_waits_for_running_calls(ray: Any) -> None:
    @aioray.remote
    class Busy:
        async def work(self, i: int) -> int:
            for _ in range(5):
                await asyncio.sleep(0)
            return i

    b = Busy.remote()
    actor_id = b._actor_id
    refs = [b.work.remote(i) for i in range(20)]
    del b
    gc.collect()
    assert aioray.get(refs, timeout=TIMEOUT) == list(range(20))
    rt = aioray._engine.runtime.current_runtime()
    wait_until(lambda: actor_id not in rt.actors.actors)


def test_dropped_actor_releases_its_resources(ray: Any) -> None:
    a = Life.options(num_cpus=2).remote()
    aioray.get(a.ping.remote(), timeout=TIMEOUT)
    assert aioray.available_resources().get("CPU", 0) == 0
    del a
    gc.collect()
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)


def test_copies_of_a_handle_keep_the_actor_alive(ray: Any) -> None:
    a = Life.remote()
    box = aioray.put([a])  # a handle inside a stored object counts too
    b = aioray.get(box)[0]
    del a
    gc.collect()
    assert aioray.get(b.ping.remote(), timeout=TIMEOUT) == "pong"
    del b
    gc.collect()
    c = aioray.get(box)[0]
    assert aioray.get(c.ping.remote(), timeout=TIMEOUT) == "pong"


def test_named_actor_outlives_its_handles(ray: Any) -> None:
    a = Life.options(name="keeper").remote()
    aioray.get(a.ping.remote())
    del a
    gc.collect()
    b = aioray.get_actor("keeper")
    assert aioray.get(b.count.remote(), timeout=TIMEOUT) == 1


def test_detached_actor_outlives_its_handles_until_kill(ray: Any) -> None:
    a = Life.options(lifetime="detached", name="daemon").remote()
    actor_id = a._actor_id
    aioray.get(a.ping.remote())
    del a
    gc.collect()
    rt = aioray._engine.runtime.current_runtime()
    h = aioray.get_actor("daemon")
    assert aioray.get(h.count.remote(), timeout=TIMEOUT) == 1
    aioray.kill(h)
    wait_until(lambda: actor_id not in rt.actors.actors)
    with pytest.raises(ValueError):
        aioray.get_actor("daemon")


def test_unnamed_detached_actor_is_kept(ray: Any) -> None:
    a = Life.options(lifetime="detached").remote()
    actor_id = a._actor_id
    aioray.get(a.ping.remote())
    del a
    gc.collect()
    rt = aioray._engine.runtime.current_runtime()
    time.sleep(0.05)  # give a (wrong) out-of-scope exit the chance to happen
    assert rt.actors.actors[actor_id].status == "ALIVE"


def test_invalid_lifetime(ray: Any) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        Life.options(lifetime="forever")


# -- shutdown ------------------------------------------------------------------------------
def test_shutdown_fails_pending_actor_calls(ray: Any) -> None:
    a = Life.remote()
    stuck = a.block.remote()
    queued = a.ping.remote()
    aioray.shutdown()
    GATE.set()
    for ref in (stuck, queued):
        with pytest.raises(RayActorError):
            aioray.get(ref, timeout=TIMEOUT)


@aioray.remote
def create_and_drop() -> bytes:
    a = Life.remote("tmp")
    aioray.get(a.ping.remote())
    return bytes(a._actor_id)


def test_actor_created_and_dropped_in_a_worker_ends(ray: Any) -> None:
    actor_id = aioray.get(create_and_drop.remote(), timeout=TIMEOUT)
    rt = aioray._engine.runtime.current_runtime()
    wait_until(lambda: actor_id not in rt.actors.actors)


def test_async_actor_cannot_block_its_loop_with_get(ray: Any) -> None:
    @aioray.remote
    class Blocker:
        async def bad(self) -> Any:
            return aioray.get(_slow.remote())

        async def good(self) -> Any:
            return await _slow.remote()

    b = Blocker.remote()
    with pytest.raises(RuntimeError, match="await"):
        aioray.get(b.bad.remote(), timeout=TIMEOUT)
    assert aioray.get(b.good.remote(), timeout=TIMEOUT) == "slow"


@aioray.remote
async def _slow() -> str:
    await asyncio.sleep(0.01)
    return "slow"


def test_unused_actor_dropped_while_waiting_for_resources_is_never_created(ray: Any) -> None:
    holder = Life.options(num_cpus=2).remote()
    aioray.get(holder.ping.remote(), timeout=TIMEOUT)
    w = Life.options(num_cpus=1).remote("w")
    actor_id = w._actor_id
    del w
    gc.collect()
    rt = aioray._engine.runtime.current_runtime()
    wait_until(lambda: actor_id not in rt.actors.actors)
    aioray.kill(holder)
    wait_until(lambda: aioray.available_resources().get("CPU", 0) == 2)
    assert "initw" not in EVENTS


# -- retry_exceptions on methods -------------------------------------------------------------
@aioray.remote
class Flaky:
    def __init__(self) -> None:
        self.attempts = 0

    @aioray.method(retry_exceptions=True, max_task_retries=2)
    def twice_then_ok(self) -> int:
        self.attempts += 1
        if self.attempts < 3:
            raise ConnectionError("try again")
        return self.attempts

    @aioray.method(retry_exceptions=[ConnectionError], max_task_retries=5)
    def wrong_kind(self) -> None:
        self.attempts += 1
        raise KeyError("not retried")

    @aioray.method(retry_exceptions=True, max_task_retries=1)
    async def always(self) -> None:
        self.attempts += 1
        raise ConnectionError("still broken")

    def plain(self) -> None:
        self.attempts += 1
        raise ConnectionError("no retry by default")

    def count(self) -> int:
        return self.attempts


def test_retry_exceptions_on_a_method(ray: Any) -> None:
    f = Flaky.remote()
    assert aioray.get(f.twice_then_ok.remote(), timeout=TIMEOUT) == 3


def test_retry_exceptions_only_listed_kinds(ray: Any) -> None:
    f = Flaky.remote()
    with pytest.raises(KeyError):
        aioray.get(f.wrong_kind.remote(), timeout=TIMEOUT)
    assert aioray.get(f.count.remote()) == 1


def test_retry_exceptions_gives_up_after_max_task_retries(ray: Any) -> None:
    @aioray.remote
    class AsyncFlaky:
        def __init__(self) -> None:
            self.attempts = 0

        @aioray.method(retry_exceptions=True, max_task_retries=1)
        async def always(self) -> None:
            self.attempts += 1
            raise ConnectionError("still broken")

        async def count(self) -> int:
            return self.attempts

    for cls in (Flaky, AsyncFlaky):
        f = cls.remote()
        with pytest.raises(ConnectionError, match="still broken"):
            aioray.get(f.always.remote(), timeout=TIMEOUT)
        assert aioray.get(f.count.remote()) == 2


def test_no_retry_on_exceptions_by_default(ray: Any) -> None:
    f = Flaky.options(max_task_retries=3).remote()
    with pytest.raises(ConnectionError):
        aioray.get(f.plain.remote(), timeout=TIMEOUT)
    assert aioray.get(f.count.remote()) == 1
    # per call: .options(retry_exceptions=True) uses the actor's max_task_retries
    with pytest.raises(ConnectionError):
        aioray.get(f.plain.options(retry_exceptions=True).remote(), timeout=TIMEOUT)
    assert aioray.get(f.count.remote()) == 5


def test_retried_call_may_run_after_later_calls(ray: Any) -> None:
    # Ray: "the task execution order is not guaranteed when task retries occur"
    f = Flaky.remote()
    first = f.twice_then_ok.remote()
    after = f.count.remote()
    assert aioray.get(first, timeout=TIMEOUT) == 3
    assert aioray.get(after, timeout=TIMEOUT) in (1, 2, 3)
