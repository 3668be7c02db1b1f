"""Worker processes for sync task bodies: spawning, reuse, crash detection, replacement.

Each worker is one ``python -m aioray._worker`` child connected by a socketpair. Unlike
``ProcessPoolExecutor`` a dead worker fails only the task it was running (``on_lost``); the pool
replaces it on demand. Idle workers are reused LIFO (warm caches) and beyond ``max_idle`` they
are retired.

Pinning across processes: every ref sent to a worker is pinned in ``borrowed`` with the sequence
number of the frame that carried it; the worker releases it with the number of frames it had
seen. A pin goes only when no later frame carried the ref — so nothing in flight is ever freed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aioray._engine import tracing
from aioray._engine.zygote import ForkedProcess, Zygote
from aioray._objects.serialization import SerializedObject
from aioray._objects.shm import SharedBuffer
from aioray._wire.framing import FrameProtocol
from aioray._wire.messages import (
    Call,
    Cancel,
    Done,
    Exit,
    Exited,
    Failed,
    Init,
    Ready,
    Release,
    Req,
    Yield,
)
from aioray.exceptions import WorkerCrashedError

if TYPE_CHECKING:
    from aioray._engine.actor_process import ActorProcess
    from aioray._engine.runtime import Runtime

T = TypeVar("T")

# A worker started by us, or forked by the zygote (for actors).
Process = subprocess.Popen[bytes] | ForkedProcess

# The directory holding the aioray package (this file is aioray/_engine/worker_pool.py).
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def adopt_segments(stored: Any) -> None:
    """The driver takes ownership of shared memory a worker created for a result, and maps it
    at once: a finished task's value must stay readable even after shutdown() sweeps
    ``/dev/shm`` (one mmap per result of at least 1 MiB)."""
    if type(stored) is SerializedObject:
        for b in stored.buffers:
            if isinstance(b, SharedBuffer):
                b.adopt()
                b.map()


class TaskRun:
    """What the driver waits for while a worker runs one task."""

    __slots__ = ("fut", "on_item", "task_id")

    def __init__(self, task_id: bytes, fut: asyncio.Future[Done | Failed],
                 on_item: Callable[[Any], None] | None) -> None:
        self.task_id = task_id
        self.fut = fut
        self.on_item = on_item


class WorkerHandle:
    """The driver's view of one worker process."""

    def __init__(self, pool: WorkerPool, proc: Process) -> None:
        self.pool = pool
        self.proc = proc
        self.pid = proc.pid
        self.protocol: FrameProtocol | None = None
        self.ready: asyncio.Future[None] = pool.loop.create_future()
        self.known_fns: set[bytes] = set()
        self.borrowed: dict[bytes, list[Any]] = {}
        self.run: TaskRun | None = None
        self.dead = False
        self.exit_code: int | None = None
        self.seq = 0
        self.calls: dict[bytes, int] = {}
        self.killed_on_purpose = False
        # The actor this worker hosts for the rest of its life (its results go there).
        self.host: ActorProcess | None = None

    # -- sending ------------------------------------------------------------------------
    def send(self, msg: tuple[Any, ...], carrying: Iterable[Any] = ()) -> None:
        """Send ``msg``; ``carrying`` lists the stored values in it whose refs must be pinned."""
        if self.dead or self.protocol is None:
            return
        self.seq += 1
        seq = self.seq
        for stored in carrying:
            if type(stored) is SerializedObject:
                for ref in stored.refs:
                    self.borrowed[ref.binary()] = [ref, seq]
        self.protocol.send(msg)

    def pin_created(self, ref: Any) -> None:
        """A ref the worker created itself (submit/put): pinned until it releases it."""
        self.borrowed.setdefault(ref.binary(), [ref, 0])

    def release(self, items: list[tuple[bytes, int]]) -> None:
        for id, seen in items:
            pin = self.borrowed.get(id)
            if pin is not None and pin[1] <= seen:
                del self.borrowed[id]

    # -- receiving ----------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        tp = type(msg)
        host = self.host
        trace = tracing.ACTIVE
        if trace is not None and (tp is Done or tp is Yield):  # timeline: large transfers
            trace.transfer(msg.task_id, msg.stored, self.pid)
        if host is not None and (tp is Done or tp is Failed or tp is Yield or tp is Exited):
            host.on_message(msg)
            return
        run = self.run
        if tp is Yield:
            adopt_segments(msg.stored)
            if run is not None and run.task_id == msg.task_id and run.on_item is not None:
                run.on_item(msg.stored)
        elif tp is Done or tp is Failed:
            if tp is Done:
                stored = msg.stored
                for s in stored if isinstance(stored, list) else (stored,):
                    adopt_segments(s)
            if run is not None and run.task_id == msg.task_id and not run.fut.done():
                run.fut.set_result(msg)
        elif tp is Req:
            self.pool.runtime.backchannel.request(self, msg.rid, msg.op, msg.args)
        elif tp is Call:
            self.pool.runtime.backchannel.call(self, msg.op, msg.args)
        elif tp is Release:
            self.release(msg.items)
        elif tp is Ready:
            if not self.ready.done():
                self.ready.set_result(None)

    def on_lost(self, exc: Exception | None) -> None:
        if self.dead:
            return
        self.dead = True
        self.borrowed.clear()
        self.pool._lost(self)
        if self.host is not None:
            self.host.lost()
        if not self.ready.done():
            self.ready.set_exception(WorkerCrashedError("A worker process died while starting."))
            self.ready.exception()  # whoever awaited it may be gone (shutdown): no log noise
        run = self.run
        if run is not None and not run.fut.done():
            self.pool.loop.create_task(self._report_crash(run))

    async def exit_status(self) -> str:
        """How the process ended, once it has: "exit code 1", "killed by signal SIGKILL"."""
        code = await in_thread(self.pool.loop, lambda: _wait_exit(self.proc))
        self.exit_code = code
        return (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                and -code in signal.Signals._value2member_map_ else f"exit code {code}")

    async def _report_crash(self, run: TaskRun) -> None:
        how = await self.exit_status()
        code = self.exit_code
        if not run.fut.done():
            run.fut.set_exception(WorkerCrashedError(
                f"The worker process (pid={self.pid}) running this task died ({how}).",
                exit_code=code))

    def start(self, task_id: bytes, on_item: Callable[[Any], None] | None) -> TaskRun:
        run = TaskRun(task_id, self.pool.loop.create_future(), on_item)
        self.run = run
        if self.dead:  # nothing would ever answer: fail now rather than wait forever
            run.fut.set_exception(WorkerCrashedError(
                f"The worker process (pid={self.pid}) died before it could run this task.",
                exit_code=self.proc.returncode))
        return run

    def cancel(self, task_id: bytes, force: bool) -> None:
        if self.dead:
            return
        if force:
            self.kill()
        else:
            self.send(Cancel(task_id))

    def kill(self) -> None:
        """SIGKILL the worker and every process its code started (its process group)."""
        self.killed_on_purpose = True
        kill_group(self.pid)
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass

    def exit(self) -> None:
        self.send(Exit())
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()


