"""``shutdown()`` with work in flight, Ctrl-C, and interpreter exit: every pending ref resolves
to ``RuntimeShutdownError`` (never hangs), workers exit, shared memory is unlinked, and no
stray process or ``/dev/shm`` entry is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import psutil
import pytest
from xproc import wait_until

import aioray
from aioray._objects.shm import list_segments
from aioray.exceptions import RuntimeShutdownError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parents[1]
STOP = threading.Event()  # releases driver-side threads (thread tasks, sync actor methods)


@pytest.fixture(autouse=True)
def _release_threads() -> Any:
    STOP.clear()
    yield
    STOP.set()


def _touch(path: str) -> None:
    open(path, "w").close()


def _worker_children() -> list[psutil.Process]:
    """Our live worker processes (zombies count: they were not reaped)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if "aioray._worker" in cmd or cmd.startswith("aioray::"):  # or its process title
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _own_segments() -> list[str]:
    return list_segments(os.getpid())


def _gone(pid: int) -> bool:
    """The process has exited (a zombie has exited too; _worker_children() checks reaping)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _outcome(ref: Any) -> str:
    try:
        aioray.get(ref, timeout=30)
        return "value"
    except RuntimeShutdownError:
        return "shutdown"
    except Exception as e:
        return type(e).__name__


def _drain(gen: Any) -> list[str]:
    return [_outcome(r) for r in gen]


@aioray.remote
def sleeper(started: str, x: int = 0) -> int:
    _touch(started)
    time.sleep(3600)
    return x


@aioray.remote
def quick(x: int) -> int:
    return x


@aioray.remote
async def async_sleeper(started: str) -> None:
    _touch(started)
    await asyncio.sleep(3600)


@aioray.remote(num_cpus=0, executor="thread")
def thread_sleeper(started: str) -> None:
    _touch(started)
    STOP.wait(3600)


@aioray.remote(num_cpus=0)
def counter_gen(started: str):  # type: ignore[no-untyped-def]
    _touch(started)
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.02)


@aioray.remote(num_cpus=0)
def big_array(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.uint8)


@aioray.remote
class SyncActor:
    def block(self, started: str) -> None:
        _touch(started)
        STOP.wait(3600)

    def ping(self) -> str:
        return "pong"


@aioray.remote
class AsyncActor:
    async def block(self, started: str) -> None:
        _touch(started)
        await asyncio.sleep(3600)

    async def stream(self):  # type: ignore[no-untyped-def]
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.02)


def test_shutdown_resolves_every_kind_of_pending_ref(ray: object, tmp_path: Path) -> None:
    s = [str(tmp_path / f"s{i}") for i in range(8)]
    running = [sleeper.remote(s[0], 1), sleeper.remote(s[1], 2)]  # both CPUs
    queued = sleeper.remote(str(tmp_path / "never"))
    waiting_for_args = quick.remote(running[0])
    on_loop = async_sleeper.remote(s[2])
    on_thread = thread_sleeper.remote(s[3])
    gen = counter_gen.remote(s[4])
    sa, aa = SyncActor.remote(), AsyncActor.remote()
    sync_call, sync_queued = sa.block.remote(s[5]), sa.ping.remote()
    async_call = aa.block.remote(s[6])
    astream = aa.stream.remote()
    big = big_array.remote(2 << 20)  # lives in shared memory
    done = aioray.get(big, timeout=60)
    assert len(done) == 2 << 20
    put_big = aioray.put(np.zeros(1 << 20))
    wait_until(lambda: all(os.path.exists(p) for p in s[:7]), what="everything running")
    assert aioray.get(next(gen), timeout=60) == 0
    assert aioray.get(next(astream), timeout=60) == 0
    workers = [p.pid for p in _worker_children()]
    assert workers and _own_segments()

    aioray.shutdown()
    STOP.set()

    pending = [*running, queued, waiting_for_args, on_loop, on_thread, sync_call, sync_queued,
               async_call]
    assert [_outcome(r) for r in pending] == ["shutdown"] * len(pending)
    for stream in (gen, astream):
        outcomes = _drain(stream)
        assert outcomes[-1] == "shutdown" and set(outcomes[:-1]) <= {"value"}
    # Objects already stored stay readable in this process.
    assert aioray.get(put_big).shape == (1 << 20,)
    assert all(_gone(pid) for pid in workers)
    assert _worker_children() == []
    del done
    aioray.shutdown()  # the implicit runtime get() started
    assert _own_segments() == []


def test_threads_blocked_in_get_wait_next_are_released(ray: object, tmp_path: Path) -> None:
    started = str(tmp_path / "s")
    ref = sleeper.remote(started)
    gen = counter_gen.remote(str(tmp_path / "g"))
    assert aioray.get(next(gen), timeout=60) == 0
    wait_until(lambda: os.path.exists(started))
    results: dict[str, str] = {}

    def blocked(name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            results[name] = "returned"
        except RuntimeShutdownError:
            results[name] = "shutdown"
        except BaseException as e:
            results[name] = type(e).__name__

    def drain_gen() -> None:
        for r in gen:
            aioray.get(r)

    threads = [threading.Thread(target=blocked, args=a, daemon=True) for a in [
        ("get", lambda: aioray.get(ref)),
        ("wait", lambda: aioray.wait([ref])),
        ("gen", drain_gen),
    ]]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let them block (they would also be released if not yet blocked)
    aioray.shutdown()
    for t in threads:
        t.join(30)
    assert results == {"get": "shutdown", "wait": "returned", "gen": "shutdown"}


def test_shutdown_kills_hung_workers_and_sweeps_orphan_segments(ray: object,
                                                                tmp_path: Path) -> None:
    @aioray.remote(num_cpus=0)
    def stubborn(started: str) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _touch(started)
        while True:
            time.sleep(1)

    @aioray.remote(num_cpus=0, max_retries=0)
    def leak_segment_then_die(driver_pid: int) -> None:
        from aioray._objects.shm import SharedBuffer
        SharedBuffer.create(driver_pid, memoryview(b"x" * 1024), owner=False)
        os._exit(1)

    refs = [stubborn.remote(str(tmp_path / f"s{i}")) for i in range(2)]
    wait_until(lambda: all((tmp_path / f"s{i}").exists() for i in range(2)))
    assert _outcome(leak_segment_then_die.remote(os.getpid())) == "WorkerCrashedError"
    assert _own_segments()  # the dead worker's segment is still there
    workers = [p.pid for p in _worker_children()]
    aioray.shutdown()
    assert [_outcome(r) for r in refs] == ["shutdown", "shutdown"]
    assert all(_gone(pid) for pid in workers)
    assert _worker_children() == []
    aioray.shutdown()
    assert _own_segments() == []


def test_shutdown_while_workers_are_starting(ray: object) -> None:
    refs = [quick.options(num_cpus=0).remote(i) for i in range(6)]  # six spawns at once
    aioray.shutdown()
    assert set(_outcome(r) for r in refs) <= {"shutdown", "value"}
    wait_until(lambda: _worker_children() == [], what="no worker left")
    aioray.shutdown()
    assert _own_segments() == []


def test_runtime_usable_again_after_shutdown_in_flight(ray: object, tmp_path: Path) -> None:
    ref = sleeper.remote(str(tmp_path / "s"))
    wait_until(lambda: (tmp_path / "s").exists())
    aioray.shutdown()
    aioray.shutdown()  # twice is fine
    aioray.init(num_cpus=2)
    with pytest.raises(RuntimeShutdownError):
        aioray.get(ref, timeout=30)
    assert aioray.get([quick.remote(i) for i in range(4)], timeout=60) == [0, 1, 2, 3]


async def test_shutdown_from_async_code(aray: object, tmp_path: Path) -> None:
    started = str(tmp_path / "s")
    refs = [sleeper.remote(started), async_sleeper.remote(str(tmp_path / "a"))]
    a = AsyncActor.remote()
    call = a.block.remote(str(tmp_path / "b"))
    astream = a.stream.remote()
    assert await astream.__anext__() is not None
    while not all(os.path.exists(p) for p in (started, tmp_path / "a", tmp_path / "b")):
        await asyncio.sleep(0.01)
    workers = [p.pid for p in _worker_children()]
    aioray.shutdown()
    for r in [*refs, call]:
        with pytest.raises(RuntimeShutdownError):
            await r
    last = None
    async for r in astream:
        last = r
    assert last is not None
    with pytest.raises(RuntimeShutdownError):
        await last
    assert all(_gone(pid) for pid in workers)
    assert _worker_children() == []


# -- Ctrl-C and interpreter exit (each in a fresh interpreter) -----------------------------
_SCRIPT_HEAD = """
import os, signal, sys, threading, time
# A harness that starts us as a background job (`cmd &` in a non-interactive shell) hands down
# SIGINT *ignored*, and Python then never installs its KeyboardInterrupt handler. These tests
# are about what aioray does when Ctrl-C arrives, so restore Python's default.
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import aioray

