"""Resources: CPU/GPU/custom amounts limit concurrency, infeasible requests fail fast, GPU ids,
and tasks blocked in ``get`` lend their CPU so nested work cannot deadlock.

Concurrency is proven with counters and the scheduler's queue, never with timing: tasks block on
events until the test has looked at how many run and how many wait.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray.exceptions import TaskUnschedulableError


def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.005)


def _queued() -> int:
    return aioray._engine.runtime.current_runtime().node_pool.queued()  # type: ignore[no-any-return]


class Gauge:
    """Counts tasks running right now and the most that ever ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.release = threading.Event()

    def body(self) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.release.wait(30)
        finally:
            with self.lock:
                self.running -= 1
        return 1


def _thread_task(gauge: Gauge, **opts: Any) -> Any:
    @aioray.remote(executor="thread", **opts)
    def task() -> int:
        return gauge.body()
    return task


# -- CPUs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_cpus, expected", [(1, 2), (2, 1), (0.5, 4)])
def test_num_cpus_limits_concurrency(ray: Any, num_cpus: float, expected: int) -> None:
    gauge = Gauge()
    task = _thread_task(gauge, num_cpus=num_cpus)
    n = expected + 2
    refs = [task.remote() for _ in range(n)]
    _until(lambda: gauge.running == expected and _queued() == n - expected)
    assert aioray.available_resources().get("CPU", 0.0) == 0.0
    gauge.release.set()
    assert aioray.get(refs, timeout=30) == [1] * n
    assert gauge.peak == expected


def test_zero_cpu_tasks_are_not_limited(ray: Any) -> None:
    gauge = Gauge()
    task = _thread_task(gauge, num_cpus=0)
    refs = [task.remote() for _ in range(6)]
    _until(lambda: gauge.running == 6)
    assert _queued() == 0
    gauge.release.set()
    aioray.get(refs, timeout=30)


def test_async_tasks_default_to_zero_cpus_but_can_ask(ray: Any) -> None:
    running = 0
    peak = 0
    release: asyncio.Event | None = None

    @aioray.remote
    async def task() -> None:
        nonlocal running, peak, release
        if release is None:
            release = asyncio.Event()
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    free = [task.remote() for _ in range(5)]
    _until(lambda: running == 5)
    limited = [task.options(num_cpus=1).remote() for _ in range(3)]
    _until(lambda: running == 7 and _queued() == 1)
    aioray._engine.runtime.current_runtime().call_soon(release.set)  # type: ignore[union-attr]
    aioray.get(free + limited, timeout=30)
    assert peak == 7


def test_process_tasks_limited_by_cpus(ray: Any, tmp_path: Path) -> None:
    @aioray.remote
    def task(i: int, d: str) -> int:
        Path(d, f"started-{i}").touch()
        deadline = time.monotonic() + 30
        while not Path(d, "go").exists():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return i

    refs = [task.remote(i, str(tmp_path)) for i in range(4)]

    def started() -> int:
        return len(list(tmp_path.glob("started-*")))
    _until(lambda: started() == 2 and _queued() == 2, timeout=60)
    (tmp_path / "go").touch()
    assert aioray.get(refs, timeout=60) == [0, 1, 2, 3]


def test_big_task_not_starved_by_small_ones(ray: Any) -> None:
    small_gauge = Gauge()
    small = _thread_task(small_gauge, num_cpus=1)
    big_started = threading.Event()

    @aioray.remote(executor="thread", num_cpus=2)
    def big() -> str:
        big_started.set()
        return "big"

    first = small.remote()
    _until(lambda: small_gauge.running == 1)
    big_ref = big.remote()
    _until(lambda: _queued() == 1)
    later = small.remote()  # arrives after big: must not jump ahead of it
    _until(lambda: _queued() == 2)
    assert small_gauge.running == 1 and not big_started.is_set()
    small_gauge.release.set()
    assert aioray.get(big_ref, timeout=30) == "big"
    aioray.get([first, later], timeout=30)


