"""Issue 20: what Ray does at the edges of the API, and the loop watchdog.

* ``get`` of a list raises the first failure as soon as it is known; ``next_ready()`` is False
  once the stream ended; a task that catches the cancel's KeyboardInterrupt and returns gives
  its value.
* Remote actor classes keep their identity (classes made in a loop), expose class attributes,
  static and class methods, and refuse subclassing as Ray does.
* ``__ray_shutdown__`` runs once on every graceful end, never on ``kill``.
* Validations with Ray's error classes.
* The watchdog names what blocks the loop, and the program still finishes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from xproc import FileLog, wait_until

import aioray
from aioray._engine.runtime import current_runtime
from aioray.actor import ActorClassInheritanceException, exit_actor
from aioray.exceptions import GetTimeoutError
from aioray.util import placement_group
from aioray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEADLINE = 30.0
EVENTS = FileLog()  # what actor code saw (in the driver or in an actor's process)


@pytest.fixture(autouse=True)
def _clear_events() -> Iterator[None]:
    EVENTS.clear()
    yield
    EVENTS.clear()




def _touch(path: str) -> None:
    with open(path, "w") as f:
        f.write("x")


# -- get of a list: the first failure at once ------------------------------------------------
@aioray.remote
async def _never() -> int:
    await asyncio.Event().wait()  # resolves only at shutdown
    return 0


@aioray.remote
async def _fails_soon() -> int:
    await asyncio.sleep(0.05)  # fails after get has started waiting
    raise ValueError("boom")


@aioray.remote
async def _fails_now() -> int:
    raise ValueError("boom")


@pytest.mark.parametrize("failing", [_fails_now, _fails_soon], ids=["failed", "fails-later"])
def test_get_list_raises_first_failure_without_waiting_for_the_rest(
        ray: Any, failing: Any) -> None:
    pending, bad = _never.remote(), failing.remote()
    if failing is _fails_now:
        with pytest.raises(ValueError):
            aioray.get(bad, timeout=DEADLINE)
    with pytest.raises(ValueError, match="boom"):  # not GetTimeoutError
        aioray.get([pending, bad], timeout=DEADLINE)
    with pytest.raises(GetTimeoutError):  # the pending ref itself still waits
        aioray.get([pending], timeout=0.01)


async def test_get_async_list_raises_first_failure(aray: Any) -> None:
    pending, bad = _never.remote(), _fails_soon.remote()
    with pytest.raises(ValueError, match="boom"):
        await aioray.get_async([pending, bad], timeout=DEADLINE)


@aioray.remote
def _get_both_in_worker(refs: list[Any]) -> str:
    try:
        aioray.get(refs, timeout=DEADLINE)
    except ValueError:
        return "ValueError"
    except Exception as e:
        return type(e).__name__
    return "no error"


def test_get_list_fails_fast_in_a_worker_process(ray: Any) -> None:
    refs = [_never.remote(), _fails_soon.remote()]
    assert aioray.get(_get_both_in_worker.remote(refs), timeout=DEADLINE * 2) == "ValueError"


# -- next_ready() after the end --------------------------------------------------------------
@aioray.remote
def _two() -> Iterator[int]:
    yield 1
    yield 2


@pytest.mark.all_backends
def test_next_ready_is_false_once_the_stream_ended(ray: Any) -> None:
    gen = _two.remote()
    aioray.get(gen.completed(), timeout=DEADLINE)
    assert gen.next_ready()  # items are there to take
    assert [aioray.get(r) for r in gen] == [1, 2]
    assert gen.is_finished()
    assert not gen.next_ready()  # as Ray: next(gen) would raise StopIteration
    ready, _ = aioray.wait([gen], timeout=0)  # wait() still reports the ended stream
    assert ready == [gen]


@aioray.remote
def _next_ready_in_worker() -> tuple[bool, bool, list[int]]:
    gen = _two.remote()
    aioray.get(gen.completed())
    before = gen.next_ready()
    values = [aioray.get(r) for r in gen]
    return before, gen.next_ready(), values


def test_next_ready_after_the_end_in_a_worker_process(ray: Any) -> None:
    assert aioray.get(_next_ready_in_worker.remote(), timeout=DEADLINE * 2) == (
        True, False, [1, 2])


# -- a cancelled task that catches the interrupt and returns ---------------------------------
@aioray.remote(max_retries=0)
def _catches_cancel(started: str) -> str:
    _touch(started)
    try:
        while True:
            time.sleep(0.01)
    except KeyboardInterrupt:
        return "caught"


def test_cancelled_task_that_returns_gives_its_value(ray: Any, tmp_path: Path) -> None:
    started = tmp_path / "started"
    ref = _catches_cancel.remote(str(started))
    wait_until(started.exists, "the task to start")
    aioray.cancel(ref)
    assert aioray.get(ref, timeout=DEADLINE) == "caught"  # as Ray: the task's own value


# -- actor classes keep their identity -------------------------------------------------------
@pytest.mark.all_backends
def test_actor_classes_made_in_a_loop_keep_their_identity(ray: Any) -> None:
    classes = []
    for i in range(10):
        @aioray.remote
        class Numbered:
            index = i

            def get(self) -> int:
                return self.index

        classes.append(Numbered)
    actors = [c.remote() for c in classes]
    assert aioray.get([a.get.remote() for a in actors], timeout=DEADLINE) == list(range(10))


@pytest.mark.all_backends
def test_actor_classes_with_equal_names_do_not_collide(ray: Any) -> None:
    def make(value: str) -> Any:
        @aioray.remote
        class Same:
            def who(self) -> str:
                return value
        return Same

    a, b = make("a"), make("b")
    assert a.__qualname__ == b.__qualname__
    assert aioray.get([a.remote().who.remote(), b.remote().who.remote()],
                      timeout=DEADLINE) == ["a", "b"]


@aioray.remote
class _WithClassLevel:
    LIMIT = 3

    @staticmethod
    def helper(x: int) -> int:
        return x * 2

    @classmethod
    def limit(cls) -> int:
        return cls.LIMIT

    def run(self) -> int:
        return self.helper(self.LIMIT)


@pytest.mark.all_backends
def test_class_attributes_static_and_class_methods_on_the_remote_class(ray: Any) -> None:
    assert _WithClassLevel.LIMIT == 3
    assert _WithClassLevel.helper(4) == 8
    assert _WithClassLevel.limit() == 3
    assert _WithClassLevel.__ray_actor_class__.LIMIT == 3
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _WithClassLevel.missing  # noqa: B018
    assert aioray.get(_WithClassLevel.remote().run.remote(), timeout=DEADLINE) == 6


@pytest.mark.all_backends
def test_subclassing_a_remote_class_is_refused_as_in_ray(ray: Any) -> None:
    with pytest.raises(ActorClassInheritanceException, match="__ray_actor_class__"):
        class Sub(_WithClassLevel):  # type: ignore[misc, valid-type]
            pass
    assert issubclass(ActorClassInheritanceException, TypeError)

    class Plain(_WithClassLevel.__ray_actor_class__):  # type: ignore[misc, name-defined]
        LIMIT = 5

    assert aioray.get(aioray.remote(Plain).remote().run.remote(), timeout=DEADLINE) == 10


# -- __ray_shutdown__ ------------------------------------------------------------------------
@aioray.remote
class _Cleans:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def ping(self) -> str:
        return self.tag

    def leave(self) -> None:
        exit_actor()

    def __ray_shutdown__(self) -> None:
        EVENTS.append(self.tag)


@aioray.remote
class _AsyncCleans:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def ping(self) -> str:
        return self.tag

    async def leave(self) -> None:
        exit_actor()

    def __ray_shutdown__(self) -> None:
        EVENTS.append(self.tag)


@pytest.mark.parametrize("cls", [_Cleans, _AsyncCleans], ids=["sync", "async"])
@pytest.mark.parametrize("end", ["terminate", "exit_actor", "out_of_scope", "shutdown"])
def test_ray_shutdown_runs_once_on_a_graceful_end(ray: Any, cls: Any, end: str) -> None:
    actor = cls.remote(end)
    assert aioray.get(actor.ping.remote(), timeout=DEADLINE) == end
    if end == "terminate":
        actor.__ray_terminate__.remote()
    elif end == "exit_actor":
        actor.leave.remote()
    elif end == "out_of_scope":
        del actor
    else:
        aioray.shutdown()
    wait_until(lambda: EVENTS == [end], f"__ray_shutdown__ after {end}")
    aioray.shutdown()  # a later shutdown does not call it again
    assert EVENTS == [end]


@pytest.mark.parametrize("cls", [_Cleans, _AsyncCleans], ids=["sync", "async"])
def test_ray_shutdown_not_called_on_kill(ray: Any, cls: Any) -> None:
    actor = cls.remote("killed")
    assert aioray.get(actor.ping.remote(), timeout=DEADLINE) == "killed"
    aioray.kill(actor)
    with pytest.raises(aioray.exceptions.ActorDiedError):
        aioray.get(actor.ping.remote(), timeout=DEADLINE)
    aioray.shutdown()
    assert EVENTS == []


def test_ray_shutdown_runs_after_the_queued_calls(ray: Any) -> None:
    @aioray.remote
    class Slowish:
        def work(self, i: int) -> int:
            EVENTS.append(f"work{i}")
            return i

        def __ray_shutdown__(self) -> None:
            EVENTS.append("shutdown")

    actor = Slowish.remote()
    refs = [actor.work.remote(i) for i in range(3)]
    actor.__ray_terminate__.remote()
    assert aioray.get(refs, timeout=DEADLINE) == [0, 1, 2]
    wait_until(lambda: "shutdown" in EVENTS, "__ray_shutdown__")
    assert EVENTS == ["work0", "work1", "work2", "shutdown"]


@aioray.remote
class Broken:
    def ping(self) -> int:
        return 1

    def __ray_shutdown__(self) -> None:
        raise RuntimeError("cleanup failed")


def test_ray_shutdown_errors_are_logged(ray: Any, caplog: pytest.LogCaptureFixture) -> None:
    # An in-driver (thread) actor: its hook runs in the driver, so aioray's logger has it.
    actor = Broken.options(executor="thread").remote()
    aioray.get(actor.ping.remote(), timeout=DEADLINE)
    with caplog.at_level(logging.ERROR, logger="aioray"):
        actor.__ray_terminate__.remote()
        wait_until(lambda: "cleanup failed" in caplog.text, "the logged error")
    assert "Broken.__ray_shutdown__" in caplog.text


def test_ray_shutdown_errors_are_reported_by_a_process_actor(
        ray: Any, capfd: pytest.CaptureFixture[str]) -> None:
    actor = Broken.remote()
    aioray.get(actor.ping.remote(), timeout=DEADLINE)
    actor.__ray_terminate__.remote()
    # The actor's process writes the report to the stdout / stderr it inherited.
    seen: list[str] = []

    def reported() -> bool:
        out, err = capfd.readouterr()
        seen.append(out + err)
        text = "".join(seen)
        return "cleanup failed" in text and "Broken.__ray_shutdown__" in text

    wait_until(reported, "the reported error")


# -- validations -----------------------------------------------------------------------------
def test_namespace_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="namespace must be None or a string"):
        aioray.init(namespace=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid namespace"):
        aioray.init(namespace="")
    aioray.init(address="local", num_cpus=1)
    with pytest.raises(TypeError, match="namespace must be None or a string"):
        _Cleans.options(name="n", namespace=3)
    with pytest.raises(TypeError, match="namespace must be None or a string"):
        aioray.get_actor("n", namespace=3)  # type: ignore[arg-type]


@pytest.mark.all_backends
def test_remote_with_empty_brackets_is_refused() -> None:
    with pytest.raises(AssertionError, match="no arguments and no parentheses"):
        aioray.remote()


def test_actor_that_fits_no_bundle_is_refused_at_remote(ray: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(DEADLINE)
    strategy = PlacementGroupSchedulingStrategy(pg)
    with pytest.raises(ValueError, match="cannot fit into any bundle"):
        _Cleans.options(num_cpus=2, scheduling_strategy=strategy).remote("big")
    with pytest.raises(ValueError, match="cannot fit into bundle 1"):
        _Cleans.options(resources={"GPU_SLOT": 1}, scheduling_strategy=(
            PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1))).remote("x")
    fits = _Cleans.options(num_cpus=1, scheduling_strategy=strategy).remote("fits")
    assert aioray.get(fits.ping.remote(), timeout=DEADLINE) == "fits"


def test_remote_function_capturing_over_100_mb_is_refused(ray: Any) -> None:
    big = b"x" * (101 * 1024 * 1024)

    @aioray.remote
    def uses_big() -> int:
        return len(big)

    with pytest.raises(ValueError, match=r"too large.*aioray.put\(\)"):
        uses_big.remote()
    small = aioray.put(b"x" * 10)

    @aioray.remote
    def uses_ref(data: bytes) -> int:
        return len(data)

    assert aioray.get(uses_ref.remote(small), timeout=DEADLINE) == 10


# -- the loop watchdog -----------------------------------------------------------------------
@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A runtime whose watchdog fires after 0.2 s (the default is 1 s)."""
    aioray.shutdown()
    monkeypatch.setenv("AIORAY_LOOP_WATCHDOG", "0.2")
    aioray.init(address="local", num_cpus=2)
    yield
    aioray.shutdown()


