"""The memory monitor, as Ray's: when the machine's used memory passes the threshold, a worker
is killed before the kernel's OOM killer takes the whole program — the newest task that can be
retried first, then other tasks, actors' processes only after tasks, never the driver. The
task is retried per ``max_retries`` (once memory is back) or fails with ``OutOfMemoryError``.

Real memory, real processes: each test lowers ``AIORAY_MEMORY_USAGE_THRESHOLD`` to what this
machine uses now plus a little, and a task allocates past it: it grows in steps until killed
(the machine's other users come and go, so no fixed amount is sure to cross the line), never
beyond a modest cap.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from xproc import wait_until

import aioray
from aioray._engine.memory_monitor import read_memory_usage
from aioray._engine.runtime import current_runtime
from aioray.exceptions import ActorDiedError, OutOfMemoryError, RayError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
HEADROOM = 1024 * MiB  # the threshold: what is used now plus this
STEP = 64 * MiB
CAP = 4096 * MiB  # what a hog allocates at most: past the threshold, far from the machine's size

pytestmark = pytest.mark.skipif(read_memory_usage() is None,
                                reason="the memory monitor reads Linux's /proc/meminfo")


def _threshold() -> str:
    usage = read_memory_usage()
    assert usage is not None
    if usage.total - usage.used < 2 * CAP:
        pytest.skip("not enough free memory on this machine for the test's allocation")
    return repr((usage.used + HEADROOM) / usage.total)


@pytest.fixture(autouse=True)
def _low_threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AIORAY_MEMORY_USAGE_THRESHOLD", _threshold())
    monkeypatch.setenv("AIORAY_MEMORY_MONITOR_REFRESH_MS", "50")
    aioray.shutdown()
    yield
    aioray.shutdown()


# This module's deadline for the states it waits for (xproc.wait_until's default is 30 s).
_wait_until = functools.partial(wait_until, timeout=20.0)


def _kills(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "aioray" and "killed the worker process" in r.getMessage()]


def _grow() -> None:
    """Allocate (and touch) memory step by step, up to ``CAP``, until killed."""
    held = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(held) * STEP < CAP:
            held.append(b"x" * STEP)
        time.sleep(0.005)


@aioray.remote(max_retries=1)
def grows(marker: str) -> str:
    if not os.path.exists(marker):  # the first attempt takes too much memory
        open(marker, "w").close()
        _grow()
    return f"pid {os.getpid()}"


@aioray.remote(max_retries=0)
def hog() -> int:
    _grow()
    return 0


@aioray.remote(max_retries=1)
def patient(started: str) -> str:
    """Sleeps (small) the first time, returns at once when retried."""
    if not os.path.exists(started):
        open(started, "w").close()
        time.sleep(60)
    return "patient ran again"


@aioray.remote(num_cpus=0)
class Hog:
    def grow(self) -> int:
        _grow()
        return 0


def test_task_killed_then_retried_succeeds(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2)
    marker = str(tmp_path / "first-attempt")
    assert aioray.get(grows.remote(marker), timeout=60).startswith("pid ")
    (kill,) = _kills(caplog)
    assert "at or above the memory usage threshold of" in kill
    assert "of the task grows, which will be retried (attempt 2 of 2)" in kill
    assert aioray.get(grows.remote(marker), timeout=30).startswith("pid ")  # the runtime serves


def test_task_without_retries_fails_with_out_of_memory_error(tmp_path: Path) -> None:
    aioray.init(address="local", num_cpus=2)
    with pytest.raises(OutOfMemoryError) as info:
        aioray.get(hog.remote(), timeout=60)
    err = info.value
    assert isinstance(err, RayError)
    text = str(err)
    assert text.startswith("Task was killed due to the node running low on memory.")
    assert "where the task (name=hog, pid=" in text
    assert "which exceeds the memory usage threshold of" in text
    assert "AIORAY_MEMORY_USAGE_THRESHOLD" in text and "AIORAY_MEMORY_MONITOR_REFRESH_MS" in text


def test_retriable_tasks_die_first_then_others(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Ray's policy: the newest task that can be retried goes first — here not the hog, which
    started later but can't be retried; then, memory still too high, the hog. The retried task
    then runs again (memory is back) and succeeds."""
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2)
    started = tmp_path / "patient-started"
    p = patient.remote(str(started))
    _wait_until(started.exists, what="the patient task to start")
    h = hog.remote()
    with pytest.raises(OutOfMemoryError):
        aioray.get(h, timeout=60)
    assert aioray.get(p, timeout=60) == "patient ran again"
    kills = _kills(caplog)
    assert len(kills) == 2, kills
    assert "of the task patient, which will be retried" in kills[0]
    assert "of the task hog, which fails with OutOfMemoryError" in kills[1]


def test_actor_processes_only_after_tasks(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aioray")
    aioray.init(address="local", num_cpus=2)
    started = tmp_path / "task-started"
    t = patient.remote(str(started))
    _wait_until(started.exists, what="the task to start")
    actor = Hog.remote()
    with pytest.raises(ActorDiedError):
        aioray.get(actor.grow.remote(), timeout=60)
    assert aioray.get(t, timeout=60) == "patient ran again"
    kills = _kills(caplog)
    assert len(kills) == 2, kills
    assert "of the task patient, which will be retried" in kills[0]
    assert "of the actor Hog, which dies (no restarts left)" in kills[1]


_SCRIPT = """
import time
import aioray
from aioray.exceptions import OutOfMemoryError

aioray.init(num_cpus=2)

@aioray.remote(max_retries=0)
def allocate(step, cap):
    held = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(held) * step < cap:
            held.append(b"x" * step)
        time.sleep(0.005)
    return len(held)

try:
    aioray.get(allocate.remote({step}, {cap}))
except OutOfMemoryError as e:
    print("OOM", str(e).splitlines()[0], flush=True)
print("DRIVER ALIVE", aioray.get(aioray.put(1)), flush=True)
aioray.shutdown()
"""


def test_script_allocating_past_the_threshold(tmp_path: Path) -> None:
    """As a user runs it: the task's worker is killed, the script gets OutOfMemoryError and
    goes on; stderr holds the one line about the kill."""
    script = tmp_path / "oom.py"
    script.write_text(textwrap.dedent(_SCRIPT.replace("{step}", str(STEP)).replace("{cap}", str(CAP))))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "OOM Task was killed due to the node running low on memory.", "DRIVER ALIVE 1"]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aioray: memory on this machine is "), proc.stderr
    assert lines[0].endswith("of the task allocate, which fails with OutOfMemoryError (no "
                             "retries left)."), proc.stderr
    assert took < 15, took


def test_monitor_reads_memory_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    usage = read_memory_usage()
    assert usage is not None and 0 < usage.used < usage.total
    from aioray._engine import memory_monitor as mm
    monkeypatch.setenv("AIORAY_MEMORY_USAGE_THRESHOLD", "0.8")
    assert mm.threshold_from_env() == 0.8
    monkeypatch.setenv("AIORAY_MEMORY_MONITOR_REFRESH_MS", "0")
    assert mm.refresh_from_env() is None  # off, as Ray's RAY_memory_monitor_refresh_ms=0
    aioray.init(address="local", num_cpus=1)
    runtime = current_runtime()
    assert runtime is not None and runtime.memory_monitor is None