aioray.init(num_cpus=2)

@aioray.remote
def slow(x):
    time.sleep(3600)
    return x

@aioray.remote
class Stuck:
    def block(self):
        threading.Event().wait(3600)

@aioray.remote(num_cpus=0, executor="thread")
def stuck_thread():
    threading.Event().wait(3600)

def report(workers, in_get=False):
    # Tell the parent what to check once the workers run — and, with in_get, once the main
    # thread is blocked inside aioray's get: a SIGINT sent earlier would land outside it.
    import psutil
    main = threading.main_thread().ident

    def blocked_in_aioray():
        frame = sys._current_frames().get(main)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "get" and os.sep + "aioray" + os.sep in code.co_filename:
                return True
            frame = frame.f_back
        return False

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                len(psutil.Process().children()) < workers
                or (in_get and not blocked_in_aioray())):
            time.sleep(0.01)
        pids = [p.pid for p in psutil.Process().children()]
        print("PIDS", *pids, flush=True)
        print("READY", flush=True)

    if in_get:
        threading.Thread(target=watch, daemon=True).start()
    else:
        watch()
"""


def _run_script(body: str, tmp_path: Path, sigint: bool = False,
                timeout: float = 60, sig: int | None = None,
                env_extra: dict[str, str] | None = None) -> tuple[str, int, list[int]]:
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT_HEAD + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    sig = signal.SIGINT if sigint else sig
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                if sig is not None:
                    proc.send_signal(sig)
                break
        # Not communicate(timeout=...): it reads the raw pipe and loses what the line loop
        # above has already buffered.
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            out = proc.stdout.read()
            proc.wait()
        finally:
            killer.cancel()
        if proc.returncode == -signal.SIGKILL:
            raise subprocess.TimeoutExpired(str(script), timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("script hung:\n" + "".join(lines)) from None
    text = "".join(lines) + out
    pids = [int(x) for line in text.splitlines() if line.startswith("PIDS")
            for x in line.split()[1:]]
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(f"aioray-{proc.pid}-")]
    assert leftovers == [], text
    assert pids, text
    wait_until(lambda: all(_gone(p) for p in pids), timeout=10, what=f"workers exit:\n{text}")
    return text, proc.returncode, pids


def test_ctrl_c_in_get_raises_keyboard_interrupt_then_clean_shutdown(tmp_path: Path) -> None:
    text, code, _ = _run_script("""
        big = aioray.put(np.zeros(1 << 20))
        ref = slow.remote(1)
        report(1, in_get=True)
        try:
            aioray.get(ref)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        aioray.shutdown()
        print("SHUTDOWN OK", flush=True)
    """, tmp_path, sigint=True)
    assert "KeyboardInterrupt" in text and "SHUTDOWN OK" in text, text
    assert code == 0, text


def test_ctrl_c_uncaught_exits_and_cleans_up(tmp_path: Path) -> None:
    text, code, _ = _run_script("""
        big = aioray.put(np.zeros(1 << 20))
        refs = [slow.remote(i) for i in range(3)]
        report(2, in_get=True)
        aioray.get(refs)
    """, tmp_path, sigint=True)
    assert "KeyboardInterrupt" in text, text
    assert code != 0


def test_interpreter_exit_without_shutdown_cleans_up(tmp_path: Path) -> None:
    """Falling off the end with work that never finishes: the exit waits for it (as
    concurrent.futures does), says so after 1 s, and gives up at AIORAY_EXIT_TIMEOUT."""
    start = time.monotonic()
    text, code, _ = _run_script("""
        big = aioray.put(np.zeros(1 << 20))
        refs = [slow.remote(i) for i in range(3)]
        a = Stuck.remote()
        calls = [a.block.remote(), stuck_thread.remote()]
        report(2)
        # Falls off the end with tasks, a sync actor method and a thread task still running.
    """, tmp_path, env_extra={"AIORAY_EXIT_TIMEOUT": "2"})
    assert code == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("aioray:")]
    assert lines == [
        "aioray: the script ended with 4 tasks and 1 actor call still running; waiting for them "
        "to finish (up to 2 s, AIORAY_EXIT_TIMEOUT). Ctrl-C drops them.",
        "aioray: gave up after 2 s (AIORAY_EXIT_TIMEOUT): dropped 4 tasks and 1 actor call."], text
    assert "Traceback" not in text, text
    assert time.monotonic() - start < 20


def test_fire_and_forget_work_runs_before_exit(tmp_path: Path) -> None:
    """Ray's docs end scripts right after ``echo.remote(1, 2, 3)``: the task still runs."""
    text, code, _ = _run_script("""
        @aioray.remote
        def echo(a, b, c):
            print(a, b, c, flush=True)

        @aioray.remote
        class Logger:
            def log(self, what):
                print("logged", what, flush=True)

        echo.remote(1, 2, 3)
        Logger.remote().log.remote("x")
        report(1)
    """, tmp_path)
    assert code == 0, text
    assert "1 2 3" in text and "logged x" in text, text
    assert "aioray:" not in text and "Traceback" not in text, text


