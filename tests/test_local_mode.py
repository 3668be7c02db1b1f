"""Debugging mode: ``init(local_mode=True)`` / ``AIORAY_LOCAL_MODE=1`` runs sync tasks on threads
of this process — so breakpoints (pdb) and coverage, which trace threads with
``threading.settrace``, see the task bodies — with the semantics of the default process mode:
arguments and results are copies, errors come back as ``RayTaskError``, FIFO order holds."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

import aioray
from aioray.exceptions import RayTaskError

SEEN: list[int] = []  # a module global: only an in-process task body can append to ours


@aioray.remote
def whoami() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


@aioray.remote
def record(x: int) -> int:
    SEEN.append(x)
    return x


@aioray.remote
def mutate(items: list[int]) -> list[int]:
    items.append(99)
    return items


@aioray.remote
def fail(msg: str) -> None:
    raise KeyError(msg)


@aioray.remote
def squares(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


@aioray.remote
def nested(x: int) -> int:
    return aioray.get(record.remote(x)) + 1


@pytest.fixture
def local_ray() -> Iterator[Any]:
    aioray.shutdown()
    SEEN.clear()
    aioray.init(num_cpus=1, local_mode=True)
    yield aioray
    aioray.shutdown()


def test_sync_tasks_run_in_this_process_on_threads(local_ray: Any) -> None:
    pid, thread = local_ray.get(whoami.remote())
    assert pid == os.getpid()
    assert thread != threading.current_thread().name
    assert local_ray.get(record.remote(5)) == 5
    assert SEEN == [5]  # the task body ran against this module's globals


def test_the_default_mode_runs_them_in_worker_processes(ray: Any) -> None:
    """The contrast that makes the test above meaningful."""
    SEEN.clear()
    pid, _ = ray.get(whoami.remote())
    assert pid != os.getpid()
    assert ray.get(record.remote(5)) == 5
    assert SEEN == []


def test_environment_variable_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIORAY_LOCAL_MODE", "1")
    aioray.shutdown()
    aioray.init(num_cpus=1)
    try:
        assert aioray.get(whoami.remote())[0] == os.getpid()
    finally:
        aioray.shutdown()


def test_a_tracer_sees_the_task_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """pdb breakpoints and coverage work through sys/threading.settrace: a tracer installed for
    new threads sees the task function's frames."""
    called: set[str] = set()

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == __file__:
            called.add(frame.f_code.co_name)

    previous = threading.gettrace()
    aioray.shutdown()
    threading.settrace(tracer)  # type: ignore[arg-type]
    try:
        aioray.init(num_cpus=1, local_mode=True)
        assert aioray.get(record.remote(3)) == 3
    finally:
        threading.settrace(previous)  # type: ignore[arg-type]
        aioray.shutdown()
    assert "record" in called, called


def test_arguments_and_results_are_copies(local_ray: Any) -> None:
    items = [1, 2]
    out = local_ray.get(mutate.remote(items))
    assert items == [1, 2]  # the task changed its own copy
    assert out == [1, 2, 99]
    out.append(100)
    ref = mutate.remote(items)
    first = local_ray.get(ref)
    first.clear()
    assert local_ray.get(ref) == [1, 2, 99]  # the stored result is immutable
    put_ref = local_ray.put(items)
    items.append(3)
    assert local_ray.get(mutate.remote(put_ref)) == [1, 2, 99]


def test_errors_are_ray_task_errors_of_the_users_class(local_ray: Any) -> None:
    with pytest.raises(RayTaskError) as info:
        local_ray.get(fail.remote("boom"))
    assert isinstance(info.value, KeyError)
    assert "boom" in str(info.value)
    assert "fail" in str(info.value)  # the remote traceback names the task function


def test_order_generators_and_nesting(local_ray: Any) -> None:
    refs = [record.remote(i) for i in range(10)]
    assert local_ray.get(refs) == list(range(10))
    assert SEEN == list(range(10))  # one CPU: tasks start in submission order
    assert [local_ray.get(r) for r in squares.remote(4)] == [0, 1, 4, 9]
    SEEN.clear()
    assert local_ray.get(nested.remote(7)) == 8  # a task may submit and get from its thread
    assert SEEN == [7]


def test_no_worker_process_is_started(local_ray: Any) -> None:
    before = _child_pids()
    if before is None:
        pytest.skip("no /proc to list child processes")
    local_ray.get([record.remote(i) for i in range(3)])
    new = set(_child_pids() or []) - set(before)  # workers of earlier tests may still be exiting
    assert [pid for pid in new if b"aioray._worker" in _cmdline(pid)
            or _cmdline(pid).startswith(b"aioray::")] == []  # by command line or title


def _child_pids() -> list[int] | None:
    if not sys.platform.startswith("linux"):
        return None
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                out.append(int(name))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
