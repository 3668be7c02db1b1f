"""Tasks from ``.remote()`` to resolved refs.

One coroutine per task on the runtime loop walks it through its life:

    wait for top-level ref arguments  →  acquire resources  →  execute  →  resolve outputs
                                                                ↺ retry (max_retries / retry_exceptions)

Where it executes depends on the function: ``async def`` bodies run right there as coroutines;
sync bodies go to a worker process (default) or a thread (``executor="thread"``, local mode).
Generator bodies feed a sink (stream, static or dynamic) item by item from any of those places.

Every output is resolved exactly once, to a value or a typed error — on success, failure, cancel,
worker crash or shutdown (``fail_all``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aioray._engine.context import current_task
from aioray._engine.placement import captured_opts
from aioray._engine.scheduling.resources import requester
from aioray._engine.states import Executor
from aioray._engine.streams import (
    GeneratorStream,
    make_outputs,
    user_outputs,
)
from aioray._exec.invoke import AppError, Body, run_async, run_sync
from aioray._handles.args import pack_args
from aioray._handles.options import merge_runtime_env, resource_request
from aioray._handles.ref import ObjectRef
from aioray._objects.ids import new_task_id
from aioray._objects.serialization import ErrorValue
from aioray._objects.store import PENDING, ObjectEntry
from aioray._wire.messages import Credit, Failed, Fn, Task
from aioray.exceptions import (
    OutOfMemoryError,
    RayTaskError,
    RuntimeShutdownError,
    TaskCancelledError,
    TaskUnschedulableError,
    WorkerCrashedError,
)

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime
    from aioray._engine.scheduling.resources import Grant, ResourcePool
    from aioray._engine.worker_pool import WorkerHandle
    from aioray._handles.function import RemoteFunction

_NO_RESOURCES: dict[str, float] = {}
_ONE_CPU: dict[str, float] = {"CPU": 1.0}



def return_count(nret: Any) -> int:
    """The values a body returns for ``num_returns`` (generators emit instead)."""
    return nret if isinstance(nret, int) else 1


class TaskSpec:
    """One submitted task and everything needed to run, retry or cancel it."""

    __slots__ = (
        "atask", "attempt", "cancelled", "children", "created", "deps", "executor", "fn", "grant",
        "max_retries", "name", "nret", "opts", "parent", "payload", "pid", "pool", "req",
        "retry_exceptions", "returns", "rf", "sink", "started", "task_id", "thread_ident",
        "worker",
    )

    def __init__(self, task_id: bytes, rf: RemoteFunction[Any, Any], payload: Any,
                 deps: list[ObjectRef[Any]], opts: dict[str, Any]) -> None:
        self.task_id = task_id
        self.rf = rf
        self.fn = rf._function
        self.name = opts.get("name") or rf._name
        self.payload = payload
        self.deps: Sequence[ObjectRef[Any]] = deps or ()
        self.opts = opts
        self.returns: list[ObjectEntry] = []
        self.sink: Any = None
        # A generator function streams unless the caller asked for a fixed count.
        nret = opts.get("num_returns")
        # None: the default (Ray's too): a streaming generator, or one return value.
        self.nret: Any = 1 if nret is None and not rf._is_generator else nret
        self.attempt = 0
        mr = opts.get("max_retries")
        self.max_retries = 3 if mr is None else mr
        self.retry_exceptions = opts.get("retry_exceptions") or False
        self.cancelled = False
        self.children: list[bytes] | None = None  # made on the first child
        self.parent: bytes | None = None
        self.atask: asyncio.Task[None] | None = None
        self.worker: WorkerHandle | None = None
        self.thread_ident: int | None = None
        self.grant: Grant | None = None
        self.executor = Executor.LOOP
        self.req: dict[str, float] = {}
        self.pool: ResourcePool | None = None
        self.created = time.time()  # for the state API
        self.started: float | None = None  # its body began (this attempt)
        self.pid = 0  # the process its body ran in (a worker's, else this one)

    @property
    def streaming(self) -> bool:
        return self.sink is not None

    def retries_left(self) -> bool:
        """Another attempt is allowed if this one's worker dies."""
        return not self.cancelled and (self.max_retries == -1 or
                                       self.attempt < self.max_retries)

    def can_retry(self, error: BaseException) -> bool:
        if not self.retries_left():
            return False
        if isinstance(error, (WorkerCrashedError, OutOfMemoryError)):
            return True
        if isinstance(error, RayTaskError):
            rex = self.retry_exceptions
            if rex is True:
                return True
            if rex:
                return isinstance(error.cause, tuple(rex))
        return False

    def fail(self, error: BaseException) -> None:
        """Resolve every output to ``error`` (first resolution wins)."""
        fail_outputs(self.sink, self.returns, error)