def _stall_reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "aioray" and "event loop has not run" in r.getMessage()]


def test_watchdog_names_a_blocking_async_actor_method(
        watched: None, caplog: pytest.LogCaptureFixture) -> None:
    @aioray.remote
    class Sleepy:
        async def nap(self) -> str:
            time.sleep(0.8)  # blocks the one loop: the bug the watchdog reports
            return "woke"

        async def ping(self) -> str:
            return "pong"

    actor = Sleepy.remote()
    with caplog.at_level(logging.WARNING, logger="aioray"):
        assert aioray.get(actor.nap.remote(), timeout=DEADLINE) == "woke"
        assert aioray.get(actor.ping.remote(), timeout=DEADLINE) == "pong"  # still finishes
        wait_until(lambda: bool(_stall_reports(caplog)), "the watchdog's warning")
    reports = _stall_reports(caplog)
    assert len(reports) == 1, reports  # one warning per stall
    text = reports[0]
    assert "actor Sleepy" in text and "method 'nap'" in text
    assert "time.sleep(0.8)" in text and __file__ in text
    assert "await asyncio.sleep" in text and 'executor="process"' in text


def test_watchdog_names_an_async_generator_that_never_awaits(
        watched: None, caplog: pytest.LogCaptureFixture) -> None:
    @aioray.remote
    async def greedy() -> AsyncIterator[int]:
        for i in range(4):
            time.sleep(0.2)  # never awaits: the loop never turns until it ends
            yield i

    with caplog.at_level(logging.WARNING, logger="aioray"):
        assert [aioray.get(r, timeout=DEADLINE) for r in greedy.remote()] == [0, 1, 2, 3]
        wait_until(lambda: bool(_stall_reports(caplog)), "the watchdog's warning")
    text = _stall_reports(caplog)[0]
    assert "task" in text and "greedy" in text and "time.sleep(0.2)" in text


def test_watchdog_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    aioray.shutdown()
    monkeypatch.setenv("AIORAY_LOOP_WATCHDOG", "0")
    aioray.init(address="local", num_cpus=1)
    rt = current_runtime()
    assert rt is not None and rt.watchdog is None


def test_watchdog_stops_with_the_runtime(ray: Any) -> None:
    rt = current_runtime()
    assert rt is not None and rt.watchdog is not None
    thread = rt.watchdog._thread
    assert thread.is_alive()
    aioray.shutdown()
    thread.join(DEADLINE)
    assert not thread.is_alive()
