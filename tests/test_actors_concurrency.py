"""Actor execution models: sync (one at a time, in order), threaded, async, concurrency groups,
and what ``cancel`` does to actor calls. Limits are proven with counters and barriers, not timing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest
from xproc import FileEvent

import aioray
from aioray.exceptions import GetTimeoutError, TaskCancelledError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT = 30

# A cross-process gate: sync actors run in their own processes, async code on the loop.
GATE = FileEvent()


@pytest.fixture(autouse=True)
def _reset_gate() -> None:
    GATE.clear()


class _Tracker:
    """Counts how many calls run at once (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.log: list[Any] = []

    def enter(self, tag: Any = None) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.log.append(tag)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


# -- sync actors ---------------------------------------------------------------------------
@aioray.remote
class Serial:
    def __init__(self) -> None:
        self.t = _Tracker()

    def work(self, i: int) -> int:
        self.t.enter(i)
        time.sleep(0.002)  # room for a second call to (wrongly) start meanwhile
        self.t.leave()
        return i

    def stats(self) -> tuple[int, list[Any]]:
        return self.t.peak, self.t.log

    def block(self) -> str:
        assert GATE.wait(TIMEOUT)
        return "released"


def test_sync_actor_runs_one_call_at_a_time_in_order(ray: Any) -> None:
    s = Serial.remote()
    assert aioray.get([s.work.remote(i) for i in range(40)], timeout=TIMEOUT) == list(range(40))
    peak, log = aioray.get(s.stats.remote())
    assert peak == 1
    assert log == list(range(40))


def test_order_kept_when_an_earlier_call_waits_for_its_argument(ray: Any) -> None:
    @aioray.remote
    async def slow_value() -> int:
        while not GATE.is_set():
            await asyncio.sleep(0.005)
        return 0

    s = Serial.remote()
    first = s.work.remote(slow_value.remote())
    later = [s.work.remote(i) for i in range(1, 4)]
    ready, _ = aioray.wait(later, num_returns=len(later), timeout=0.2)
    assert ready == []  # calls behind the waiting one do not overtake it
    GATE.set()
    assert aioray.get([first, *later], timeout=TIMEOUT) == [0, 1, 2, 3]
    assert aioray.get(s.stats.remote())[1] == [0, 1, 2, 3]


def test_long_sync_method_does_not_stall_loop_or_other_actors(ray: Any) -> None:
    @aioray.remote
    async def on_loop() -> str:
        await asyncio.sleep(0)
        return "loop ok"

    blocked = Serial.remote()
    other = Serial.remote()
    stuck = blocked.block.remote()
    queued = blocked.work.remote(99)  # behind the blocked call on the same actor
    # The loop, another actor and plain tasks all make progress meanwhile.
    assert aioray.get(other.work.remote(1), timeout=TIMEOUT) == 1
    assert aioray.get(on_loop.remote(), timeout=TIMEOUT) == "loop ok"
    assert aioray.get(aioray.put("x")) == "x"
    with pytest.raises(GetTimeoutError, match=r"after 0\.1 seconds"):
        aioray.get(queued, timeout=0.1)
    GATE.set()
    assert aioray.get([stuck, queued], timeout=TIMEOUT) == ["released", 99]


async def test_long_sync_method_does_not_stall_an_async_app(aray: Any) -> None:
    s = Serial.remote()
    stuck = s.block.remote()
    ticks = 0
    for _ in range(5):  # the adopted loop keeps running
        await asyncio.sleep(0)
        ticks += 1
    other = Serial.remote()
    assert await other.work.remote(3) == 3
    GATE.set()
    assert await stuck == "released"
    assert ticks == 5


# -- threaded actors -----------------------------------------------------------------------
@aioray.remote(max_concurrency=3)
class Threaded:
    def __init__(self) -> None:
        self.t = _Tracker()
        self.barrier = threading.Barrier(3)

    def meet(self, i: int) -> int:
        self.t.enter(i)
        try:
            self.barrier.wait(TIMEOUT)  # passes only if three calls run at once
        finally:
            self.t.leave()
        return i

    def peak(self) -> int:
        return self.t.peak


def test_threaded_actor_runs_up_to_max_concurrency_at_once(ray: Any) -> None:
    t = Threaded.remote()
    assert aioray.get([t.meet.remote(i) for i in range(9)], timeout=TIMEOUT) == list(range(9))
    assert aioray.get(t.peak.remote()) == 3


def test_max_concurrency_via_options(ray: Any) -> None:
    t = Threaded.options(max_concurrency=3).remote()
    assert aioray.get([t.meet.remote(i) for i in range(3)], timeout=TIMEOUT) == [0, 1, 2]


def test_threaded_actor_uses_several_threads(ray: Any) -> None:
    @aioray.remote(max_concurrency=2)
    class Idents:
        def __init__(self) -> None:
            self.barrier = threading.Barrier(2)

        def ident(self) -> int:
            self.barrier.wait(TIMEOUT)
            return threading.get_ident()

    a = Idents.remote()
    assert len(set(aioray.get([a.ident.remote(), a.ident.remote()], timeout=TIMEOUT))) == 2


# -- async actors --------------------------------------------------------------------------
@aioray.remote
class Rendezvous:
    """``arrive`` returns once ``n`` calls are inside it at the same time."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.active = 0
        self.peak = 0
        self.event = asyncio.Event()

    async def arrive(self, i: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active >= self.n:
            self.event.set()
        try:
            await asyncio.wait_for(self.event.wait(), TIMEOUT)
        finally:
            self.active -= 1
        return i

    async def get_peak(self) -> int:
        return self.peak


@pytest.mark.all_backends
def test_async_actor_default_concurrency_is_high(ray: Any) -> None:
    r = Rendezvous.remote(200)
    assert aioray.get([r.arrive.remote(i) for i in range(200)], timeout=TIMEOUT) == list(range(200))
    assert aioray.get(r.get_peak.remote()) == 200


def test_async_actor_max_concurrency_limits(ray: Any) -> None:
    @aioray.remote(max_concurrency=2)
    class Limited:
        def __init__(self) -> None:
            self.t = _Tracker()

        async def work(self, i: int) -> int:
            self.t.enter(i)
            for _ in range(3):
                await asyncio.sleep(0)  # yield: a third call could start here if allowed
            self.t.leave()
            return i

        async def peak(self) -> int:
            return self.t.peak

    a = Limited.remote()
    assert aioray.get([a.work.remote(i) for i in range(20)], timeout=TIMEOUT) == list(range(20))
    assert aioray.get(a.peak.remote()) == 2


def test_async_actor_with_max_concurrency_one_keeps_order(ray: Any) -> None:
    @aioray.remote(max_concurrency=1)
    class Ordered:
        def __init__(self) -> None:
            self.log: list[int] = []

        async def add(self, i: int) -> None:
            await asyncio.sleep(0)
            self.log.append(i)

        async def get_log(self) -> list[int]:
            return self.log

    o = Ordered.remote()
    for i in range(30):
        o.add.remote(i)
    assert aioray.get(o.get_log.remote(), timeout=TIMEOUT) == list(range(30))


def test_async_actor_methods_run_on_the_loop(ray: Any) -> None:
    @aioray.remote
    class Where:
        async def a(self) -> int:
            return threading.get_ident()

        def s(self) -> int:  # sync method of an async actor: also on the loop (as Ray)
            return threading.get_ident()

    w = Where.remote()
    rt = aioray._engine.runtime.current_runtime()
    assert aioray.get([w.a.remote(), w.s.remote()]) == [rt.loop_thread_id] * 2


@pytest.mark.all_backends
async def test_async_actor_from_async_app(aray: Any) -> None:
    r = Rendezvous.remote(10)
    assert await asyncio.gather(*[r.arrive.remote(i) for i in range(10)]) == list(range(10))


# -- concurrency groups --------------------------------------------------------------------
@aioray.remote(concurrency_groups={"io": 2, "compute": 1})
class Grouped:
    def __init__(self) -> None:
        self.io_barrier = threading.Barrier(2)
        self.t = {"io": _Tracker(), "compute": _Tracker(), "default": _Tracker()}

    @aioray.method(concurrency_group="io")
    def io(self, i: int) -> int:
        self.t["io"].enter(i)
        try:
            self.io_barrier.wait(TIMEOUT)  # two io calls at once
        finally:
            self.t["io"].leave()
        return i

    @aioray.method(concurrency_group="compute")
    def compute(self, i: int) -> int:
        self.t["compute"].enter(i)
        time.sleep(0.002)
        self.t["compute"].leave()
        return i

    def default(self) -> str:
        assert GATE.wait(TIMEOUT)
        return "default done"

    @aioray.method(concurrency_group="io")
    def release(self) -> None:
        GATE.set()

    def peaks(self) -> dict[str, int]:
        return {k: v.peak for k, v in self.t.items()}


def test_sync_concurrency_groups_have_own_limits(ray: Any) -> None:
    g = Grouped.remote()
    blocked = g.default.remote()  # the default group (limit 1) is busy...
    # ...while io runs two at once and compute one at a time.
    assert aioray.get([g.io.remote(i) for i in range(4)], timeout=TIMEOUT) == [0, 1, 2, 3]
    assert aioray.get([g.compute.remote(i) for i in range(5)], timeout=TIMEOUT) == list(range(5))
    g.release.remote()
    assert aioray.get(blocked, timeout=TIMEOUT) == "default done"
    peaks = aioray.get(g.peaks.remote())
    assert peaks["io"] == 2 and peaks["compute"] == 1


def test_per_call_concurrency_group_option(ray: Any) -> None:
    g = Grouped.remote()
    blocked = g.default.remote()
    # peaks() belongs to the busy default group; run it in "compute" instead.
    assert aioray.get(g.peaks.options(concurrency_group="compute").remote(),
                      timeout=TIMEOUT)["io"] == 0
    # and a method's declared group can be overridden for one call
    g.release.options(concurrency_group="compute").remote()
    assert aioray.get(blocked, timeout=TIMEOUT) == "default done"


def test_async_concurrency_groups(ray: Any) -> None:
    @aioray.remote(concurrency_groups={"io": 2, "compute": 4})
    class AsyncIOActor:
        def __init__(self) -> None:
            self.t = {"io": _Tracker(), "compute": _Tracker()}
            self.ev = {"io": asyncio.Event(), "compute": asyncio.Event()}
            self.need = {"io": 2, "compute": 4}

        async def _meet(self, group: str) -> str:
            t = self.t[group]
            t.enter()
            if t.active >= self.need[group]:
                self.ev[group].set()
            try:
                await asyncio.wait_for(self.ev[group].wait(), TIMEOUT)
                for _ in range(3):
                    await asyncio.sleep(0)
            finally:
                t.leave()
            return group

        @aioray.method(concurrency_group="io")
        async def f1(self) -> str:
            return await self._meet("io")

        @aioray.method(concurrency_group="compute")
        async def f2(self) -> str:
            return await self._meet("compute")

        async def f3(self) -> int:
            return 3

        async def peaks(self) -> dict[str, int]:
            return {k: v.peak for k, v in self.t.items()}

    a = AsyncIOActor.remote()
    refs = [a.f1.remote() for _ in range(6)] + [a.f2.remote() for _ in range(8)]
    refs.append(a.f3.options(concurrency_group="compute").remote())
    out = aioray.get(refs, timeout=TIMEOUT)
    assert out == ["io"] * 6 + ["compute"] * 8 + [3]
    assert aioray.get(a.peaks.remote()) == {"io": 2, "compute": 4}


def test_group_declared_in_options(ray: Any) -> None:
    @aioray.remote
    class Late:
        def f(self) -> int:
            return 1

    a = Late.options(concurrency_groups={"extra": 2}).remote()
    assert aioray.get(a.f.options(concurrency_group="extra").remote(), timeout=TIMEOUT) == 1


@pytest.mark.all_backends
def test_undeclared_group_on_method_is_a_clear_error(ray: Any) -> None:
    with pytest.raises(ValueError, match=r"'hello'.*not declared"):
        @aioray.remote(concurrency_groups={"io": 2})
        class Bad:
            @aioray.method(concurrency_group="hello")
            def f(self) -> None:
                pass


def test_undeclared_group_per_call_is_a_clear_error(ray: Any) -> None:
    g = Grouped.remote()
    with pytest.raises(ValueError, match=r"'nope'.*not declared.*compute"):
        aioray.get(g.compute.options(concurrency_group="nope").remote(1), timeout=TIMEOUT)
    assert aioray.get(g.compute.remote(1), timeout=TIMEOUT) == 1  # actor still fine


@pytest.mark.all_backends
@pytest.mark.parametrize("groups", [{"io": 0}, {"io": -2}, {"io": "x"}, {1: 2}, ["io"]])
def test_invalid_concurrency_groups(ray: Any, groups: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        aioray.remote(concurrency_groups=groups)(type("X", (), {"f": lambda self: 1}))


# -- cancel --------------------------------------------------------------------------------
def test_cancel_queued_sync_call(ray: Any) -> None:
    s = Serial.remote()
    stuck = s.block.remote()
    victim = s.work.remote(1)
    after = s.work.remote(2)
    aioray.cancel(victim)
    with pytest.raises(TaskCancelledError):
        aioray.get(victim, timeout=TIMEOUT)
    GATE.set()
    assert aioray.get([stuck, after], timeout=TIMEOUT) == ["released", 2]
    assert aioray.get(s.stats.remote())[1] == [2]  # the cancelled call never ran


@pytest.mark.all_backends
def test_cancel_running_async_call(ray: Any) -> None:
    @aioray.remote
    class Sleeper:
        def __init__(self) -> None:
            self.started = asyncio.Event()
            self.cancelled = False

        async def sleep(self) -> None:
            self.started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled = True
                raise

        async def wait_started(self) -> None:
            await asyncio.wait_for(self.started.wait(), TIMEOUT)

        async def was_cancelled(self) -> bool:
            return self.cancelled

    a = Sleeper.remote()
    ref = a.sleep.remote()
    aioray.get(a.wait_started.remote(), timeout=TIMEOUT)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=TIMEOUT)
    assert aioray.get(a.was_cancelled.remote(), timeout=TIMEOUT) is True  # actor alive


def test_cancel_running_sync_call_is_not_interrupted(ray: Any) -> None:
    @aioray.remote(max_concurrency=2)
    class Worker:
        def __init__(self) -> None:
            self.started = threading.Event()
            self.finished = False
            self.saw_cancel = False

        def run(self) -> str:
            self.started.set()
            assert GATE.wait(TIMEOUT)
            self.saw_cancel = aioray.get_runtime_context().is_canceled()
            self.finished = True
            return "done"

        def wait_started(self) -> None:
            assert self.started.wait(TIMEOUT)

        def state(self) -> tuple[bool, bool]:
            return self.finished, self.saw_cancel

    w = Worker.remote()
    ref = w.run.remote()
    aioray.get(w.wait_started.remote(), timeout=TIMEOUT)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=TIMEOUT)
    GATE.set()

    def finished() -> bool:
        return bool(aioray.get(w.state.remote(), timeout=TIMEOUT)[0])
    deadline = time.monotonic() + TIMEOUT
    while not finished():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # the method ran to completion and could see that it was cancelled
    assert aioray.get(w.state.remote()) == (True, True)


def test_cancel_force_on_actor_call_is_refused(ray: Any) -> None:
    s = Serial.remote()
    stuck = s.block.remote()
    with pytest.raises(ValueError, match="force"):
        aioray.cancel(stuck, force=True)
    GATE.set()
    assert aioray.get(stuck, timeout=TIMEOUT) == "released"


def test_cancel_finished_call_is_a_noop(ray: Any) -> None:
    s = Serial.remote()
    ref = s.work.remote(5)
    assert aioray.get(ref, timeout=TIMEOUT) == 5
    aioray.cancel(ref)
    assert aioray.get(ref) == 5


# -- max_pending_calls ---------------------------------------------------------------------
def test_max_pending_calls(ray: Any) -> None:
    s = Serial.options(max_pending_calls=3).remote()
    refs = [s.block.remote(), s.work.remote(1), s.work.remote(2)]
    with pytest.raises(aioray.exceptions.PendingCallsLimitExceeded, match="max_pending_calls"):
        s.work.remote(3)
    GATE.set()
    assert aioray.get(refs, timeout=TIMEOUT) == ["released", 1, 2]
    # calls that finished no longer count
    assert aioray.get([s.work.remote(i) for i in range(3)], timeout=TIMEOUT) == [0, 1, 2]


def test_max_pending_calls_unlimited_by_default(ray: Any) -> None:
    s = Serial.options(max_pending_calls=-1).remote()
    refs = [s.block.remote()] + [s.work.remote(i) for i in range(100)]
    GATE.set()
    assert len(aioray.get(refs, timeout=TIMEOUT)) == 101


@aioray.remote
def flood(s: Any) -> str:
    refs = [s.work.remote(i) for i in range(5)]
    try:
        aioray.get(refs[-1])  # the first is queued behind the blocked call
    except aioray.exceptions.PendingCallsLimitExceeded:
        return "limited"
    return "not limited"


def test_max_pending_calls_from_a_worker_process(ray: Any) -> None:
    s = Serial.options(max_pending_calls=2).remote()
    stuck = s.block.remote()
    assert aioray.get(flood.remote(s), timeout=TIMEOUT) == "limited"
    GATE.set()
    assert aioray.get(stuck, timeout=TIMEOUT) == "released"


def test_threaded_actor_reaches_its_limit_after_sequential_use(ray: Any) -> None:
    t = Threaded.remote()
    # one call at a time first (one thread suffices)...
    for _ in range(20):
        assert aioray.get(t.peak.remote(), timeout=TIMEOUT) == 0
    # ...then three calls that can only finish together
    assert aioray.get([t.meet.remote(i) for i in range(3)], timeout=TIMEOUT) == [0, 1, 2]


def test_cancel_call_waiting_for_its_argument_frees_the_calls_behind(ray: Any) -> None:
    @aioray.remote
    async def never() -> int:
        while not GATE.is_set():
            await asyncio.sleep(0.005)
        return 0

    s = Serial.remote()
    stuck = s.work.remote(never.remote())
    behind = s.work.remote(1)
    aioray.cancel(stuck)
    assert aioray.get(behind, timeout=TIMEOUT) == 1
    with pytest.raises(TaskCancelledError):
        aioray.get(stuck, timeout=TIMEOUT)
    GATE.set()


def test_init_and_methods_share_the_actor_thread(ray: Any) -> None:
    @aioray.remote
    class Local:
        def __init__(self) -> None:
            self.local = threading.local()
            self.local.value = "set in __init__"

        def read(self) -> str:
            return str(getattr(self.local, "value", "missing"))

    a = Local.remote()
    assert aioray.get([a.read.remote() for _ in range(3)], timeout=TIMEOUT) == \
        ["set in __init__"] * 3


# -- order is per submitter ------------------------------------------------------------------
@aioray.remote
def through_the_actor(actor: Any, x: int) -> int:
    """A process task that needs the actor itself to produce its value."""
    return int(aioray.get(actor.work.remote(x)))


@aioray.remote
class AsyncSerial:
    def __init__(self) -> None:
        self.log: list[int] = []

    async def work(self, i: int) -> int:
        self.log.append(i)
        return i

    async def get_log(self) -> list[int]:
        return self.log


@pytest.mark.parametrize("cls", [Serial, AsyncSerial.options(max_concurrency=1)],
                         ids=["sync", "async-limit-1"])
def test_other_submitters_pass_a_call_waiting_for_its_argument(ray: Any, cls: Any) -> None:
    # The driver's call waits for a value that needs a *task's* call to the same actor. In
    # Ray that task is another submitter, so its call is not stuck behind the driver's.
    a = cls.remote()
    first = a.work.remote(through_the_actor.remote(a, 7))
    assert aioray.get(first, timeout=TIMEOUT) == 7


def test_one_submitter_keeps_order_while_others_pass(ray: Any) -> None:
    @aioray.remote
    async def gated(v: int) -> int:
        while not GATE.is_set():
            await asyncio.sleep(0.005)
        return v

    @aioray.remote
    async def other_submitter(a: Any) -> int:
        return int(await a.work.remote(100))

    a = AsyncSerial.options(max_concurrency=1).remote()
    mine = [a.work.remote(gated.remote(0)), a.work.remote(1), a.work.remote(2)]
    assert aioray.get(other_submitter.remote(a), timeout=TIMEOUT) == 100  # not held back
    assert aioray.wait(mine, num_returns=3, timeout=0)[0] == []  # mine still wait, in order
    GATE.set()
    assert aioray.get(mine, timeout=TIMEOUT) == [0, 1, 2]
    assert aioray.get(a.get_log.remote()) == [100, 0, 1, 2]