def in_thread(loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> asyncio.Future[T]:
    """``fn()`` on a thread of its own (waits on processes). Not ``run_in_executor``: at
    interpreter exit executors refuse new work, and shutdown at exit still has to reap."""
    fut: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    def run() -> None:
        try:
            value, error = fn(), None
        except BaseException as e:
            value, error = None, e
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass
    threading.Thread(target=run, name="aioray-reaper", daemon=True).start()
    return fut


def _driver_logging() -> tuple[int, str | None] | None:
    """The driver's root logging level and format, when the program set logging up: worker
    processes follow it (as Ray's workers do)."""
    root = logging.getLogger()
    if not root.handlers:
        return None
    return root.level, getattr(root.handlers[0].formatter, "_fmt", None)


def kill_group(pid: int) -> None:
    """SIGKILL the process group a worker leads (it and what its tasks started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_exit(proc: Process) -> int | None:
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


class WorkerPool:
    """Spawns and reuses worker processes; owned by one runtime, lives on its loop."""

    def __init__(self, runtime: Runtime, max_idle: int) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self.max_idle = max(1, max_idle)
        self.workers: set[WorkerHandle] = set()
        self._idle: list[WorkerHandle] = []
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._spawning = 0
        self.started = 0
        self.closed = False
        self.zygote: Zygote | None = None  # started by the first actor that needs a process

    def _take_idle(self) -> WorkerHandle | None:
        """The most recently idle live worker (warm caches), if any."""
        while self._idle:
            w = self._idle.pop()
            if not w.dead:
                return w
        return None

    async def acquire(self) -> WorkerHandle:
        w = self._take_idle()
        if w is not None:
            return w
        fut: asyncio.Future[WorkerHandle] = self.loop.create_future()
        self._waiters.append(fut)
        if self._spawning < len(self._waiters):
            self._spawning += 1
            self.loop.create_task(self._spawn_for_waiter())
        try:
            w = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            raise
        if w.dead:  # it died after being handed to us, before we could use it: take another
            return await self.acquire()
        return w

    async def take(self) -> WorkerHandle:
        """A worker for an actor's whole life: it never comes back to the pool (the actor's
        state lives in it); ``retire`` or ``kill`` ends it with the actor. An idle worker if
        there is one (a hand-off), else a fork of the zygote (a few ms, not a Python start)."""
        w = self._take_idle()
        if w is not None:
            return w
        if self.closed:
            raise RuntimeError("the worker pool is shut down")
        if self.zygote is None or self.zygote.dead:
            self.zygote = Zygote(self.loop, self._worker_env())
        proc, parent = await self.zygote.fork()
        return await self._connect(proc, parent)

    def release(self, w: WorkerHandle, retire: bool = False) -> None:
        w.run = None
        if w.dead:
            return
        if retire or self.closed:
            self._retire(w)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(w)
                return
        if len(self._idle) >= self.max_idle:
            self._retire(w)
        else:
            self._idle.append(w)

    def retire(self, w: WorkerHandle) -> None:
        """End a worker taken with ``take``: it exits once its queued frames are read."""
        self._retire(w)

    def _retire(self, w: WorkerHandle) -> None:
        self.workers.discard(w)
        w.exit()

    def _lost(self, w: WorkerHandle) -> None:
        self.workers.discard(w)
        try:
            self._idle.remove(w)
        except ValueError:
            pass

    async def _spawn_for_waiter(self) -> None:
        try:
            w = await self.spawn()
        except BaseException as e:
            self._spawning -= 1
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
                    break
            return
        self._spawning -= 1
        self.release(w)

    @staticmethod
    def _worker_env() -> dict[str, str]:
        env = dict(os.environ)
        env["AIORAY_WORKER"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PKG_PARENT, env.get("PYTHONPATH", "")) if p)
        return env

    async def spawn(self) -> WorkerHandle:
        if self.closed:
            raise RuntimeError("the worker pool is shut down")
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aioray._worker", str(child.fileno())],
                pass_fds=[child.fileno()], env=self._worker_env(), start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        return await self._connect(proc, parent)

    async def _connect(self, proc: Process, parent: socket.socket) -> WorkerHandle:
        w = WorkerHandle(self, proc)
        self.workers.add(w)
        self.started += 1

        def make_protocol() -> FrameProtocol:
            proto = FrameProtocol(w.on_message, w.on_lost)
            w.protocol = proto
            return proto

        await self.loop.create_unix_connection(make_protocol, sock=parent)
        rt = self.runtime
        w.send(Init(rt.driver_pid, list(sys.path), rt.namespace, rt.job_id, rt.node_id,
                    rt.log_to_driver, _driver_logging()))
        await asyncio.wait_for(asyncio.shield(w.ready), timeout=120)
        return w

    async def shutdown(self, timeout: float = 2.0) -> None:
        """Ask every worker to exit; kill the ones that do not within ``timeout``."""
        self.closed = True
        for fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        workers = list(self.workers)
        for w in workers:
            if w.host is not None and w.host.stopping:
                continue  # an actor told to end (its __ray_shutdown__ runs): it exits itself
            if w.ready.done():
                w.exit()
            else:  # still starting up (has no work): it would hear "exit" only once imported
                w.kill()

        def reap() -> None:
            # One deadline for all, so stragglers cost ``timeout`` in total, not each.
            deadline = time.monotonic() + timeout
            for w in workers:
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill_group(w.pid)  # and what its tasks started (a worker that exits
                    w.proc.kill()      # by itself takes its group down: end_process)
                    w.proc.wait()
        await in_thread(self.loop, reap)
        self.workers.clear()
        self._idle.clear()
        if self.zygote is not None:
            self.zygote.close()
            await in_thread(self.loop, self.zygote.reap)
            self.zygote = None

    def kill_all_now(self) -> None:
        """Last-resort cleanup when the loop cannot run (interpreter exit, or ``shutdown()``
        called on the loop's own thread)."""
        procs = [w.proc for w in self.workers]
        for w in list(self.workers):
            try:
                kill_group(w.pid)
                w.proc.kill()
            except Exception:
                pass
        self.workers.clear()
        if self.zygote is not None:
            # Its forks are its children: once it is gone, init reaps them. Their exit reports
            # would arrive on the loop, which cannot run now, so they are not waited for.
            self.zygote.proc.kill()
            procs.append(self.zygote.proc)
        for proc in procs:
            if not isinstance(proc, ForkedProcess):
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