def _driver_runtime_env(name: str, executor: Executor) -> str:
    where = ("an async def task: a coroutine on aioray's event loop" if executor is Executor.LOOP
             else "a thread task (executor='thread' or local mode): a thread of this process")
    return (f"runtime_env cannot apply to {name}, {where}, which shares the driver's one "
            "environment (os.environ, the working directory, sys.path) with every other "
            "thread, so it can't be set for one task. Only tasks in worker processes (sync "
            "def tasks, the default executor) get a runtime_env; the job's (init(runtime_env="
            "...)) does not apply to code in the driver either, as on Ray.")


# Ray's limits on a pickled remote function (FUNCTION_SIZE_WARN/ERROR_THRESHOLD).
FUNCTION_SIZE_WARN = 10 * 1024 * 1024
FUNCTION_SIZE_ERROR = 100 * 1024 * 1024


def _check_function_size(rf: RemoteFunction[Any, Any]) -> None:
    """First submission of a process task: pickle its function (what workers are sent) and
    refuse it, as Ray does, when it captured too much (a big array in its closure)."""
    try:
        size = len(rf._pickled_function())
    except Exception:
        return  # unpicklable: the task reports it when it runs
    if size < FUNCTION_SIZE_WARN:
        return
    advice = ("Check that its definition is not implicitly capturing a large array or other "
              "object in scope. Tip: use aioray.put() to put large objects in the object "
              "store and pass the ref as an argument.")
    mib = size // (1024 * 1024)
    if size >= FUNCTION_SIZE_ERROR:
        rf._pickled = None  # don't keep it
        raise ValueError(f"The remote function {rf._name!r} is too large ({mib} MiB > "
                         f"FUNCTION_SIZE_ERROR_THRESHOLD={FUNCTION_SIZE_ERROR >> 20} MiB). "
                         f"{advice}")
    warnings.warn(f"The remote function {rf._name!r} is very large ({mib} MiB). {advice}",
                  stacklevel=4)


# How long a worker told to stop (shutdown, the loop ending) may take before it is killed.
EXIT_GRACE = 1.0


def loop_ended_error() -> RuntimeShutdownError:
    """What work resolves to when the loop running aioray goes away under it (``asyncio.run``
    returned, or shutdown): a typed error, not an "unhandled" one — the user dropped nothing."""
    return RuntimeShutdownError(
        "The event loop running aioray ended (asyncio.run() returned, or shutdown()) while "
        "this was in flight; it was dropped. Await the refs you need before the loop ends.")


def fail_outputs(sink: Any, returns: Sequence[ObjectEntry], error: BaseException) -> None:
    """Resolve a task's or actor call's outputs — its generator sink, else its return
    entries — to ``error``; outputs already resolved keep their values."""
    if sink is not None:
        sink.finish(error)
    else:
        ev = ErrorValue(error)
        for e in returns:
            e.resolve(ev)


