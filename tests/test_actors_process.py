"""Sync actors live in their own worker process (Ray's isolation), async actors on the loop.

What a Ray user relies on: a crashing actor is that actor's death (or restart), never the
program's; each actor process has its own environment (GPUs, os.environ, cwd, globals); and
everything that works for actors keeps working across the boundary (generators, handles in
tasks, nested calls, names, cancel, exit, shutdown). ``executor="thread"`` keeps the old
in-driver thread actor; ``executor="process"`` moves an async actor to its own process.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import numpy as np
import psutil
import pytest
from xproc import gone, wait_until

import aioray
from aioray.exceptions import ActorDiedError, RayActorError, TaskCancelledError

cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEADLINE = 30.0
COUNTER = 0  # a module global: each actor process has its own copy






@aioray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def pid(self) -> int:
        return os.getpid()

    def exit_now(self, code: int) -> None:
        os._exit(code)

    def segfault(self) -> None:
        ctypes.string_at(0)

    def sleep(self, s: float) -> str:
        time.sleep(s)
        return "slept"


# -- where actors run ----------------------------------------------------------------------------
def test_sync_actor_runs_in_its_own_process(ray: object) -> None:
    a, b = Counter.remote(), Counter.remote()
    pa, pb = aioray.get([a.pid.remote(), b.pid.remote()])
    assert len({pa, pb, os.getpid()}) == 3
    assert aioray.get(a.pid.remote()) == pa  # the same process for the actor's life
    assert aioray.get([a.incr.remote() for _ in range(100)])[-1] == 100


def test_executor_thread_keeps_the_actor_in_the_driver(ray: object) -> None:
    a = Counter.options(executor="thread").remote()
    assert aioray.get(a.pid.remote()) == os.getpid()

    @aioray.remote(executor="thread")
    class InDriver:
        def pid(self) -> int:
            return os.getpid()
    assert aioray.get(InDriver.remote().pid.remote()) == os.getpid()


def test_async_actor_stays_on_the_loop_unless_executor_process(ray: object) -> None:
    @aioray.remote
    class Server:
        def __init__(self) -> None:
            self.gate = asyncio.Event()

        async def wait(self) -> int:
            await self.gate.wait()
            return os.getpid()

        async def open(self) -> None:
            self.gate.set()

    on_loop = Server.remote()
    in_process = Server.options(executor="process").remote()
    for s in (on_loop, in_process):
        waiting = s.wait.remote()  # concurrent calls on the actor's loop: open() releases it
        aioray.get(s.open.remote())
        assert aioray.get(waiting, timeout=DEADLINE) == (
            os.getpid() if s is on_loop else aioray.get(in_process.wait.remote()))
    assert aioray.get(in_process.wait.remote()) != os.getpid()


def test_local_mode_keeps_every_actor_in_process() -> None:
    aioray.init(num_cpus=2, local_mode=True)
    assert aioray.get(Counter.remote().pid.remote()) == os.getpid()


def test_cpu_bound_actors_run_at_the_same_time(ray: object, tmp_path: Path) -> None:
    """Two actors each hold the GIL of their own process: each spins until it sees the
    other's mark, which only works if both run at once (one GIL would deadlock it)."""
    @aioray.remote
    class Spinner:
        def spin(self, mine: str, theirs: str) -> int:
            Path(mine).touch()
            deadline = time.monotonic() + DEADLINE
            n = 0
            while not os.path.exists(theirs):  # pure Python: holds this process's GIL
                n += 1
                if time.monotonic() > deadline:
                    raise TimeoutError("the other actor never ran")
            return n

    a, b = Spinner.remote(), Spinner.remote()
    x, y = str(tmp_path / "a"), str(tmp_path / "b")
    assert all(n >= 0 for n in aioray.get([a.spin.remote(x, y), b.spin.remote(y, x)],
                                          timeout=DEADLINE + 5))