def test_sigterm_exits_promptly_and_cleans_up(tmp_path: Path) -> None:
    start = time.monotonic()
    text, code, _ = _run_script("""
        big = aioray.put(np.zeros(1 << 20))
        refs = [slow.remote(i) for i in range(3)]
        report(2, in_get=True)
        aioray.get(refs)
    """, tmp_path, sig=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, text
    assert "Traceback" not in text and "aioray:" not in text, text
    assert time.monotonic() - start < 20


def test_exception_escaping_main_drops_work_promptly(tmp_path: Path) -> None:
    start = time.monotonic()
    text, code, _ = _run_script("""
        refs = [slow.remote(i) for i in range(3)]
        report(2)
        raise ValueError("the script failed")
    """, tmp_path)
    assert code == 1, text
    assert "ValueError: the script failed" in text and "aioray:" not in text, text
    assert time.monotonic() - start < 20


def test_workers_exit_when_driver_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT_HEAD + textwrap.dedent("""
        refs = [slow.remote(i) for i in range(2)]
        report(2)
        time.sleep(3600)
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    pids: list[int] = []
    for line in proc.stdout:
        if line.startswith("PIDS"):
            pids = [int(x) for x in line.split()[1:]]
        if line.startswith("READY"):
            break
    proc.kill()
    proc.wait(30)
    assert pids
    wait_until(lambda: all(_gone(p) for p in pids), timeout=30, what="orphaned workers exit")


def test_init_sweeps_segments_of_killed_drivers(tmp_path: Path) -> None:
    from aioray._objects import shm as _shared_memory
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = os.path.join(_shared_memory._DIR, f"{_shared_memory.PREFIX}{dead.pid}-deadbeef")
    with open(path, "wb") as f:
        f.write(b"x")
    aioray.shutdown()
    aioray.init(num_cpus=1)
    assert not os.path.exists(path)


_ASYNC_SCRIPT = """
import asyncio, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import aioray

@aioray.remote
def slow():
    time.sleep(3600)

async def main():
    aioray.init(num_cpus=2)
    refs = [slow.remote() for _ in range(2)]
    import psutil
    deadline = time.monotonic() + 60
    while len(psutil.Process().children()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    print("PIDS", *[p.pid for p in psutil.Process().children()], flush=True)
    {ending}

asyncio.run(main())
print("RETURNED", aioray.is_initialized(), flush=True)
"""


@pytest.mark.parametrize("ending,code", [
    ("return", 0),  # asyncio.run returns with process tasks in flight
    ("os.kill(os.getpid(), signal.SIGINT); await asyncio.gather(*refs)", -signal.SIGINT),
    ("os.kill(os.getpid(), signal.SIGTERM); await asyncio.gather(*refs)", 128 + signal.SIGTERM),
])
def test_async_app_exits_promptly_and_quietly(tmp_path: Path, ending: str, code: int) -> None:
    """An async app whose loop ends (return, Ctrl-C, SIGTERM) with process tasks in flight:
    the workers are told to stop and killed after a short grace; nothing is printed."""
    script = tmp_path / "app.py"
    script.write_text(_ASYNC_SCRIPT.replace("{ending}", ending))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert took < 10, took  # was 30 s: the pool waited for the task it never told to stop
    pids = [int(x) for line in proc.stdout.splitlines() if line.startswith("PIDS")
            for x in line.split()[1:]]
    assert pids, proc.stdout
    wait_until(lambda: all(_gone(p) for p in pids), timeout=10, what="workers exit")
    assert "aioray" not in proc.stderr and "Task was destroyed" not in proc.stderr, proc.stderr
    if code == 0:
        assert "RETURNED False" in proc.stdout  # the runtime ended with its loop
    elif code == -signal.SIGINT:
        assert proc.stderr.rstrip().endswith("KeyboardInterrupt"), proc.stderr  # asyncio's own
    else:
        assert proc.stderr == "", proc.stderr