# -- custom resources -------------------------------------------------------------------------
def test_custom_resources_limit_concurrency() -> None:
    aioray.init(num_cpus=4, resources={"slot": 2, "db": 1})
    gauge = Gauge()
    task = _thread_task(gauge, num_cpus=0, resources={"slot": 1})
    refs = [task.remote() for _ in range(4)]
    _until(lambda: gauge.running == 2 and _queued() == 2)
    assert aioray.available_resources().get("slot", 0.0) == 0.0
    assert aioray.available_resources()["CPU"] == 4.0
    gauge.release.set()
    aioray.get(refs, timeout=30)
    assert gauge.peak == 2


def test_custom_resource_in_process_task() -> None:
    aioray.init(num_cpus=2, resources={"db": 1})

    @aioray.remote(resources={"db": 1})
    def use_db() -> dict[str, float]:
        return aioray.available_resources()

    avail = aioray.get(use_db.remote(), timeout=60)
    assert "db" not in avail  # this task holds the only unit


# -- infeasible -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opts, what", [
    ({"num_cpus": 3}, "CPU"), ({"num_gpus": 1}, "GPU"), ({"resources": {"tpu": 1}}, "tpu"),
])
def test_infeasible_task_fails_fast(ray: Any, opts: dict[str, Any], what: str) -> None:
    @aioray.remote
    def never() -> None:
        return None

    with pytest.warns(UserWarning, match="never run"):
        ref = never.options(**opts).remote()
        with pytest.raises(TaskUnschedulableError, match=what):
            aioray.get(ref, timeout=10)


def test_infeasible_does_not_block_others(ray: Any) -> None:
    @aioray.remote
    def ok() -> int:
        return 1

    with pytest.warns(UserWarning):
        bad = ok.options(num_cpus=100).remote()
        assert aioray.get(ok.remote(), timeout=30) == 1
        with pytest.raises(TaskUnschedulableError):
            aioray.get(bad, timeout=10)


# -- GPUs ----------------------------------------------------------------------------------------
@aioray.remote(num_gpus=1)
def gpu_view(d: str = "", wait: bool = False) -> tuple[str | None, list[int]]:
    if wait:
        Path(d, f"gpu-{os.getpid()}").touch()
        deadline = time.monotonic() + 30
        while len(list(Path(d).glob("gpu-*"))) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), aioray.get_gpu_ids()


def test_num_gpus_sets_cuda_visible_devices(tmp_path: Path) -> None:
    aioray.init(num_cpus=2, num_gpus=2)
    # Two tasks at once (each waits for the other): distinct devices.
    refs = [gpu_view.remote(str(tmp_path), True) for _ in range(2)]
    results = aioray.get(refs, timeout=60)
    ids = sorted(r[1][0] for r in results)
    assert ids == [0, 1]
    for cvd, gpu_ids in results:
        assert cvd == ",".join(map(str, gpu_ids))
    cvd, gpu_ids = aioray.get(gpu_view.options(num_gpus=2).remote(), timeout=60)
    assert sorted(gpu_ids) == [0, 1] and sorted(cvd.split(",")) == ["0", "1"]


def test_task_without_gpus_does_not_inherit_devices_on_reused_worker() -> None:
    aioray.init(num_cpus=1, num_gpus=1)  # one CPU: both tasks run on the same worker

    @aioray.remote
    def view() -> tuple[int, str | None, list[int]]:
        return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), aioray.get_gpu_ids()

    pid1, cvd1, ids1 = aioray.get(view.options(num_gpus=1).remote(), timeout=60)
    pid2, cvd2, ids2 = aioray.get(view.remote(), timeout=60)
    assert (cvd1, ids1) == ("0", [0])
    assert pid1 == pid2
    assert cvd2 == os.environ.get("CUDA_VISIBLE_DEVICES") and ids2 == []