class TaskManager:
    """Submits, runs, retries and cancels tasks for one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.loop = runtime.loop
        self.tasks: dict[bytes, TaskSpec] = {}
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(32, int(runtime.total.get("CPU", 1)) * 4),
            thread_name_prefix="aioray-task")
        self._warned_infeasible: set[tuple[tuple[str, float], ...]] = set()

    # -- submission (any thread) ---------------------------------------------------------
    def submit(self, rf: RemoteFunction[Any, Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], opts: dict[str, Any]) -> Any:
        payload, deps = pack_args(args, kwargs, rf._name, self.rt.driver_pid, rf._function)
        parent = current_task.get()
        spec = self.make_spec(rf, payload, deps, opts, new_task_id(),
                              parent.task_id if parent is not None else None)
        self.rt.call_soon(self.start, spec)
        return self.outputs(spec)

    def make_spec(self, rf: RemoteFunction[Any, Any], payload: Any, deps: list[ObjectRef[Any]],
                  opts: dict[str, Any], task_id: bytes, parent: bytes | None) -> TaskSpec:
        spec = TaskSpec(task_id, rf, payload, deps, opts)
        spec.parent = parent
        if rf._is_async:
            spec.executor = Executor.LOOP
        elif opts.get("executor") == "thread" or self.rt.local_mode:
            spec.executor = Executor.THREAD
        else:
            spec.executor = Executor.PROCESS
            if rf._pickled is None:
                _check_function_size(rf)
        if spec.executor is not Executor.PROCESS and opts.get("runtime_env"):
            raise ValueError(_driver_runtime_env(rf._name, spec.executor))
        if "num_cpus" in opts or "num_gpus" in opts or "resources" in opts:
            spec.req = resource_request(opts, 0.0 if rf._is_async else 1.0)
        else:  # the common case: a shared constant, never mutated
            spec.req = _NO_RESOURCES if rf._is_async else _ONE_CPU
        make_outputs(spec, self.rt, task_id, spec.name, rf._is_generator, spec.nret,
                     opts.get("_generator_backpressure_num_objects") or 0)
        return spec

    @staticmethod
    def outputs(spec: TaskSpec) -> Any:
        return user_outputs(spec.returns, spec.sink)

    # -- life of a task (loop thread) ----------------------------------------------------
    def start(self, spec: TaskSpec) -> None:
        if spec.parent is not None and spec.opts.get("scheduling_strategy") is None:
            parent = self.tasks.get(spec.parent)
            if parent is not None and (parent.opts.get("scheduling_strategy") is not None
                                       or parent.opts.get("placement_group") is not None):
                spec.opts = captured_opts(parent.opts, spec.opts)  # capture_child_tasks
        try:
            pool = self.rt.pool_for(spec.opts)
        except Exception as e:  # removed placement group, unsatisfiable node affinity, ...
            spec.fail(e)
            return
        spec.pool = pool
        if spec.req and not pool.feasible(spec.req):
            key = tuple(sorted(spec.req.items()))
            msg = (f"Task {spec.name} can never run: {pool.describe_infeasible(spec.req)}.")
            if key not in self._warned_infeasible:
                self._warned_infeasible.add(key)
                warnings.warn(msg, stacklevel=2)
            spec.fail(TaskUnschedulableError(msg))
            return
        self.tasks[spec.task_id] = spec
        if spec.parent is not None:
            parent = self.tasks.get(spec.parent)
            if parent is not None:
                if parent.children is None:
                    parent.children = []
                parent.children.append(spec.task_id)
                penv = parent.opts.get("runtime_env")
                if penv:  # inherited, as in Ray: the child's fields win, env_vars merge
                    spec.opts = {**spec.opts, "runtime_env": merge_runtime_env(
                        penv, spec.opts.get("runtime_env"))}
        if spec.executor is Executor.LOOP and not spec.deps and not spec.req and spec.sink is None:
            spec.atask = self.loop.create_task(self._run_simple(spec))
        else:
            spec.atask = self.loop.create_task(self._run(spec))

    async def _run_simple(self, spec: TaskSpec) -> None:
        """The hot path: an ``async def`` task with no ref arguments and no resources."""
        current_task.set(spec)  # the task runs in its own context copy: no reset needed
        spec.started = time.time()
        try:
            try:
                values = await run_async(spec.fn, spec.payload, (), spec.name, spec.nret,
                                         self.rt.driver_pid)
            except asyncio.CancelledError:
                spec.fail(TaskCancelledError(spec.task_id.hex()))
                return
            except AppError as e:  # SystemExit, KeyboardInterrupt too: the task's error
                err = e.error
                if spec.can_retry(err):
                    spec.attempt += 1
                    await self._run(spec)
                else:
                    spec.fail(err)
                return
            for entry, v in zip(spec.returns, values or (), strict=True):
                entry.resolve(v)
        finally:
            if self.tasks.pop(spec.task_id, None) is not None and self.rt.state.on:
                self.rt.state.task_done(spec)
            # The Task's context holds spec (current_task): drop spec -> Task so the pair is
            # not a reference cycle, freed (with the task's outputs) only by the cyclic GC.
            spec.atask = None

    async def _run(self, spec: TaskSpec) -> None:
        requester.set(f"the task {spec.name}")  # this Task's own context: no reset needed
        try:
            dep_values = await self._resolve_deps(spec) if spec.deps else []
            if dep_values is None:
                return
            oom_retry = False
            while True:
                monitor = self.rt.memory_monitor
                if oom_retry and monitor is not None:
                    await monitor.settle()  # no use retrying into the same memory pressure
                oom_retry = False
                grant = None
                if spec.req:
                    assert spec.pool is not None
                    grant = await spec.pool.acquire(spec.req)
                    spec.grant = grant
                try:
                    await self._execute(spec, dep_values, grant)
                    return
                except (AppError, WorkerCrashedError, OutOfMemoryError) as e:
                    err = e.error if isinstance(e, AppError) else e
                    if spec.can_retry(err):
                        spec.attempt += 1
                        if isinstance(err, OutOfMemoryError):
                            oom_retry = True  # waits for memory below, without the grant
                        continue
                    if isinstance(err, OutOfMemoryError) and spec.attempt:
                        err.args = (f"{err.args[0]} The task ran {spec.attempt + 1} times "
                                    "(max_retries used up).",)
                    if isinstance(err, WorkerCrashedError):
                        err.attempts = spec.attempt + 1
                        if spec.attempt:
                            err.args = (f"{err.args[0]} The task ran {spec.attempt + 1} "
                                        "times (max_retries used up).",)
                    spec.fail(err)
                    return
                finally:
                    spec.grant = None
                    if grant is not None:
                        grant.release()
        except asyncio.CancelledError:
            spec.fail(TaskCancelledError(spec.task_id.hex()) if spec.cancelled
                      else loop_ended_error())
        except BaseException as e:  # a bug of ours: still resolve, and say what happened
            spec.fail(e if isinstance(e, Exception) else RuntimeError(repr(e)))
        finally:
            if self.tasks.pop(spec.task_id, None) is not None and self.rt.state.on:
                self.rt.state.task_done(spec)
            spec.atask = None  # no spec <-> Task cycle (see _run_simple)

    async def _resolve_deps(self, spec: TaskSpec) -> list[Any] | None:
        entries = [d._entry for d in spec.deps]
        pending = [e for e in entries if e.value is PENDING]
        if pending:
            await self.rt.wait_entries(pending)
        values = [e.value for e in entries]
        for e, v in zip(entries, values, strict=True):
            if type(v) is ErrorValue:
                # Errors propagate through dependent tasks; the dependent's output now carries
                # it, so only that one is reported if nobody retrieves it.
                e.retrieved = True
                spec.fail(v.error)
                return None
        return values

    async def _execute(self, spec: TaskSpec, dep_values: list[Any], grant: Grant | None) -> None:
        on_item = self._item_handler(spec)
        spec.started = time.time()
        if spec.executor is Executor.LOOP:
            token = current_task.set(spec)
            try:
                await self._execute_coroutine(spec, dep_values, on_item)
            finally:
                current_task.reset(token)
        elif spec.executor is Executor.THREAD:
            await self._execute_thread(spec, dep_values, grant, on_item)
        else:
            await self._execute_process(spec, dep_values, grant, on_item)

    def _item_handler(self, spec: TaskSpec) -> Callable[[Any], None] | None:
        # On a retry, items the earlier attempt already produced are skipped (Ray's rule:
        # refs already handed out are never duplicated or replaced).
        return spec.sink.pusher() if spec.sink is not None else None

    def _finish(self, spec: TaskSpec, values: list[Any] | None) -> None:
        if spec.sink is not None:
            spec.sink.finish(None)
        elif values is not None:
            for e, v in zip(spec.returns, values, strict=True):
                e.resolve(v)

    # -- executors -----------------------------------------------------------------------
    async def _execute_coroutine(self, spec: TaskSpec, dep_values: list[Any],
                                 on_item: Callable[[Any], None] | None) -> None:
        stream = spec.sink if isinstance(spec.sink, GeneratorStream) else None
        values = await run_async(
            spec.fn, spec.payload, dep_values, spec.name, return_count(spec.nret),
            self.rt.driver_pid,
            on_item,
            pause=stream.wait_capacity if stream is not None and stream.backpressure else None)
        self._finish(spec, values)

    async def _execute_thread(self, spec: TaskSpec, dep_values: list[Any], grant: Grant | None,
                              on_item: Callable[[Any], None] | None) -> None:
        loop = self.loop
        stream = spec.sink if isinstance(spec.sink, GeneratorStream) else None
        emit = None if on_item is None else (
            lambda stored: loop.call_soon_threadsafe(on_item, stored))
        pause = None if stream is None or not stream.backpressure else (
            lambda _items, produced: stream.wait_capacity_blocking(produced))
        what = Body(spec.fn, spec.payload, dep_values, spec.name, return_count(spec.nret),
                    self.rt.driver_pid)

        def body() -> list[Any] | None:
            spec.thread_ident = threading.get_ident()
            current_task.set(spec)
            try:
                if spec.cancelled:
                    raise TaskCancelledError(spec.task_id.hex())
                return run_sync(what, emit, pause=pause, passthrough=(TaskCancelledError,))
            finally:
                spec.thread_ident = None

        ctx = contextvars.copy_context()
        try:
            values = await asyncio.shield(loop.run_in_executor(self._threads, ctx.run, body))
        except TaskCancelledError:
            spec.fail(TaskCancelledError(spec.task_id.hex()))
            return
        self._finish(spec, values)

    async def _execute_process(self, spec: TaskSpec, dep_values: list[Any], grant: Grant | None,
                               on_item: Callable[[Any], None] | None) -> None:
        rf = spec.rf
        w = await self.rt.workers.acquire()
        stream = spec.sink if isinstance(spec.sink, GeneratorStream) else None
        retire = False
        try:
            if spec.cancelled:
                raise asyncio.CancelledError()
            fn_id = rf._fn_id
            if fn_id not in w.known_fns:
                w.send(Fn(fn_id, rf._pickled_function()))
                w.known_fns.add(fn_id)
            run = w.start(spec.task_id, on_item)
            spec.worker = w
            spec.pid = w.pid
            if stream is not None and stream.backpressure:
                stream.on_consumed = lambda n: w.send(Credit(spec.task_id, n))
            w.send(Task(spec.task_id, fn_id, spec.payload, dep_values,
                        return_count(spec.nret), spec.name,
                        grant.gpu_ids if grant is not None and grant.gpu_ids else None,
                        on_item is not None, stream.backpressure if stream is not None else 0,
                        merge_runtime_env(self.rt.runtime_env, spec.opts.get("runtime_env")),
                        spec.req or {}),
                   carrying=[spec.payload, *dep_values])
            try:
                outcome = await asyncio.shield(run.fut)
            except asyncio.CancelledError:
                # Only shutdown or the end of the loop cancels a running process task
                # (aioray.cancel interrupts the worker instead): tell the worker, give it a
                # short grace to go back to the pool in a known state, then kill it.
                w.cancel(spec.task_id, False)
                try:
                    await asyncio.wait_for(asyncio.shield(run.fut), timeout=EXIT_GRACE)
                except BaseException:
                    w.kill()
                raise
            except WorkerCrashedError:
                if w.killed_on_purpose and spec.cancelled:
                    raise asyncio.CancelledError() from None
                monitor = self.rt.memory_monitor
                oom = monitor.kill_of(w) if monitor is not None else None
                if oom is not None:  # the memory monitor killed it: Ray's error, same retries
                    raise OutOfMemoryError(oom.error_message()) from None
                raise
            max_calls = spec.opts.get("max_calls") or 0
            if max_calls:
                w.calls[fn_id] = w.calls.get(fn_id, 0) + 1
                retire = w.calls[fn_id] >= max_calls
        finally:
            spec.worker = None
            if stream is not None:
                stream.on_consumed = None
            self.rt.workers.release(w, retire=retire)
        if isinstance(outcome, Failed):
            raise AppError(outcome.error.as_instanceof_cause())
        result = outcome.stored
        if type(result) is ErrorValue:  # cancelled inside the worker
            spec.fail(result.error)
            return
        self._finish(spec, result)

    # -- cancellation --------------------------------------------------------------------
    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        """Loop thread. False if the task is not in flight (finished: a no-op)."""
        spec = self.tasks.get(task_id)
        if spec is None:
            return False
        if spec.cancelled:
            # A second cancel can escalate: force=True kills a worker whose task ignored the
            # interrupt (its refs then hold TaskCancelledError).
            if force and spec.worker is not None:
                spec.worker.cancel(task_id, True)
            return True
        spec.cancelled = True
        if spec.worker is None or force or spec.sink is not None:
            spec.fail(TaskCancelledError(task_id.hex()))
        # else running in a worker process: as in Ray, the task gets a KeyboardInterrupt and
        # its outcome resolves the refs — TaskCancelledError, or the value of a task that
        # caught the interrupt and returned (a second cancel with force=True kills it).
        if spec.worker is not None:
            spec.worker.cancel(task_id, force)
        elif spec.thread_ident is not None:
            _raise_in_thread(spec.thread_ident, TaskCancelledError)
        elif spec.atask is not None:
            spec.atask.cancel()
        if recursive:
            for child in spec.children or ():
                self.cancel(child, force, recursive)
        return True

    def fail_all(self, error: BaseException) -> None:
        for spec in list(self.tasks.values()):
            spec.cancelled = True
            spec.fail(error)
            if spec.atask is not None:
                spec.atask.cancel()
        self.tasks.clear()

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _raise_in_thread(ident: int, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in a running Python thread (how a sync task on a thread is cancelled)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
