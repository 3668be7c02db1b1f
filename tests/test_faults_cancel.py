"""``cancel(ref, force=False, recursive=True)`` on every kind of task, at every stage.

Side effects go to files (worker processes) or module state (code on the driver's loop), so
"never ran" and "saw the interrupt" are proven, not assumed."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import psutil
import pytest
from xproc import FileLog, wait_until

import aioray
from aioray._engine import runtime as _runtime
from aioray.exceptions import TaskCancelledError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

EVENTS = FileLog()  # what the code under test saw (in the driver or an actor's process)


def _wait_file(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def _touch(path: str, text: str = "") -> None:
    with open(path, "w") as f:
        f.write(text)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_pids() -> set[int]:
    rt = _runtime.current_runtime()
    assert rt is not None
    return {w.pid for w in rt.workers.workers}


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    EVENTS.clear()


@aioray.remote
def blocker(go: str, value: int = 0) -> int:
    _wait_file(go)
    return value


@aioray.remote
def side_effect(path: str, *deps: object) -> str:
    _touch(path)
    return "ran"


@aioray.remote
def interruptible(started: str, interrupted: str, finished: str = "") -> str:
    """Sleeps until interrupted (records it) or until ``finished`` exists."""
    _touch(started, str(os.getpid()))
    try:
        while not (finished and os.path.exists(finished)):
            time.sleep(0.01)
    except KeyboardInterrupt:
        _touch(interrupted)
        raise
    return "finished"


@aioray.remote
def square(x: int) -> int:
    return x * x


@aioray.remote
def rendezvous(mine: str, other: str) -> None:
    """Two of these hold both CPUs at once: every earlier task on the workers has ended."""
    _touch(mine)
    _wait_file(other)


# -- before it runs ------------------------------------------------------------------------
def test_cancel_queued_task_never_runs(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    blockers = [blocker.remote(go, i) for i in range(2)]  # both CPUs busy
    mark = tmp_path / "ran"
    queued = side_effect.options(max_retries=3).remote(str(mark))
    after = square.remote(4)  # queued behind the cancelled one
    aioray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        aioray.get(queued, timeout=60)  # resolves while the blockers still hold the CPUs
    _touch(go)
    assert aioray.get(blockers, timeout=60) == [0, 1]
    assert aioray.get(after, timeout=60) == 16
    assert not mark.exists()


def test_cancel_task_waiting_for_arguments(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    dep = blocker.remote(go, 1)
    mark = tmp_path / "ran"
    waiting = side_effect.remote(str(mark), dep)
    downstream = side_effect.remote(str(tmp_path / "down"), waiting)
    aioray.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        aioray.get(waiting, timeout=60)
    with pytest.raises(TaskCancelledError):  # the cancellation flows to dependents
        aioray.get(downstream, timeout=60)
    _touch(go)
    assert aioray.get(dep, timeout=60) == 1
    assert aioray.get(square.remote(2), timeout=60) == 4
    assert not mark.exists()
    assert not (tmp_path / "down").exists()


def test_cancel_finished_task_is_a_noop(ray: object) -> None:
    ref = square.remote(5)
    assert aioray.get(ref, timeout=60) == 25
    aioray.cancel(ref)
    aioray.cancel(ref, force=True)
    assert aioray.get(ref, timeout=60) == 25
    assert aioray.get(square.remote(6), timeout=60) == 36


def test_cancel_rejects_non_refs(ray: object) -> None:
    with pytest.raises(TypeError):
        aioray.cancel("not a ref")  # type: ignore[arg-type]


def test_cancel_twice_is_harmless(ray: object, tmp_path: Path) -> None:
    ref = interruptible.remote(str(tmp_path / "s"), str(tmp_path / "i"))
    _wait_file(str(tmp_path / "s"))
    aioray.cancel(ref)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)


# -- while it runs -------------------------------------------------------------------------
def test_cancel_running_sync_task_interrupts_it(ray: object, tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"
    ref = interruptible.remote(str(started), str(interrupted))
    wait_until(lambda: started.exists() and started.read_text() != "")
    pid = int(started.read_text())
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(interrupted.exists, what="KeyboardInterrupt seen by the task")
    # A polite cancel keeps the worker: it goes back to the pool.
    assert _alive(pid) and pid in _worker_pids()
    assert aioray.get([square.remote(i) for i in range(4)], timeout=60) == [0, 1, 4, 9]


def test_cancel_arriving_before_the_worker_starts_the_task(ray: object, tmp_path: Path) -> None:
    # Cancel right after submit, many times: whichever stage the cancel lands in (queued,
    # worker acquired, message in the worker's inbox, running), the body never completes.
    marks = [tmp_path / f"m{i}" for i in range(20)]

    @aioray.remote
    def slow_side_effect(path: str) -> None:
        time.sleep(0.05)
        _touch(path)

    refs = [slow_side_effect.remote(str(m)) for m in marks]
    for r in refs:
        aioray.cancel(r)
    for r in refs:
        with pytest.raises(TaskCancelledError):
            aioray.get(r, timeout=60)
    # Both workers (num_cpus=2) hold a rendezvous task at once only after every earlier
    # task on them has ended, one way or the other.
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    aioray.get([rendezvous.remote(a, b), rendezvous.remote(b, a)], timeout=60)
    assert not any(m.exists() for m in marks)


def _slow_restore() -> str:
    time.sleep(0.5)
    return "restored"


class _SlowToUnpickle:
    """Keeps a worker's main thread busy loading the function that holds it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_slow_restore, ())


