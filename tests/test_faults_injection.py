"""Fault injection: workers SIGKILLed while hundreds of tasks run, a hundred cancellations at
random moments, shutdown mid-flight. Whatever happens, every ref resolves (to its value or a
typed error), results are right, retries are counted right, and no worker process or
shared-memory segment is leaked. Randomness is seeded: a failure reproduces."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import psutil
import pytest
from xproc import wait_until

import aioray
from aioray._engine import runtime as _runtime
from aioray._objects.shm import list_segments
from aioray.exceptions import RuntimeShutdownError, TaskCancelledError, WorkerCrashedError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BIG = 1 << 20  # bytes: results this large travel through shared memory


# This module's deadline for the states it waits for (xproc.wait_until's default is 30 s).
_wait_until = functools.partial(wait_until, timeout=60.0)


def _log(path: str, line: str) -> None:
    """Append one line; O_APPEND keeps concurrent writers' lines whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _lines(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def _dies(seed: int, i: int, attempt: int, p: float) -> bool:
    return random.Random(f"{seed}-{i}-{attempt}").random() < p


def _worker_children() -> list[psutil.Process]:
    """Our worker processes (by command line, or by process title with setproctitle), not
    the zygote that forks actor processes."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if ("aioray._worker" in cmd or cmd.startswith("aioray::")) and "--zygote" not in cmd:
            out.append(p)
    return out


def _pool() -> Any:
    rt = _runtime.current_runtime()
    assert rt is not None
    return rt.workers


def _assert_no_leaked_workers(max_workers: int) -> None:
    """Every child worker is a live member of the pool (dead ones were reaped), and the pool
    is no bigger than the CPUs need."""
    pool_pids = {w.pid for w in _pool().workers}
    _wait_until(lambda: {p.pid for p in _worker_children()} == pool_pids,
                what="children == pool members")
    assert len(pool_pids) <= max_workers
    for p in _worker_children():
        assert p.status() != psutil.STATUS_ZOMBIE


def _own_segments() -> list[str]:
    return list_segments(os.getpid())


# -- SIGKILL while tasks run ---------------------------------------------------------------
@aioray.remote(max_retries=2)
def doomed(log: str, i: int, seed: int, p: float) -> int:
    """Logs each attempt, then SIGKILLs its own worker on the attempts the seed picks."""
    attempt = 1 + sum(1 for line in open(log) if line.split()[0] == str(i)) if os.path.exists(
        log) else 1
    _log(log, str(i))
    if _dies(seed, i, attempt, p):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.001)
    return i * i


def test_sigkill_workers_during_500_tasks_retries_counted_exactly(ray: object,
                                                                   tmp_path: Path) -> None:
    seed, p, n = 5, 0.03, 500
    logs = [tmp_path / f"log{k}" for k in range(8)]  # one per task group: fewer scans

    def expected_attempts(i: int) -> int:
        a = 1
        while _dies(seed, i, a, p) and a < 3:  # max_retries=2: at most 3 attempts
            a += 1
        return a

    refs = [doomed.remote(str(logs[i % 8]), i, seed, p) for i in range(n)]
    outcomes: list[Any] = []
    for r in refs:
        try:
            outcomes.append(aioray.get(r, timeout=120))
        except WorkerCrashedError as e:
            outcomes.append(e)
    seen: Counter[str] = Counter()
    for log in logs:
        seen += _lines(log)
    crashes = 0
    for i in range(n):
        want = expected_attempts(i)
        assert seen[str(i)] == want, f"task {i}: {seen[str(i)]} attempts, expected {want}"
        if _dies(seed, i, want, p):  # even the last attempt died
            err = outcomes[i]
            assert isinstance(err, WorkerCrashedError), (i, err)
            assert err.attempts == 3 and err.exit_code == -signal.SIGKILL
        else:
            assert outcomes[i] == i * i
        crashes += sum(_dies(seed, i, a, p) for a in range(1, want + 1))
    assert crashes > 5  # the injection really happened
    _assert_no_leaked_workers(2)


@aioray.remote(max_retries=-1)
def logged_square(log: str, i: int) -> int:
    _log(log, str(i))
    time.sleep(0.003)
    return i * i


def test_external_sigkill_of_busy_workers(ray: object, tmp_path: Path) -> None:
    """A killer thread SIGKILLs random busy workers while 200 tasks run: each kill costs at
    most one task one extra attempt, and every result is right."""
    rng = random.Random(11)
    log = tmp_path / "log"
    n = 200
    refs = [logged_square.remote(str(log), i) for i in range(n)]
    kills = 0
    stop = threading.Event()

    def killer() -> None:
        nonlocal kills
        while kills < 10 and not stop.wait(rng.uniform(0.05, 0.15)):
            busy = [w for w in list(_pool().workers) if w.run is not None and not w.dead]
            if busy:
                w = rng.choice(busy)
                try:
                    os.kill(w.pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        results = aioray.get(refs, timeout=120)
    finally:
        stop.set()
        t.join()
    assert results == [i * i for i in range(n)]
    attempts = _lines(log)
    assert set(attempts) == {str(i) for i in range(n)}
    extra = sum(attempts.values()) - n
    assert extra <= kills  # bystanders were never charged a retry
    assert kills > 3
    _assert_no_leaked_workers(2)


# -- cancellations at random moments -------------------------------------------------------
@aioray.remote
def proc_task(i: int, dt: float) -> Any:
    time.sleep(dt)
    return np.full(BIG, i % 256, dtype=np.uint8) if i % 5 == 0 else i


@aioray.remote
async def async_task(i: int, dt: float) -> int:
    await asyncio.sleep(dt)
    return i


@aioray.remote(executor="thread", num_cpus=0)
def thread_task(i: int, dt: float) -> int:
    time.sleep(dt)
    return i


@aioray.remote
def gen_task(i: int, dt: float):  # type: ignore[no-untyped-def]
    for k in range(3):
        time.sleep(dt / 3)
        yield i + k


@aioray.remote
class Box:
    async def slow(self, i: int, dt: float) -> int:
        await asyncio.sleep(dt)
        return i


def _check(kind: str, i: int, value: Any) -> None:
    if kind == "proc" and i % 5 == 0:
        assert value.shape == (BIG,) and int(value[0]) == i % 256
    elif kind == "gen":
        assert value == [i, i + 1, i + 2]
    else:
        assert value == i


def test_100_cancellations_at_random_moments(ray: object) -> None:
    rng = random.Random(7)
    box = Box.remote()
    segments_before = set(_own_segments())
    submitted: list[tuple[str, int, Any]] = []
    for i in range(160):
        kind = rng.choice(["proc", "proc", "proc", "async", "thread", "gen", "actor"])
        dt = rng.uniform(0.0, 0.06)
        if kind == "proc":
            target: Any = proc_task.remote(i, dt)
        elif kind == "async":
            target = async_task.remote(i, dt)
        elif kind == "thread":
            target = thread_task.remote(i, dt)
        elif kind == "gen":
            target = gen_task.remote(i, dt)
        else:
            target = box.slow.remote(i, dt)
        submitted.append((kind, i, target))
    victims = rng.sample(range(len(submitted)), 100)
    for v in victims:
        kind, _, target = submitted[v]
        force = kind in ("proc", "gen") and rng.random() < 0.25
        time.sleep(rng.uniform(0, 0.004))
        aioray.cancel(target, force=force)

    cancelled = completed = 0
    for kind, i, target in submitted:
        try:
            if kind == "gen":
                value = [aioray.get(r, timeout=60) for r in target]
            else:
                value = aioray.get(target, timeout=60)
        except TaskCancelledError:
            cancelled += 1
            continue
        _check(kind, i, value)
        completed += 1
    assert cancelled + completed == len(submitted)
    assert cancelled >= 50  # most victims were caught before they finished
    assert completed >= 60  # nothing else was harmed
    # The runtime still works, the pool is back to size, and nothing leaked.
    assert aioray.get([proc_task.remote(i, 0) for i in (1, 2, 3)], timeout=60) == [1, 2, 3]
    _assert_no_leaked_workers(2)
    del submitted, target, value
    gc.collect()
    _wait_until(lambda: set(_own_segments()) <= segments_before, what="segments freed")


# -- shutdown mid-flight -------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shutdown_mid_flight_resolves_everything(ray: object, seed: int) -> None:
    rng = random.Random(seed)
    box = Box.remote()
    submitted: list[tuple[str, int, Any]] = []
    for i in range(150):
        kind = rng.choice(["proc", "proc", "async", "thread", "gen", "actor"])
        dt = rng.uniform(0.0, 0.05)
        fn: Any = {"proc": proc_task.remote, "async": async_task.remote,
                   "thread": thread_task.remote, "gen": gen_task.remote,
                   "actor": box.slow.remote}[kind]
        submitted.append((kind, i, fn(i, dt)))
    time.sleep(rng.uniform(0.05, 0.4))
    aioray.shutdown()

    done = failed = 0
    for kind, i, target in submitted:
        try:
            if kind == "gen":
                value = [aioray.get(r, timeout=30) for r in target]
            else:
                value = aioray.get(target, timeout=30)
        except RuntimeShutdownError:
            failed += 1
            continue
        _check(kind, i, value)
        done += 1
    assert done + failed == len(submitted)
    assert failed > 0
    assert _worker_children() == []
    del submitted, target
    gc.collect()
    aioray.shutdown()  # the runtime get() may have started implicitly
    assert _own_segments() == []