# -- crashes are actor deaths -------------------------------------------------------------------
def test_ray_fault_tolerance_example_runs_to_its_end(ray: object) -> None:
    """Ray's actor fault-tolerance example: the process exits after 10 calls; with
    max_restarts=4 the actor comes back (``__init__`` again) and the program goes on."""
    @aioray.remote(max_restarts=4, max_task_retries=-1)
    class Actor:
        def __init__(self) -> None:
            self.counter = 0

        def increment_and_possibly_fail(self) -> int:
            if self.counter == 10:
                os._exit(0)
            self.counter += 1
            return self.counter

    actor = Actor.remote()
    seen = [aioray.get(actor.increment_and_possibly_fail.remote()) for _ in range(50)]
    # Each incarnation counts 1..10, then dies on its 11th call, which is retried on the next.
    assert seen == list(range(1, 11)) * 5
    with pytest.raises(RayActorError):  # the fifth death is beyond max_restarts=4
        aioray.get(actor.increment_and_possibly_fail.remote())


def test_process_exit_fails_calls_with_the_exit_code(ray: object) -> None:
    a = Counter.remote()
    pid = aioray.get(a.pid.remote())
    with pytest.raises(ActorDiedError) as info:
        aioray.get(a.exit_now.remote(7))
    assert "exit code 7" in str(info.value)
    assert info.value.cause is not None and "exit code 7" in str(info.value.cause)
    with pytest.raises(ActorDiedError):  # later calls: the same death
        aioray.get(a.incr.remote())
    wait_until(lambda: gone(pid), "the actor process to be gone")


def test_segfault_kills_only_that_actor(ray: object) -> None:
    a, other = Counter.remote(), Counter.remote()
    aioray.get(other.incr.remote())
    with pytest.raises(ActorDiedError, match="SIGSEGV"):
        aioray.get(a.segfault.remote())
    assert aioray.get(other.incr.remote()) == 2  # everyone else is unaffected

    @aioray.remote
    def still_works() -> int:
        return 1
    assert aioray.get(still_works.remote()) == 1


def test_exit_in_init_is_a_creation_failure(ray: object) -> None:
    @aioray.remote
    class Dies:
        def __init__(self) -> None:
            os._exit(1)

        def f(self) -> int:
            return 1

    with pytest.raises(ActorDiedError, match="__init__"):
        aioray.get(Dies.remote().f.remote())


def test_kill_during_a_call_ends_the_process(ray: object) -> None:
    a = Counter.remote()
    pid = aioray.get(a.pid.remote())
    running = a.sleep.remote(60)
    queued = a.incr.remote()
    aioray.kill(a)
    for ref in (running, queued):
        with pytest.raises(ActorDiedError):
            aioray.get(ref, timeout=DEADLINE)
    wait_until(lambda: gone(pid), "the killed actor's process to be gone")


def test_restart_sends_queued_calls_to_the_new_instance(ray: object, tmp_path: Path) -> None:
    @aioray.remote(max_restarts=1)
    class Once:
        def __init__(self, marker: str) -> None:
            self.first = not os.path.exists(marker)
            Path(marker).touch()

        def crash_first_time(self) -> None:
            if self.first:
                os._exit(1)

        def incarnation(self) -> tuple[bool, int, bool]:
            ctx = aioray.get_runtime_context()
            return self.first, os.getpid(), ctx.was_current_actor_reconstructed

    a = Once.remote(str(tmp_path / "m"))
    _, pid1, restarted = aioray.get(a.incarnation.remote())
    assert not restarted
    crash = a.crash_first_time.remote()
    after = [a.incarnation.remote() for _ in range(3)]  # queued behind the crash
    with pytest.raises(ActorDiedError):  # max_task_retries=0: the running call fails
        aioray.get(crash)
    for first, pid, restarted in aioray.get(after, timeout=DEADLINE):
        assert (first, restarted) == (False, True) and pid != pid1


def test_unlimited_restarts(ray: object) -> None:
    @aioray.remote(max_restarts=-1, max_task_retries=-1)
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def call(self) -> int:
            self.calls += 1
            if self.calls == 2:
                os._exit(1)
            return os.getpid()

    a = Flaky.remote()
    pids = {aioray.get(a.call.remote(), timeout=DEADLINE) for _ in range(12)}
    assert len(pids) >= 6  # a new process every second call, never given up