def test_cancel_while_task_waits_in_the_workers_inbox(ray: object, tmp_path: Path) -> None:
    aioray.get([square.remote(i) for i in range(2)], timeout=60)  # warm workers
    slow = _SlowToUnpickle()
    mark = tmp_path / "ran"

    @aioray.remote
    def body(path: str) -> object:
        _touch(path)
        return slow

    ref = body.remote(str(mark))
    rt = _runtime.current_runtime()
    assert rt is not None
    task_id = ref.binary()[:24]
    # The task was sent to a worker that is still loading the function (0.5 s).
    wait_until(lambda: getattr(rt.tasks.tasks.get(task_id), "worker", None) is not None)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    aioray.get([rendezvous.remote(a, b), rendezvous.remote(b, a)], timeout=60)
    assert not mark.exists()


def test_force_cancel_kills_and_replaces_worker(ray: object, tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"
    ref = interruptible.options(max_retries=3).remote(str(started), str(interrupted))
    wait_until(lambda: started.exists() and started.read_text() != "")
    pid = int(started.read_text())
    aioray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(lambda: not _alive(pid), what="worker killed")
    wait_until(lambda: pid not in _worker_pids(), what="worker dropped from the pool")
    assert aioray.get([square.remote(i) for i in range(4)], timeout=60) == [0, 1, 4, 9]
    assert not interrupted.exists()  # killed, not interrupted
    assert started.read_text() == str(pid)  # cancelled tasks are not retried


def test_cancel_running_async_task_raises_cancelled_error_inside(ray: object) -> None:
    @aioray.remote
    async def waiter() -> str:
        EVENTS.append("started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            EVENTS.append("cancelled")
            raise
        return "done"

    ref = waiter.remote()
    wait_until(lambda: "started" in EVENTS)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(lambda: "cancelled" in EVENTS, what="CancelledError inside the coroutine")


def test_cancel_running_thread_task(ray: object) -> None:
    release = threading.Event()

    @aioray.remote(executor="thread")
    def spin() -> str:
        EVENTS.append("started")
        try:
            while not release.is_set():
                time.sleep(0.01)
        except BaseException as e:
            EVENTS.append(f"interrupted:{type(e).__name__}")
            raise
        return "done"

    ref = spin.remote()
    wait_until(lambda: "started" in EVENTS)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(lambda: any(e.startswith("interrupted") for e in EVENTS))
    release.set()


def test_cancelled_task_is_not_retried(ray: object, tmp_path: Path) -> None:
    @aioray.remote(max_retries=5, retry_exceptions=True)
    def count_and_wait(counter: str, started: str) -> None:
        with open(counter, "a") as f:
            f.write("x")
        _touch(started)
        while True:
            time.sleep(0.01)

    counter, started = tmp_path / "c", tmp_path / "s"
    ref = count_and_wait.remote(str(counter), str(started))
    _wait_file(str(started))
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    aioray.get(square.remote(1), timeout=60)
    assert counter.read_text() == "x"


# -- generators ----------------------------------------------------------------------------
@aioray.remote
def counting_gen(started: str, interrupted: str):  # type: ignore[no-untyped-def]
    _touch(started)
    try:
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.01)
    except KeyboardInterrupt:
        _touch(interrupted)
        raise


def _drain_after_cancel(gen: aioray.ObjectRefGenerator[int]) -> None:
    """Every remaining ref resolves; the stream ends with TaskCancelledError."""
    errors = 0
    for ref in gen:  # terminates
        try:
            aioray.get(ref, timeout=60)
        except TaskCancelledError:
            errors += 1
    assert errors == 1
    with pytest.raises(TaskCancelledError):
        aioray.get(gen.completed(), timeout=60)


def test_cancel_streaming_generator_in_worker(ray: object, tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"
    gen = counting_gen.remote(str(started), str(interrupted))
    assert [aioray.get(next(gen), timeout=60) for _ in range(3)] == [0, 1, 2]
    aioray.cancel(gen)
    _drain_after_cancel(gen)
    wait_until(interrupted.exists, what="generator interrupted in the worker")


def test_cancel_async_generator_task(ray: object) -> None:
    @aioray.remote
    async def agen():  # type: ignore[no-untyped-def]
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            EVENTS.append("cancelled")
            raise

    gen = agen.remote()
    assert aioray.get(next(gen), timeout=60) == 0
    aioray.cancel(gen)
    _drain_after_cancel(gen)
    wait_until(lambda: "cancelled" in EVENTS)


def test_cancel_generator_by_one_of_its_refs(ray: object, tmp_path: Path) -> None:
    gen = counting_gen.remote(str(tmp_path / "s"), str(tmp_path / "i"))
    first = next(gen)
    assert aioray.get(first, timeout=60) == 0
    aioray.cancel(first)  # any ref of the task names the task
    _drain_after_cancel(gen)


# -- actors --------------------------------------------------------------------------------
@aioray.remote
class AsyncActor:
    async def wait_forever(self) -> str:
        EVENTS.append("started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            EVENTS.append("cancelled")
            raise
        return "done"

    async def ping(self) -> str:
        return "pong"


@aioray.remote
class SyncActor:
    def __init__(self) -> None:
        self.release = threading.Event()

    def poll_cancel(self) -> str:
        EVENTS.append("started")
        ctx = aioray.get_runtime_context()
        while not ctx.is_canceled():
            time.sleep(0.01)
        EVENTS.append("saw cancel flag")
        return "stopped early"

    def record(self, tag: str) -> str:
        EVENTS.append(tag)
        return tag


def test_cancel_running_async_actor_method(ray: object) -> None:
    a = AsyncActor.remote()
    ref = a.wait_forever.remote()
    wait_until(lambda: "started" in EVENTS)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(lambda: "cancelled" in EVENTS)
    assert aioray.get(a.ping.remote(), timeout=60) == "pong"  # the actor lives on


def test_cancel_sync_actor_method_sets_flag_not_interrupt(ray: object) -> None:
    # Ray: a running method of a sync (or threaded) actor is not interrupted, since the actor
    # holds state; it can poll get_runtime_context().is_canceled(). aioray does the same.
    a = SyncActor.remote()
    running = a.poll_cancel.remote()
    queued = a.record.remote("queued call ran")
    wait_until(lambda: "started" in EVENTS)
    aioray.cancel(queued)  # still queued behind poll_cancel: never runs
    aioray.cancel(running)
    for ref in (running, queued):
        with pytest.raises(TaskCancelledError):
            aioray.get(ref, timeout=60)
    wait_until(lambda: "saw cancel flag" in EVENTS)
    assert aioray.get(a.record.remote("after"), timeout=60) == "after"
    assert "queued call ran" not in EVENTS


# -- recursive -----------------------------------------------------------------------------
@aioray.remote(num_cpus=0)
def parent_of(started: str, interrupted: str, finished: str) -> str:
    child = interruptible.options(num_cpus=0).remote(started, interrupted, finished)
    return aioray.get(child)  # type: ignore[no-any-return]


def test_recursive_cancel_reaches_child_submitted_from_worker(ray: object,
                                                              tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"
    ref = parent_of.remote(str(started), str(interrupted), str(tmp_path / "never"))
    wait_until(lambda: started.exists() and started.read_text() != "")
    aioray.cancel(ref)  # recursive=True by default
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(interrupted.exists, what="child interrupted")


def test_non_recursive_cancel_spares_child(ray: object, tmp_path: Path) -> None:
    started, interrupted, finished = tmp_path / "s", tmp_path / "i", tmp_path / "f"
    done = tmp_path / "done"

    @aioray.remote(num_cpus=0)
    def parent(started: str, interrupted: str, finished: str, done: str) -> None:
        child = interruptible.options(num_cpus=0).remote(started, interrupted, finished)
        try:
            aioray.get(child)
        finally:
            # The child's result still arrives (it was spared) even though we were cancelled.
            _touch(done, aioray.get(child))

    ref = parent.remote(str(started), str(interrupted), str(finished), str(done))
    wait_until(lambda: started.exists() and started.read_text() != "")
    aioray.cancel(ref, recursive=False)
    # As in Ray, the parent's ref waits for its outcome: its finally block waits for the child.
    _touch(str(finished))
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(done.exists, what="child finished")
    assert done.read_text() == "finished"
    assert not interrupted.exists()


def test_recursive_cancel_of_async_parent_and_grandchildren(ray: object,
                                                            tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"

    @aioray.remote
    async def mid() -> str:
        return await parent_of.remote(str(started), str(interrupted), str(tmp_path / "never"))

    @aioray.remote
    async def top() -> str:
        return await mid.remote()

    ref = top.remote()
    wait_until(lambda: started.exists() and started.read_text() != "")
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(interrupted.exists, what="grandchild's child interrupted")


def test_cancel_from_inside_a_worker(ray: object, tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"

    @aioray.remote(num_cpus=0)
    def canceller(started: str, interrupted: str) -> str:
        ref = interruptible.options(num_cpus=0).remote(started, interrupted)
        _wait_file(started)
        aioray.cancel(ref)
        try:
            aioray.get(ref)
        except TaskCancelledError:
            return "cancelled"
        return "not cancelled"

    assert aioray.get(canceller.remote(str(started), str(interrupted)), timeout=60) == (
        "cancelled")
    wait_until(interrupted.exists)


# -- async model ---------------------------------------------------------------------------
async def test_cancel_from_async_code(aray: object, tmp_path: Path) -> None:
    started, interrupted = tmp_path / "s", tmp_path / "i"
    ref = interruptible.remote(str(started), str(interrupted))
    while not (started.exists() and started.read_text()):
        await asyncio.sleep(0.01)
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        await ref
    while not interrupted.exists():
        await asyncio.sleep(0.01)
    assert await square.remote(3) == 9
