"""The embedded engine: the one event loop, and everything that lives on it.

``Runtime`` owns the loop (adopted from the caller when ``init`` runs inside one, else a daemon
thread running uvloop when available), the scheduler's resource pool, the task manager, the
worker pool, actors and placement groups. It implements :class:`~aioray._backend.base.Backend`;
the public API reaches it through ``aioray._backend.registry``, which loads this module by name.

Blocking calls (``get``, ``wait``, ``next(gen)``) are thin wrappers: they look at the store first
(a resolved ref needs no hop) and otherwise hand one coroutine to the loop and block the calling
thread. Called on the loop's own thread while it runs they raise instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar, cast

from aioray._backend import registry
from aioray._backend.base import Backend, ContextInfo, RuntimeInfo
from aioray._backend.metrics import MetricRecord, MetricStore
from aioray._backend.progress import BarBoard, BarState
from aioray._engine import tracing
from aioray._engine.actors import ActorManager, pin_actor
from aioray._engine.backchannel import Backchannel
from aioray._engine.context import current_actor, current_call, current_task
from aioray._engine.memory_monitor import MemoryMonitor
from aioray._engine.placement import EmbeddedPlacement, pool_for
from aioray._engine.queues import EmbeddedQueues
from aioray._engine.scheduling.resources import ResourcePool, lending_cpu
from aioray._engine.scheduling.starvation import StarvationWatch, delay_from_env
from aioray._engine.state import StateBook, timeline_events
from aioray._engine.streams import ready_now, values_of
from aioray._engine.tasks import TaskManager
from aioray._engine.watchdog import LoopWatchdog, threshold_from_env
from aioray._engine.worker_pool import WorkerPool
from aioray._exec.invoke import ActorExit
from aioray._handles.actor import ActorHandle, MethodMeta, _rebuild_handle
from aioray._handles.context import RuntimeContext
from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.options import check_fits_bundle, merge_runtime_env, resource_request
from aioray._handles.ref import ObjectRef, local_ref
from aioray._handles.strategies import NodeAffinitySchedulingStrategy
from aioray._handles.validate import (
    NOT_ASYNCIO,
    as_ref_list,
    check_put,
    check_timeout,
    check_wait_args,
    split_ready,
)
from aioray._objects import shm as _shared_memory
from aioray._objects.ids import ACTOR_ID_SIZE, new_task_id, object_id
from aioray._objects.serialization import ErrorValue, note_ref, serialize
from aioray._objects.store import PENDING, EntryWatcher, ObjectEntry
from aioray.exceptions import GetTimeoutError, RuntimeShutdownError

T = TypeVar("T")

def _new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("AIORAY_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
            return cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())
        except ImportError:
            pass
    return asyncio.new_event_loop()


def loop_implementation(loop: asyncio.AbstractEventLoop) -> str:
    mod = type(loop).__module__
    return "uvloop" if mod.startswith("uvloop") else f"asyncio ({type(loop).__name__})"


class Runtime(Backend):
    """Everything one ``init()`` created; public API calls forward here."""

    name = "embedded"

    def __init__(self, *, loop: asyncio.AbstractEventLoop, thread: threading.Thread | None,
                 num_cpus: float, num_gpus: float, resources: dict[str, float],
                 namespace: str | None, local_mode: bool, gpu_ids: list[int] | None) -> None:
        self.loop = loop
        self.thread = thread
        self.adopted = thread is None
        self.loop_thread_id = thread.ident if thread is not None else threading.get_ident()
        self.driver_pid = os.getpid()
        self.job_id = uuid.uuid4().hex[:8]
        self.node_id = uuid.uuid4().hex
        self.namespace = namespace or f"anonymous-{uuid.uuid4()}"
        self.local_mode = local_mode
        self.log_to_driver = True  # worker processes' output reaches our stdout/stderr
        # init(runtime_env=...), checked: what worker processes run tasks under (merged with
        # each task's own runtime_env, see _engine/tasks.py).
        self.runtime_env: dict[str, Any] | None = None
        self.total: dict[str, float] = {"CPU": float(num_cpus), "GPU": float(num_gpus),
                                        **{k: float(v) for k, v in resources.items()}}
        self.total = {k: v for k, v in self.total.items() if v}
        self.total.setdefault("CPU", 0.0)
        self.node_pool = ResourcePool(self.total, gpu_ids)
        self.closed = False
        self.started_at = time.monotonic()
        self._inbox: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._drain_scheduled = False
        # Threads blocked in run_sync: released with RuntimeShutdownError if shutdown stops
        # the loop before their coroutine could finish.
        self._sync_waits: set[concurrent.futures.Future[Any]] = set()
        self.tasks = TaskManager(self)
        self.workers = WorkerPool(self, max_idle=max(1, int(num_cpus)))
        self.backchannel = Backchannel(self)
        self.metrics = MetricStore()  # aioray.util.metrics, from here and from workers
        self.state = StateBook(self)  # aioray.util.state: finished work and dead actors
        self.bars = BarBoard()  # aioray.experimental.tqdm_ray, drawn here for every worker
        self.actors = ActorManager(self)
        self.placement_groups: dict[str, Any] = {}
        self.placement = EmbeddedPlacement(self)
        self.queues = EmbeddedQueues(self)
        self.watchdog: LoopWatchdog | None = None  # started by start()
        self.starvation: StarvationWatch | None = None  # set by start()
        self.memory_monitor: MemoryMonitor | None = None  # started by start()

    # -- the loop ------------------------------------------------------------------------
    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.loop_thread_id

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop: now if we are on it, else batched with other calls
        from other threads behind a single wake-up."""
        if threading.get_ident() == self.loop_thread_id:
            fn(*args)
            return
        self._inbox.append((fn, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed: shutdown raced with us
                self._drain_scheduled = False

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            try:
                fn(*args)
            except Exception:
                import traceback
                traceback.print_exc()

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str,
                 await_form: str) -> T:
        """Block this thread until ``coro`` (run on the loop) finishes."""
        if threading.get_ident() == self.loop_thread_id:
            if self.loop.is_running():
                coro.close()
                raise RuntimeError(
                    f"{what} would block the event loop that runs aioray (and deadlock). "
                    f"Inside async code use `{await_form}` instead."
                )
            return self.loop.run_until_complete(coro)  # adopted loop, idle: drive it ourselves
        if self.closed:
            coro.close()
            raise RuntimeShutdownError("aioray was shut down; this call cannot complete.")
        cf = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._sync_waits.add(cf)
        try:
            return cf.result(timeout)
        except concurrent.futures.TimeoutError:
            if cf.done():  # the coroutine's own timeout error (e.g. get's): keep its message
                raise
            cf.cancel()
            raise GetTimeoutError(f"{what} timed out after {timeout} seconds.") from None
        except concurrent.futures.CancelledError:
            if self.closed:  # shutdown cancelled the coroutine
                raise RuntimeShutdownError(
                    f"aioray.shutdown() ran while {what} was waiting.") from None
            raise
        except KeyboardInterrupt:
            cf.cancel()
            raise
        finally:
            self._sync_waits.discard(cf)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the runtime loop from whatever loop we are on."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # awaited outside asyncio: trio, or anyio's trio backend
            coro.close()
            raise RuntimeError(NOT_ASYNCIO) from None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # -- waiting on entries (loop thread) ------------------------------------------------
    async def wait_entries(self, entries: Sequence[ObjectEntry], num: int | None = None,
                           timeout: float | None = None, fail_fast: bool = False) -> bool:
        """Until ``num`` (default: all) of ``entries`` are resolved — or, with ``fail_fast``,
        one of them resolves to an error; False on timeout."""
        fut: asyncio.Future[None] = self.loop.create_future()
        countdown = Countdown(entries, num, fut, fail_fast=fail_fast)
        if countdown.left <= 0:
            return True
        if timeout is not None and timeout <= 0:
            return False
        countdown.start()
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            countdown.stop()

    async def _wait_for_get(self, entries: list[ObjectEntry], timeout: float | None) -> None:
        spec = current_task.get()
        async with lending_cpu(spec.grant if spec is not None else None):
            if not await self.wait_entries(entries, timeout=timeout, fail_fast=True):
                raise GetTimeoutError(
                    f"Get timed out: {sum(e.value is PENDING for e in entries)} of "
                    f"{len(entries)} objects not ready after {timeout} seconds.")

    # -- the API -------------------------------------------------------------------------
    def submit_task(self, rf: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    opts: dict[str, Any]) -> Any:
        self._check_open()
        return self.tasks.submit(rf, args, kwargs, opts)

    def put(self, value: Any) -> ObjectRef[Any]:
        self._check_open()
        check_put(value)
        entry = ObjectEntry(object_id(new_task_id(), 0), serialize(value, self.driver_pid))
        return ObjectRef(entry.id, entry)

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        single, lst = as_ref_list(refs, "get")
        check_timeout(timeout)
        entries = [r._entry for r in lst]
        pending = [e for e in entries if e.value is PENDING]
        if pending and not _failed(entries):
            if self._can_wait_direct():
                if not self._wait_direct(pending, timeout, fail_fast=True):
                    raise GetTimeoutError(
                        f"Get timed out: {sum(e.value is PENDING for e in pending)} of "
                        f"{len(pending)} objects not ready after {timeout} seconds.")
            else:
                self.run_sync(self._wait_for_get(pending, timeout), None, "aioray.get()",
                              "await ref` or `await aioray.get_async(refs)")
        values = _values(entries)
        return values[0] if single else values

    def _can_wait_direct(self, lend_cpu: bool = True) -> bool:
        """A blocking get/wait may skip the coroutine hop: off the loop thread, and (get) not
        in a task holding a CPU that it must lend while blocked (``_wait_for_get`` does)."""
        if threading.get_ident() == self.loop_thread_id or self.closed:
            return False
        if not lend_cpu:
            return True
        spec = current_task.get()
        return spec is None or spec.grant is None

    def _wait_direct(self, pending: list[ObjectEntry], timeout: float | None,
                     need: int | None = None, fail_fast: bool = False) -> bool:
        """Block this thread until ``need`` (default: all) entries of ``pending`` are resolved;
        False on timeout. Callbacks on the entries complete a plain future — no coroutine,
        Task or future chaining per call: the hot path of sync ``get``/``wait`` (a sync actor
        call's round trip is ~1.5x faster)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        countdown = Countdown(pending, need, done, pending_only=True, fail_fast=fail_fast)
        unregister = countdown.stop
        self._sync_waits.add(done)  # shutdown releases it if the loop stops first
        try:
            self.call_soon(countdown.start)
            if self.closed and not self.loop.is_running() and any(
                    e.value is PENDING for e in pending):
                raise RuntimeShutdownError("aioray.shutdown() ran while this call was waiting.")
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            self.call_soon(unregister)
            return False
        except KeyboardInterrupt:
            self.call_soon(unregister)
            raise
        finally:
            self._sync_waits.discard(done)
        if need is not None or fail_fast:
            self.call_soon(unregister)  # the entries not needed keep no callback of ours
        return True

    async def get_async(self, refs: Any, timeout: float | None = None) -> Any:
        single, lst = as_ref_list(refs, "get_async")
        check_timeout(timeout)
        entries = [r._entry for r in lst]
        if any(e.value is PENDING for e in entries) and not _failed(entries):
            await self.run_async(self._wait_for_get(entries, timeout))
        values = _values(entries)
        return values[0] if single else values

    def await_ref(self, ref: ObjectRef[Any]) -> Awaitable[Any]:
        return self.get_async(ref)

    def loop_waiter(self, entry: ObjectEntry
                    ) -> tuple[asyncio.Future[None], Callable[[], None]] | None:
        # Awaited on this runtime's own loop by code that holds no CPU to lend meanwhile:
        # wait on the entry directly, not through get_async's layers of coroutines (an await
        # round trip ~1.5x faster, gather over actor calls ~1.4x).
        try:
            if _get_running_loop() is not self.loop or self.closed:
                return None
        except RuntimeError:
            return None
        spec = current_task.get()
        if spec is not None and spec.grant is not None:
            return None
        fut = self.loop.create_future()

        def on_ready() -> None:
            if not fut.done():
                fut.set_result(None)

        entry.add_callback(on_ready)
        return fut, on_ready

    def ref_future(self, ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
        entry = ref._entry
        if entry.value is not PENDING:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                fut.set_result(values_of([entry])[0])
            except BaseException as e:
                fut.set_exception(e)
            return fut
        return asyncio.run_coroutine_threadsafe(self.get_async(ref), self.loop)

    def wait(self, refs: Any, num_returns: int = 1, timeout: float | None = None,
             fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        items = check_wait_args(refs, num_returns, timeout)
        if not items:
            return [], []
        ready = ready_now(items)
        if len(ready) < num_returns and (timeout is None or timeout > 0):
            if self._can_wait_direct(lend_cpu=False) and all(
                    type(i) is ObjectRef for i in items):  # generators: the coroutine path
                pending = [items[i]._entry for i in range(len(items)) if i not in ready]
                self._wait_direct(pending, timeout, num_returns - len(ready))
            else:
                self.run_sync(self._wait_items(items, num_returns, timeout), None,
                              "aioray.wait()", "await aioray.wait_async(refs)")
            ready = ready_now(items)
        return split_ready(items, ready, num_returns)

    async def wait_async(self, refs: Any, num_returns: int = 1, timeout: float | None = None,
                         fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        items = check_wait_args(refs, num_returns, timeout)
        if not items:
            return [], []
        ready = ready_now(items)
        if len(ready) < num_returns and (timeout is None or timeout > 0):
            await self.run_async(self._wait_items(items, num_returns, timeout))
            ready = ready_now(items)
        return split_ready(items, ready, num_returns)

    async def _wait_items(self, items: list[Any], num: int, timeout: float | None) -> None:
        gens = [i for i in items if isinstance(i, ObjectRefGenerator)]
        entries = [i._entry for i in items if not isinstance(i, ObjectRefGenerator)]
        if not gens:
            await self.wait_entries(entries, num, timeout)
            return
        # Mixed refs and generators: one waiter task per item, stop at ``num`` ready.
        aws: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(g._stream.wait_ready()) for g in gens]  # type: ignore[attr-defined]
        aws += [asyncio.ensure_future(self.wait_entries([e])) for e in entries]
        deadline = None if timeout is None else self.loop.time() + timeout
        try:
            while sum(1 for a in aws if a.done()) < num:
                left = None if deadline is None else deadline - self.loop.time()
                if left is not None and left <= 0:
                    return
                await asyncio.wait([a for a in aws if not a.done()], timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for a in aws:
                a.cancel()

    def cancel(self, target: Any, force: bool = False, recursive: bool = True) -> None:
        if isinstance(target, ObjectRefGenerator):
            task_id = target._stream.task_id  # type: ignore[attr-defined]
        elif isinstance(target, ObjectRef):
            task_id = target.binary()[:24]
        else:
            raise TypeError(
                f"aioray.cancel() expects an ObjectRef or ObjectRefGenerator, got "
                f"{type(target).__name__}.")
        self.actors.check_cancel(task_id, force)
        self.call_soon(self._cancel_on_loop, task_id, force, recursive)

    def _cancel_on_loop(self, task_id: bytes, force: bool, recursive: bool) -> None:
        if not self.tasks.cancel(task_id, force, recursive):
            self.actors.cancel_call(task_id, force, recursive)

    # -- actors --------------------------------------------------------------------------
    def create_actor(self, ac: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     opts: dict[str, Any]) -> Any:
        self._check_open()
        check_fits_bundle(opts, 0.0, f"actor {ac.__name__}")  # Ray's ValueError, at once
        return self.actors.create(ac, args, kwargs, opts)

    def call_actor(self, handle: Any, meta: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   opts: dict[str, Any]) -> Any:
        self._check_open()
        return self.actors.call(handle, meta, args, kwargs, opts)

    def kill(self, handle: Any, no_restart: bool = True) -> None:
        self.actors.kill(handle, no_restart)

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        return self.actors.get_actor(name, namespace)

    def list_named_actors(self, all_namespaces: bool) -> list[Any]:
        return self.actors.list_named(self.namespace, all_namespaces)

    def progress(self, state: BarState) -> None:
        self.bars.update(state)

    def progress_print(self, text: str, kwargs: dict[str, Any]) -> None:
        self.bars.print(text, kwargs)

    def timeline(self) -> list[dict[str, Any]]:
        tracing.start()  # from the first call on, generator items and transfers are traced
        return self._read_on_loop(lambda: timeline_events(self.state), "aioray.timeline()")

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        return self._read_on_loop(lambda: self.state.rows(kind), "aioray.util.state")

    def _read_on_loop(self, read: Callable[[], T], what: str) -> T:
        """``read()`` on the loop thread, where the engine's structures change."""
        if self.in_loop_thread() or not self.loop.is_running():
            return read()

        async def on_loop() -> T:
            return read()
        return self.run_sync(on_loop(), None, what, what)

    def record_metric(self, record: MetricRecord) -> None:
        self.metrics.record(record)

    def metrics_snapshot(self) -> list[dict[str, Any]]:
        return self.metrics.snapshot()

    def exit_actor(self) -> NoReturn:
        if current_actor.get() is None:
            if current_task.get() is not None:
                raise TypeError("exit_actor API is called on a non-actor worker: exit_actor() "
                                "was called inside a task, not an actor method.")
            raise TypeError("exit_actor API is called on a non-actor worker: exit_actor() ends "
                            "the actor whose method calls it. To stop an actor from outside use "
                            "aioray.kill(handle).")
        raise ActorExit()

    def reduce_handle(self, handle: ActorHandle[Any]) -> Any:
        note_ref(handle)  # a worker holding this handle keeps the actor alive
        return (_rebuild_handle, (handle._actor_id, handle._class_name, handle._methods))

    def rebuild_handle(self, actor_id: bytes, class_name: str,
                       methods: dict[str, MethodMeta]) -> ActorHandle[Any]:
        return self.actors.handle_for(actor_id, class_name, methods)

    def rebuild_ref(self, id: bytes) -> Any:
        if len(id) == ACTOR_ID_SIZE:  # an actor handle inside a value: it keeps the actor alive
            return pin_actor(self, id)
        return local_ref(id)

    def notify_ready(self, refs: Sequence[ObjectRef[Any]],
                     push: Callable[[ObjectRef[Any]], None]) -> None:
        def register() -> None:
            for r in refs:
                r._entry.add_callback(lambda r=r: push(r))
        self.call_soon(register)

    # -- the node and the caller ---------------------------------------------------------
    def cluster_resources(self) -> dict[str, float]:
        return dict(self.total)

    def available_resources(self) -> dict[str, float]:
        return self.node_pool.free()

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": self.node_id, "Alive": True, "Resources": self.cluster_resources(),
                 "NodeManagerAddress": "127.0.0.1"}]

    def gpu_ids(self) -> list[int]:
        spec = current_task.get()
        if spec is not None and spec.grant is not None:
            return list(spec.grant.gpu_ids)
        actor = current_actor.get()
        if actor is not None and actor.grant is not None:
            return list(actor.grant.gpu_ids)
        return []

    def context_info(self) -> ContextInfo:
        call, spec, actor = current_call.get(), current_task.get(), current_actor.get()
        if call is not None:
            task_id: str | None = call.task_id.hex()
            canceled: bool | None = bool(call.cancelled)
        elif spec is not None:
            task_id, canceled = spec.task_id.hex(), bool(spec.cancelled)
        else:
            task_id, canceled = None, None
        return ContextInfo(
            job_id=self.job_id, node_id=self.node_id, namespace=self.namespace,
            task_id=task_id, canceled=canceled,
            actor_id=actor.actor_id.hex() if actor is not None else None,
            actor_name=actor.name if actor is not None else None,
            restarted=bool(actor is not None and actor.restarts),
            assigned_resources=(dict(spec.req) if spec is not None
                                else resource_request(actor.opts, 0.0) if actor is not None
                                else {}),
            gpu_ids=self.gpu_ids(),
            runtime_env=merge_runtime_env(
                self.runtime_env, spec.opts.get("runtime_env") if spec is not None else None)
            or {})

    def runtime_context(self) -> RuntimeContext:
        return RuntimeContext(self.context_info)

    def runtime_info(self) -> RuntimeInfo:
        return RuntimeInfo(node_id=self.node_id, job_id=self.job_id, namespace=self.namespace,
                           resources=dict(self.total), loop=loop_implementation(self.loop))

    def on_own_loop(self) -> bool:
        return self.in_loop_thread() and self.loop.is_running()

    def check_strategy(self, strategy: object) -> None:
        if isinstance(strategy, NodeAffinitySchedulingStrategy):
            strategy.check_single_node(self.node_id)

    def pool_for(self, opts: dict[str, Any]) -> ResourcePool:
        strategy = opts.get("scheduling_strategy")
        if strategy is not None:  # e.g. a hard node affinity to a node that is not this one
            self.check_strategy(strategy)
        pg = opts.get("placement_group")
        if pg is None and strategy is not None and hasattr(strategy, "placement_group"):
            pg = strategy.placement_group
            index = getattr(strategy, "placement_group_bundle_index", -1)
        else:
            index = opts.get("placement_group_bundle_index", -1)
        if pg is None or pg == "default":
            return self.node_pool
        return pool_for(self, pg, index)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeShutdownError("aioray was shut down; call aioray.init() again.")

    # -- shutdown ------------------------------------------------------------------------
    def _close_on_loop(self) -> list[Any]:
        """Fail everything in flight; returns the workers to stop (loop thread)."""
        self.closed = True
        self.workers.closed = True  # tasks woken by the failures below must not spawn workers
        self._drain()  # submissions still queued for the loop: start them, so they fail below
        err = RuntimeShutdownError(
            "aioray.shutdown() ran while this task was in flight; it will never finish.")
        self.tasks.fail_all(err)
        self.actors.shutdown(err)
        self.node_pool.close(err)
        if self.starvation is not None:
            self.starvation.close()
        if self.memory_monitor is not None:
            self.memory_monitor.stop()
        for pg in list(self.placement_groups.values()):
            pg._close(err)
        self.backchannel.close()
        return list(self.workers.workers)

    async def _shutdown_async(self) -> None:
        self._close_on_loop()
        await self.workers.shutdown(timeout=1.0)
        if self.thread is not None:
            # Our own loop is about to stop: let the task coroutines that fail_all cancelled (and
            # crash reports of the workers just stopped) finish, instead of being destroyed
            # pending with "Task was destroyed" / "exception never retrieved" noise.
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not me]
            for t in others:
                t.cancel()
            if others:
                await asyncio.wait(others, timeout=1.0)

    def shutdown(self) -> None:
        if self.closed and not self.workers.workers:
            return
        loop = self.loop
        try:
            if self.thread is not None:
                if loop.is_running() and not self.in_loop_thread():
                    cf = asyncio.run_coroutine_threadsafe(self._shutdown_async(), loop)
                    try:
                        cf.result(10)
                    except Exception:
                        pass
                    loop.call_soon_threadsafe(loop.stop)
                    self.thread.join(5)
                    if not self.thread.is_alive():
                        loop.close()
                else:
                    self._close_on_loop()
            elif not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(self._shutdown_async())
            else:
                self._close_on_loop()
        finally:
            self.closed = True
            tracing.stop()
            if self.watchdog is not None:
                self.watchdog.stop()
            self.workers.kill_all_now()
            self.tasks.shutdown()
            _shared_memory.sweep(self.driver_pid)
            if not loop.is_running():
                # Blocked callers whose coroutine will never run again: release them.
                for cf in list(self._sync_waits):
                    try:
                        cf.set_exception(RuntimeShutdownError(
                            "aioray.shutdown() ran while this call was waiting."))
                    except concurrent.futures.InvalidStateError:
                        pass
            _detach_pool_threads()

    def is_stale(self) -> bool:
        return self.closed or self.loop.is_closed()

    # -- interpreter exit ------------------------------------------------------------------
    def in_flight(self) -> tuple[int, int]:
        """How many tasks and actor calls were submitted and have not finished."""
        return len(self.tasks.tasks), len(self.actors.calls)

    async def _until_idle(self) -> None:
        # Polled: runs once, at exit, and only while work is still in flight.
        while any(self.in_flight()):
            await asyncio.sleep(0.01)

    def drain_at_exit(self) -> None:
        """The main thread ended without ``shutdown()``: let work already submitted finish, as
        ``concurrent.futures`` executors do at exit (Ray's docs end scripts right after a
        fire-and-forget ``.remote()``). After 1 s one line says what we wait for; Ctrl-C or
        ``AIORAY_EXIT_TIMEOUT`` (seconds, default 60; 0: don't wait) drops it."""
        if self.closed or self.thread is None or not self.loop.is_running():
            return  # an adopted loop has ended with its work: nothing can run it any more
        if getattr(sys, "last_value", None) is not None or _signal_exit.is_set():
            return  # an exception (Ctrl-C included) escaped the script, or SIGTERM: drop it
        try:
            limit = float(os.environ.get("AIORAY_EXIT_TIMEOUT", "60"))
        except ValueError:
            limit = 60.0
        if limit <= 0:
            return
        # On the loop, after the submissions still queued for it (not counted yet).
        done = asyncio.run_coroutine_threadsafe(self._until_idle(), self.loop)
        try:
            done.result(min(1.0, limit))
            return
        except concurrent.futures.TimeoutError:
            pass
        except KeyboardInterrupt:
            done.cancel()
            return
        tasks, calls = self.in_flight()
        print(f"aioray: the script ended with {_work(tasks, calls)} still running; waiting for "
              f"them to finish (up to {limit:g} s, AIORAY_EXIT_TIMEOUT). Ctrl-C drops them.",
              file=sys.stderr, flush=True)
        try:
            done.result(max(0.0, limit - 1.0))
        except concurrent.futures.TimeoutError:
            tasks, calls = self.in_flight()
            print(f"aioray: gave up after {limit:g} s (AIORAY_EXIT_TIMEOUT): dropped "
                  f"{_work(tasks, calls)}.", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            tasks, calls = self.in_flight()
            print(f"aioray: Ctrl-C: dropped {_work(tasks, calls)}.", file=sys.stderr,
                  flush=True)
        finally:
            done.cancel()


# Set when SIGTERM ends the process through our handler (``install_sigterm_handler``).
_signal_exit = threading.Event()


def install_sigterm_handler() -> None:
    """SIGTERM exits like Ctrl-C does: ``SystemExit`` in the main thread, so ``finally``
    blocks and ``shutdown()`` run (workers stopped, shared memory freed) — unless the program
    has a SIGTERM handler of its own. Main thread only (Python's rule for handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    _signal_exit.set()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends us at once
    raise SystemExit(128 + signum)


def _work(tasks: int, calls: int) -> str:
    parts = [f"{tasks} task{'s' * (tasks != 1)}"] if tasks else []
    if calls:
        parts.append(f"{calls} actor call{'s' * (calls != 1)}")
    return " and ".join(parts) or "no work"


# -- the process-wide runtime ------------------------------------------------------------
def _detect_gpus() -> list[int]:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [int(x) for x in cvd.split(",") if x.strip().isdigit()]
    return []


def start(*, num_cpus: float | None = None, num_gpus: float | None = None,
          resources: dict[str, float] | None = None, namespace: str | None = None,
          local_mode: bool = False, runtime_env: dict[str, Any] | None = None,
          object_store_memory: int | None = None, temp_dir: str | None = None,
          log_to_driver: bool = True, tracing_on: bool = False) -> Runtime:
    """Create the runtime (the registry calls this, holding its lock)."""
    # The large-object store: its directory and size; sweeps what killed drivers left.
    _shared_memory.configure(object_store_memory, temp_dir)
    if num_cpus is None:
        num_cpus = float(os.cpu_count() or 1)
    gpu_ids = _detect_gpus()
    if num_gpus is None:
        num_gpus = float(len(gpu_ids))
    elif len(gpu_ids) < num_gpus:
        gpu_ids = list(range(int(num_gpus)))
    local_mode = local_mode or os.environ.get("AIORAY_LOCAL_MODE", "") not in ("", "0")
    try:
        loop = asyncio.get_running_loop()
        thread = None
    except RuntimeError:
        loop = _new_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="aioray-loop", daemon=True)
        thread.start()
        started.wait()
    rt = Runtime(loop=loop, thread=thread, num_cpus=num_cpus, num_gpus=num_gpus,
                 resources=dict(resources or {}), namespace=namespace, local_mode=local_mode,
                 gpu_ids=gpu_ids[: int(num_gpus)] if num_gpus else [])
    rt.runtime_env = runtime_env or None
    rt.log_to_driver = log_to_driver
    if tracing_on or tracing.wanted():
        tracing.start()
    threshold = threshold_from_env()
    if threshold is not None:  # always on unless turned off: see watchdog.py
        rt.watchdog = LoopWatchdog(loop, rt.loop_thread_id or threading.get_ident(), threshold)
        rt.watchdog.start()
    delay = delay_from_env()
    if delay is not None:  # warns about requests starved by actors: see starvation.py
        rt.starvation = StarvationWatch(rt, delay)
        rt.starvation.watch(rt.node_pool)
    if not local_mode:  # kills a worker before the kernel's OOM killer: see memory_monitor.py
        rt.memory_monitor = MemoryMonitor.from_env(rt)
        if rt.memory_monitor is not None:
            rt.call_soon(rt.memory_monitor.start)
    install_sigterm_handler()
    return rt


def current_runtime() -> Runtime | None:
    """The open embedded runtime of this process, if any (tests and tools look inside)."""
    rt = registry.embedded()
    return rt if isinstance(rt, Runtime) else None


def _failed(entries: list[ObjectEntry]) -> bool:
    """One of several entries already holds an error: ``get`` raises it without waiting."""
    return len(entries) > 1 and any(type(e.value) is ErrorValue for e in entries)


def _values(entries: list[ObjectEntry]) -> list[Any]:
    """What ``get`` returns: every value, or (as Ray) the first error — also when it came
    while other entries are still pending (fail fast)."""
    if any(e.value is PENDING for e in entries):
        values_of([next(e for e in entries if type(e.value) is ErrorValue)])  # raises
    return values_of(entries)


class Countdown(EntryWatcher):
    """The one wait primitive: completes ``done`` once ``need`` (default: all) of ``entries``
    are resolved, watching the entries itself (loop thread): one object however many entries,
    no closure per entry. ``wait_entries`` (async, on the loop) and ``_wait_direct`` (a blocked
    driver thread) are thin front ends on it. ``fail_fast`` (``get`` of several refs, as Ray):
    also done as soon as one of them resolves to an error."""

    __slots__ = ("done", "fail_fast", "left", "pending")

    def __init__(self, entries: Sequence[ObjectEntry], need: int | None,
                 done: asyncio.Future[None] | concurrent.futures.Future[None],
                 pending_only: bool = False, fail_fast: bool = False) -> None:
        # pending_only: the caller already dropped resolved entries (and counts only these);
        # it reads no entry here, off the loop thread.
        self.pending = list(entries) if pending_only else [
            e for e in entries if e.value is PENDING]
        need = len(entries) if need is None else need
        self.left = need if pending_only else need - (len(entries) - len(self.pending))
        self.done = done
        self.fail_fast = fail_fast

    def start(self) -> None:
        for e in self.pending:
            e.add_callback(self)

    def stop(self) -> None:
        for e in self.pending:
            e.remove_callback(self)

    def entry_resolved(self, entry: ObjectEntry) -> None:
        if self.fail_fast and type(entry.value) is ErrorValue:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)


_get_running_loop = asyncio.get_running_loop


def _detach_pool_threads() -> None:
    """Let the interpreter exit even while task code still runs on one of our pool threads (a
    sync actor method or thread task that never returns; they cannot be interrupted).

    At exit Python joins every ``ThreadPoolExecutor`` thread, and every non-daemon thread;
    ours are named ``aioray-*``, so we take them off both lists — whatever they still run
    ends with the process, as a worker process's task would.
    """
    try:
        from concurrent.futures import thread as cft
        for t in list(cft._threads_queues):
            if t.name.startswith("aioray-"):
                cft._threads_queues.pop(t, None)  # type: ignore[attr-defined]
                lock = getattr(t, "_tstate_lock", None)  # Python < 3.13: joined at exit
                locks = getattr(threading, "_shutdown_locks", None)
                if lock is not None and locks is not None:
                    with threading._shutdown_locks_lock:  # type: ignore[attr-defined]
                        locks.discard(lock)
    except Exception:  # private APIs: best effort
        pass


# When the main thread ends, Python first runs threading's exit hooks (newest first) — one of
# them joins every pool thread — then joins non-daemon threads, then runs atexit (our
# shutdown). Detach our threads before that join, or a stuck sync actor method hangs exit.
def _at_interpreter_exit() -> None:
    """Threading's exit hook: first let work already submitted finish (``drain_at_exit``);
    then no new pool thread may start (one started after the detach below — a thread task the
    loop had not started yet — would be joined by Python and hang the exit); then detach
    ours."""
    rt = current_runtime()
    if rt is not None:
        try:
            rt.drain_at_exit()
        except Exception:  # never let this mask the program's own exit
            pass
    try:
        import concurrent.futures.thread as cft
        with cft._global_shutdown_lock:
            cft._shutdown = True  # what cft's own hook sets next
    except Exception:  # private API: best effort
        pass
    _detach_pool_threads()


try:
    import concurrent.futures.thread  # register after its hook, so ours runs first

    threading._register_atexit(_at_interpreter_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):
    pass
