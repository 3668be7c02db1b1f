"""Worker crashes are contained: the dead worker's task fails (or retries), everything else in
flight finishes normally and is not charged a retry, the pool replaces the worker, and the
runtime keeps serving. A hanging worker is stopped with ``cancel(force=True)`` and replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import psutil
import pytest
from xproc import wait_until

import aioray
from aioray._engine import runtime as _runtime
from aioray.exceptions import GetTimeoutError, TaskCancelledError, WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _attempt(path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)
    with open(path) as f:
        return f.read().count("x")


def _attempts(path: Path) -> int:
    return path.read_text().count("x") if path.exists() else 0


def _wait_file(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def _worker_pids() -> set[int]:
    rt = _runtime.current_runtime()
    assert rt is not None
    return {w.pid for w in rt.workers.workers}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@aioray.remote(num_cpus=0)
def victim(started: str, go: str, how: str = "sigkill") -> None:
    """Starts, waits for the go signal, then dies."""
    open(started, "w").close()
    _wait_file(go)
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


@aioray.remote(num_cpus=0)
def bystander(counter: str, started: str, go: str, value: int) -> tuple[int, int]:
    """Runs alongside the victim, finishes after it died."""
    _attempt(counter)
    open(started, "w").close()
    _wait_file(go)
    time.sleep(0.2)  # outlive the victim's crash
    return value, os.getpid()


@aioray.remote(num_cpus=0, executor="thread")
def thread_bystander(started: str, go: str) -> str:
    open(started, "w").close()
    _wait_file(go)
    return "thread ok"


@aioray.remote
async def async_bystander(started: str, go: str) -> str:
    open(started, "w").close()
    while not os.path.exists(go):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    return "async ok"


@aioray.remote
def pid_of() -> int:
    return os.getpid()


@aioray.remote
def square(x: int) -> int:
    return x * x


def test_crash_fails_only_its_own_task(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    starts = [str(tmp_path / f"s{i}") for i in range(5)]
    counters = [tmp_path / f"c{i}" for i in range(2)]
    bad = victim.options(max_retries=0).remote(starts[0], go)
    good = [bystander.remote(str(counters[i]), starts[i + 1], go, i) for i in range(2)]
    others = [thread_bystander.remote(starts[3], go), async_bystander.remote(starts[4], go)]
    wait_until(lambda: all(os.path.exists(s) for s in starts), what="all tasks running")
    before = _worker_pids()
    open(go, "w").close()

    with pytest.raises(WorkerCrashedError) as info:
        aioray.get(bad, timeout=60)
    assert info.value.exit_code == -signal.SIGKILL
    results = aioray.get(good, timeout=60)
    assert [v for v, _ in results] == [0, 1]
    assert {pid for _, pid in results} <= before  # they finished where they started
    assert [_attempts(c) for c in counters] == [1, 1]  # not charged a retry
    assert aioray.get(others, timeout=60) == ["thread ok", "async ok"]


def test_crash_with_retries_does_not_rerun_bystanders(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    counter = tmp_path / "c"
    vcount = str(tmp_path / "v")

    @aioray.remote(num_cpus=0, max_retries=2)
    def crash_once(started: str) -> str:
        if _attempt(vcount) == 1:
            open(started, "w").close()
            _wait_file(go)
            os._exit(1)
        return "recovered"

    bad = crash_once.remote(str(tmp_path / "s0"))
    good = bystander.remote(str(counter), str(tmp_path / "s1"), go, 7)
    wait_until(lambda: os.path.exists(tmp_path / "s0") and os.path.exists(tmp_path / "s1"))
    open(go, "w").close()
    assert aioray.get(bad, timeout=60) == "recovered"
    assert aioray.get(good, timeout=60)[0] == 7
    assert _attempts(Path(vcount)) == 2
    assert _attempts(counter) == 1


def test_pool_replaces_dead_worker_and_keeps_serving(ray: object, tmp_path: Path) -> None:
    rt = _runtime.current_runtime()
    assert rt is not None
    for i in range(2):
        go = str(tmp_path / f"go{i}")
        open(go, "w").close()
        with pytest.raises(WorkerCrashedError):
            aioray.get(victim.options(max_retries=0).remote(str(tmp_path / f"s{i}"), go,
                                                          "exit"), timeout=60)
    assert aioray.get([square.remote(i) for i in range(20)], timeout=60) == [
        i * i for i in range(20)]
    # Dead workers are gone from the pool and reaped; the survivors are real children.
    children = {p.pid for p in psutil.Process().children()}
    assert _worker_pids() <= children
    assert all(_alive(pid) for pid in _worker_pids())
    assert len(_worker_pids()) <= 2


def test_idle_worker_killed_externally_is_replaced(ray: object, tmp_path: Path) -> None:
    pid = aioray.get(pid_of.remote(), timeout=60)
    assert pid in _worker_pids()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid not in _worker_pids(), what="pool notices the death")
    wait_until(lambda: not _alive(pid), what="dead worker reaped")
    counter = tmp_path / "c"
    go = str(tmp_path / "go")
    open(go, "w").close()
    ref = bystander.options(max_retries=0).remote(str(counter), str(tmp_path / "s"), go, 1)
    value, new_pid = aioray.get(ref, timeout=60)
    assert value == 1 and new_pid != pid
    assert _attempts(counter) == 1


def test_dependents_of_a_crashed_task_get_the_crash(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    open(go, "w").close()
    bad = victim.options(max_retries=0).remote(str(tmp_path / "s"), go)
    dependent = square.remote(bad)
    with pytest.raises(WorkerCrashedError):
        aioray.get(dependent, timeout=60)


def test_crash_of_child_task_seen_by_parent_in_worker(ray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    open(go, "w").close()

    @aioray.remote(num_cpus=0)
    def parent(started: str, go: str) -> str:
        try:
            aioray.get(victim.options(max_retries=0).remote(started, go))
        except WorkerCrashedError as e:
            return f"child died: {e.exit_code}"
        return "child lived"

    assert aioray.get(parent.remote(str(tmp_path / "s"), go), timeout=60) == (
        f"child died: {-signal.SIGKILL}")


def test_hanging_worker_force_cancelled_and_replaced(ray: object, tmp_path: Path) -> None:
    @aioray.remote(max_retries=3)
    def hang(started: str) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # even a polite interrupt is ignored
        with open(started, "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(1)

    started = tmp_path / "s"
    ref = hang.remote(str(started))
    wait_until(lambda: started.exists() and started.read_text() != "", what="hang started")
    pid = int(started.read_text())
    aioray.cancel(ref)  # interrupt is ignored: the worker keeps hanging, the ref waits (Ray)
    with pytest.raises(GetTimeoutError):
        aioray.get(ref, timeout=0.5)
    assert _alive(pid)
    aioray.cancel(ref, force=True)  # escalate: kill it
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=60)
    wait_until(lambda: not _alive(pid), what="hung worker killed")
    wait_until(lambda: pid not in _worker_pids(), what="hung worker dropped from pool")
    # Cancelled tasks are not retried, and both CPUs serve new work.
    assert aioray.get([square.remote(i) for i in range(4)], timeout=60) == [0, 1, 4, 9]
    assert started.read_text() == str(pid)


async def test_crash_contained_in_async_model(aray: object, tmp_path: Path) -> None:
    go = str(tmp_path / "go")
    bad = victim.options(max_retries=0).remote(str(tmp_path / "s0"), go)
    good = bystander.remote(str(tmp_path / "c"), str(tmp_path / "s1"), go, 5)
    while not (os.path.exists(tmp_path / "s0") and os.path.exists(tmp_path / "s1")):
        await asyncio.sleep(0.01)
    open(go, "w").close()
    with pytest.raises(WorkerCrashedError):
        await bad
    assert (await good)[0] == 5
    assert _attempts(tmp_path / "c") == 1
    assert await square.remote(3) == 9