def test_running_call_is_retried_per_max_task_retries(ray: object, tmp_path: Path) -> None:
    @aioray.remote(max_restarts=1, max_task_retries=1)
    class Retry:
        def work(self, marker: str) -> str:
            if not os.path.exists(marker):
                Path(marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return "done on retry"

    assert aioray.get(Retry.remote().work.remote(str(tmp_path / "m")),
                      timeout=DEADLINE) == "done on retry"


# -- the process environment --------------------------------------------------------------------
def test_gpu_actors_see_their_own_devices() -> None:
    aioray.init(num_cpus=2, num_gpus=2)

    @aioray.remote(num_gpus=1)
    class Gpu:
        def devices(self) -> tuple[str | None, list[int]]:
            return os.environ.get("CUDA_VISIBLE_DEVICES"), aioray.get_gpu_ids()

    a, b = Gpu.remote(), Gpu.remote()
    (da, ia), (db, ib) = aioray.get([a.devices.remote(), b.devices.remote()])
    assert {da, db} == {"0", "1"}
    assert [int(da)] == ia and [int(db)] == ib
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != da  # the driver's is untouched


def test_environ_cwd_and_globals_stay_in_the_actor(ray: object, tmp_path: Path) -> None:
    @aioray.remote
    class Messy:
        def mess(self, where: str) -> int:
            global COUNTER
            os.environ["AIORAY_TEST_LEAK"] = "yes"
            os.chdir(where)
            COUNTER += 1
            return COUNTER

        def look(self) -> tuple[str | None, str, int]:
            return os.environ.get("AIORAY_TEST_LEAK"), os.getcwd(), COUNTER

    cwd = os.getcwd()
    a, b = Messy.remote(), Messy.remote()
    assert aioray.get(a.mess.remote(str(tmp_path))) == 1
    assert aioray.get(a.look.remote()) == ("yes", str(tmp_path), 1)
    assert aioray.get(b.look.remote()) == (None, cwd, 0)
    assert "AIORAY_TEST_LEAK" not in os.environ and os.getcwd() == cwd and COUNTER == 0


def test_runtime_env_applies_to_the_actor_process(ray: object, tmp_path: Path) -> None:
    a = Counter.options(runtime_env={"env_vars": {"AIORAY_ACTOR_ENV": "on"},
                                     "working_dir": str(tmp_path)}).remote()

    @aioray.remote
    def look() -> str | None:
        return os.environ.get("AIORAY_ACTOR_ENV")

    @aioray.remote
    class Env:
        def look(self) -> tuple[str | None, str | None, str]:
            return (os.environ.get("AIORAY_ACTOR_ENV"), os.environ.get("AIORAY_JOB_ENV"),
                    os.getcwd())

    assert aioray.get(a.pid.remote()) != os.getpid()
    assert aioray.get(look.remote()) is None
    e = Env.options(runtime_env={"env_vars": {"AIORAY_ACTOR_ENV": "on"},
                                 "working_dir": str(tmp_path)}).remote()
    assert aioray.get(e.look.remote()) == ("on", None, str(tmp_path))


def test_job_runtime_env_reaches_actor_processes(tmp_path: Path) -> None:
    aioray.init(num_cpus=2, runtime_env={"env_vars": {"AIORAY_JOB_ENV": "job"}})

    @aioray.remote
    class Env:
        def look(self) -> tuple[str | None, str | None]:
            return os.environ.get("AIORAY_JOB_ENV"), os.environ.get("AIORAY_ACTOR_ENV")

    assert aioray.get(Env.remote().look.remote()) == ("job", None)
    a = Env.options(runtime_env={"env_vars": {"AIORAY_ACTOR_ENV": "mine"}}).remote()
    assert aioray.get(a.look.remote()) == ("job", "mine")


def test_assigned_resources_in_tasks_and_actors() -> None:
    aioray.init(num_cpus=4, resources={"R": 2})

    @aioray.remote
    def task() -> dict[str, float]:
        return aioray.get_runtime_context().get_assigned_resources()

    @aioray.remote(num_cpus=2, resources={"R": 1})
    class Holder:
        def mine(self) -> dict[str, float]:
            return aioray.get_runtime_context().get_assigned_resources()

        def ids(self) -> tuple[str | None, str | None, str]:
            ctx = aioray.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_actor_name(), ctx.namespace

    assert aioray.get(task.remote()) == {"CPU": 1.0}
    assert aioray.get(task.options(num_cpus=2).remote()) == {"CPU": 2.0}
    h = Holder.options(name="holder", namespace="team").remote()
    assert aioray.get(h.mine.remote()) == {"CPU": 2.0, "R": 1.0}
    t = Holder.options(executor="thread", num_cpus=1, resources={}).remote()
    assert aioray.get(t.mine.remote()) == {"CPU": 1.0}
    assert aioray.get(h.ids.remote()) == (h._actor_id.hex(), "holder", "team")


# -- everything keeps working across the boundary ----------------------------------------------
def test_generator_methods_stream_from_the_process(ray: object) -> None:
    @aioray.remote
    class Gen:
        def items(self, n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                yield i * i

        @aioray.method(num_returns=3)
        def three(self):  # type: ignore[no-untyped-def]
            yield from (1, 2, 3)

    g = Gen.remote()
    assert [aioray.get(r) for r in g.items.remote(5)] == [0, 1, 4, 9, 16]
    assert aioray.get(g.three.remote()) == [1, 2, 3]
    slow = g.items.options(_generator_backpressure_num_objects=1).remote(20)
    assert [aioray.get(r) for r in slow] == [i * i for i in range(20)]


def test_large_arrays_cross_through_shared_memory(ray: object) -> None:
    @aioray.remote
    class Arrays:
        def double(self, a: np.ndarray) -> np.ndarray:
            return a * 2

    big = np.arange(2_000_000, dtype=np.float64)
    out = aioray.get(Arrays.remote().double.remote(big))
    assert out.shape == big.shape and out[-1] == big[-1] * 2


def test_handles_work_from_process_tasks_and_other_actors(ray: object) -> None:
    c = Counter.remote()

    @aioray.remote
    def bump(counter: object, k: int) -> int:
        return aioray.get(counter.incr.remote(k))  # type: ignore[attr-defined]

    @aioray.remote
    class Caller:
        def __init__(self, counter: object) -> None:
            self.counter = counter

        def go(self) -> int:
            return aioray.get(self.counter.incr.remote(100))  # type: ignore[attr-defined]

    aioray.get([bump.remote(c, 1) for _ in range(5)])
    assert aioray.get(Caller.remote(c).go.remote()) == 105


def test_nested_remote_and_wait_inside_a_method(ray: object) -> None:
    @aioray.remote
    def square(x: int) -> int:
        return x * x

    @aioray.remote
    class Fan:
        def fan(self, n: int) -> int:
            refs = [square.remote(i) for i in range(n)]
            ready, _ = aioray.wait(refs, num_returns=n, timeout=DEADLINE)
            return sum(aioray.get(ready))

    assert aioray.get(Fan.remote().fan.remote(6)) == sum(i * i for i in range(6))


def test_blocked_method_lends_its_cpu() -> None:
    """An actor holding every CPU waits in get() for a task that needs one: it lends its CPU
    while blocked (as Ray and aioray's tasks do), else this would never finish."""
    aioray.init(num_cpus=2)

    @aioray.remote(num_cpus=1)
    def one() -> int:
        return 1

    @aioray.remote(num_cpus=2)
    class Greedy:
        def wait_for_child(self) -> int:
            return aioray.get(one.remote(), timeout=DEADLINE)

    assert aioray.get(Greedy.remote().wait_for_child.remote(), timeout=DEADLINE + 5) == 1


def test_concurrency_groups_run_in_the_process(ray: object, tmp_path: Path) -> None:
    @aioray.remote(concurrency_groups={"io": 2})
    class Grouped:
        @aioray.method(concurrency_group="io")
        def wait_for(self, mark: str) -> int:
            deadline = time.monotonic() + DEADLINE
            while not os.path.exists(mark):
                if time.monotonic() > deadline:
                    raise TimeoutError(mark)
                time.sleep(0.005)
            return os.getpid()

        def release(self, mark: str) -> int:
            Path(mark).touch()
            return os.getpid()

    g = Grouped.remote()
    mark = str(tmp_path / "go")
    waiting = [g.wait_for.remote(mark) for _ in range(2)]  # both "io" threads block
    pid = aioray.get(g.release.remote(mark), timeout=DEADLINE)  # the default group is free
    assert aioray.get(waiting, timeout=DEADLINE) == [pid, pid] and pid != os.getpid()


def test_named_actor_and_get_if_exists(ray: object) -> None:
    a = Counter.options(name="c1", get_if_exists=True).remote()
    b = Counter.options(name="c1", get_if_exists=True).remote()
    aioray.get(a.incr.remote())
    assert aioray.get(b.incr.remote()) == 2
    assert aioray.get(aioray.get_actor("c1").pid.remote()) == aioray.get(a.pid.remote())


def test_cancel_running_method_sets_is_canceled(ray: object) -> None:
    @aioray.remote(max_concurrency=2)
    class Polls:
        def __init__(self) -> None:
            self.started = False

        def work(self) -> str:
            self.started = True
            deadline = time.monotonic() + DEADLINE
            while not aioray.get_runtime_context().is_canceled():
                if time.monotonic() > deadline:
                    return "never cancelled"
                time.sleep(0.01)
            return "saw the cancel"

        def is_started(self) -> bool:
            return self.started

    p = Polls.remote()
    ref = p.work.remote()
    wait_until(lambda: aioray.get(p.is_started.remote()), "the method to start")
    aioray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        aioray.get(ref, timeout=DEADLINE)
    assert aioray.get(p.is_started.remote())  # the actor lives on


def test_exit_actor_terminate_and_shutdown_hook(ray: object, tmp_path: Path) -> None:
    @aioray.remote
    class Ends:
        def __init__(self, mark: str) -> None:
            self.mark = mark

        def pid(self) -> int:
            return os.getpid()

        def leave(self) -> None:
            aioray.actor.exit_actor()

        def __ray_shutdown__(self) -> None:
            Path(self.mark).write_text(str(os.getpid()))

    a = Ends.remote(str(tmp_path / "a"))
    pid = aioray.get(a.pid.remote())
    with pytest.raises(ActorDiedError, match="exit_actor"):
        aioray.get(a.leave.remote())
    wait_until(lambda: (tmp_path / "a").exists() and gone(pid), "the hook and the exit")
    assert (tmp_path / "a").read_text() == str(pid)  # the hook ran in the actor's process

    b = Ends.remote(str(tmp_path / "b"))
    pid = aioray.get(b.pid.remote())
    b.__ray_terminate__.remote()
    wait_until(lambda: (tmp_path / "b").exists() and gone(pid), "terminate")


def test_shutdown_leaves_no_actor_process_behind() -> None:
    aioray.init(num_cpus=2)
    actors = [Counter.remote() for _ in range(3)]
    pids = aioray.get([a.pid.remote() for a in actors])
    busy = actors[0].sleep.remote(60)
    aioray.shutdown()
    with pytest.raises(RayActorError):
        aioray.get(busy, timeout=DEADLINE)
    wait_until(lambda: all(gone(p) for p in pids), "every actor process to end")
    kids = [p for p in psutil.Process().children(recursive=True) if p.status() != "zombie"]
    assert kids == []


async def test_shutdown_on_the_loop_thread_kills_actor_processes_without_waiting() -> None:
    """An async app calling the sync shutdown() on its own loop: the loop cannot run, so the
    zygote's exit reports of its forks never arrive; shutdown must not wait for them (it waited
    2 s per actor process)."""
    aioray.init(num_cpus=2)
    actors = [Counter.remote() for _ in range(4)]
    pids = await asyncio.gather(*[a.pid.remote() for a in actors])
    start = time.monotonic()
    aioray.shutdown()
    assert time.monotonic() - start < 4.0  # 8 s before; the bound leaves room for a slow host
    wait_until(lambda: all(gone(p) for p in pids), "every actor process to end")


def test_out_of_scope_actor_process_ends(ray: object) -> None:
    a = Counter.remote()
    pid = aioray.get(a.pid.remote())
    del a
    wait_until(lambda: gone(pid), "the out-of-scope actor's process to end")


def test_actor_processes_are_forked_cheaply(ray: object) -> None:
    """Creation takes an idle worker or forks the zygote: no interpreter start per actor."""
    first = Counter.remote()
    aioray.get(first.pid.remote())
    actors = [Counter.remote() for _ in range(5)]
    pids = aioray.get([a.pid.remote() for a in actors])
    zygote = aioray._backend.registry.current().workers.zygote  # type: ignore[attr-defined]
    assert zygote is not None
    parents = {psutil.Process(p).ppid() for p in pids}
    assert zygote.proc.pid in parents


def test_tempdir_is_not_shared_state(ray: object) -> None:
    """A sync actor's globals are its own: a module global set through one actor is not
    seen by the driver (in-driver thread actors would share it)."""
    @aioray.remote
    class SetsTemp:
        def set(self) -> str:
            tempfile.tempdir = "/nonexistent-aioray"
            return tempfile.gettempdir()

    assert aioray.get(SetsTemp.remote().set.remote()) == "/nonexistent-aioray"
    assert tempfile.tempdir != "/nonexistent-aioray"


# -- process trees ---------------------------------------------------------------------------
def test_processes_started_by_tasks_and_actors_die_with_the_runtime() -> None:
    """A subprocess started by a task or an actor method ends with shutdown() (Ray kills a
    worker's children on Linux)."""
    aioray.init(num_cpus=2)

    @aioray.remote
    def start_child() -> int:
        import subprocess
        return subprocess.Popen(["sleep", "300"]).pid

    @aioray.remote
    class Starter:
        def start(self) -> int:
            import subprocess
            return subprocess.Popen(["sleep", "300"]).pid

    starter = Starter.remote()
    pids = [aioray.get(start_child.remote()), aioray.get(starter.start.remote())]
    assert not any(gone(p) for p in pids)
    aioray.shutdown()
    wait_until(lambda: all(gone(p) for p in pids), "the children of workers to end")


def test_killed_actor_takes_its_children_along(ray: object) -> None:
    @aioray.remote
    class Starter:
        def start(self) -> int:
            import subprocess
            return subprocess.Popen(["sleep", "300"]).pid

    s = Starter.remote()
    child = aioray.get(s.start.remote())
    aioray.kill(s)
    wait_until(lambda: gone(child), "the killed actor's child to end")


def test_driver_killed_by_sigkill_leaves_no_worker_tree(tmp_path: Path) -> None:
    """Even a SIGKILLed driver takes its workers, actor processes and their children down:
    each notices its socket close and ends its own process group."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "import aioray\n"
        "aioray.init(num_cpus=2)\n"
        "@aioray.remote\n"
        "def child():\n"
        "    return subprocess.Popen(['sleep', '300']).pid\n"
        "@aioray.remote\n"
        "class A:\n"
        "    def child(self):\n"
        "        return subprocess.Popen(['sleep', '300']).pid\n"
        "a = A.remote()\n"
        "print(aioray.get(child.remote()), aioray.get(a.child.remote()), flush=True)\n"
        "time.sleep(300)\n")
    import subprocess as sp
    proc = sp.Popen([sys.executable, str(script)], stdout=sp.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.kill()
        proc.wait()
        wait_until(lambda: all(gone(p) for p in [*pids, *tree]),
                    "every process under the killed driver to end")
    finally:
        if proc.poll() is None:
            proc.kill()