def test_gpu_ids_in_thread_and_async_tasks() -> None:
    aioray.init(num_cpus=2, num_gpus=2)

    @aioray.remote(num_gpus=1)
    async def agpu() -> list[int]:
        return aioray.get_gpu_ids()

    @aioray.remote(num_gpus=1, executor="thread")
    def tgpu() -> list[int]:
        return aioray.get_gpu_ids()

    assert len(aioray.get(agpu.remote())) == 1
    assert len(aioray.get(tgpu.remote())) == 1
    assert aioray.get_gpu_ids() == []  # the driver holds none


def test_fractional_gpus_share_a_device() -> None:
    aioray.init(num_cpus=4, num_gpus=1)
    barrier = threading.Barrier(2, timeout=30)

    @aioray.remote(num_gpus=0.5, executor="thread", num_cpus=0)
    def half() -> list[int]:
        barrier.wait()  # both halves run at once
        return aioray.get_gpu_ids()

    assert aioray.get([half.remote(), half.remote()], timeout=30) == [[0], [0]]


# -- nested tasks and CPU lending -------------------------------------------------------------------
@aioray.remote
def leaf(x: int) -> int:
    return x + 1


@aioray.remote
def middle(x: int) -> int:
    return aioray.get(leaf.remote(x)) + 1


@aioray.remote
def top(x: int) -> int:
    return sum(aioray.get([middle.remote(x), middle.remote(x)]))


def test_nested_process_tasks_do_not_deadlock_when_cpus_held(ray: Any) -> None:
    # Two tops fill both CPUs, each needs two middles, each middle a leaf: only CPU lending
    # while blocked in get lets this finish.
    assert aioray.get([top.remote(0), top.remote(10)], timeout=90) == [4, 24]


def test_task_holding_all_cpus_can_wait_on_children(ray: Any) -> None:
    @aioray.remote(num_cpus=2)
    def greedy() -> list[int]:
        refs = [leaf.remote(i) for i in range(3)]
        ready, _ = aioray.wait(refs, num_returns=3, timeout=60)
        return aioray.get(ready)

    assert aioray.get(greedy.remote(), timeout=90) == [1, 2, 3]


def test_thread_and_async_tasks_lend_cpu_too() -> None:
    aioray.init(num_cpus=1)

    @aioray.remote(executor="thread")
    def tleaf() -> int:
        return 1

    @aioray.remote(executor="thread")
    def touter() -> int:
        return aioray.get(tleaf.remote(), timeout=30) + 1

    @aioray.remote(num_cpus=1)
    async def aouter() -> int:
        return await tleaf.remote() + 2

    assert aioray.get(touter.remote(), timeout=60) == 2
    assert aioray.get(aouter.remote(), timeout=60) == 3


def test_cpu_reclaimed_after_get(ray: Any) -> None:
    @aioray.remote(executor="thread", num_cpus=2)
    def waits_then_works() -> dict[str, float]:
        aioray.get(leaf.remote(1), timeout=30)  # lends both CPUs meanwhile
        return aioray.available_resources()  # ...and has them back afterwards

    assert aioray.get(waits_then_works.remote(), timeout=60).get("CPU", 0.0) == 0.0


def test_waiting_for_arguments_holds_no_cpu() -> None:
    aioray.init(num_cpus=1)
    gate = threading.Event()

    @aioray.remote(executor="thread", num_cpus=0)
    def slow_input() -> int:
        assert gate.wait(30)
        return 1

    @aioray.remote(executor="thread", num_cpus=1)
    def consumer(x: int) -> int:
        return x + 1

    dependent = consumer.remote(slow_input.remote())
    # While its argument is pending the dependent task holds nothing: an independent task
    # needing the only CPU runs to completion.
    assert aioray.get(consumer.remote(10), timeout=30) == 11
    assert aioray.available_resources() == {"CPU": 1.0}
    gate.set()
    assert aioray.get(dependent, timeout=30) == 2
