"""The actor side of a worker process that hosts one actor for its whole life.

The driver's loop keeps deciding everything (queues, ordering, concurrency groups, restarts);
this module only runs what it is handed:

* **Sync actors**: the default group's calls run on the main thread when its limit is 1 (as in
  Ray, so ``signal``, thread-locals set in ``__init__`` and C libraries that want the main
  thread behave), other groups and ``max_concurrency > 1`` on :class:`Lanes` threads.
* **Async actors** (``executor="process"``): the main thread runs an event loop; each call is a
  task on it, at most the group's limit at once.

Every call answers with the task messages (``Done``, ``Failed``, ``Yield``; ``Exited`` for
``exit_actor()``) keyed by its task id. A cancel never interrupts a sync method (Ray's rule):
``is_canceled()`` turns true, and a generator stops at its next ``yield``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import gc
import inspect
import os
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aioray._exec.invoke import (
    DEFAULT_GROUP,
    ActorExit,
    AppError,
    Body,
    actor_method,
    run_async,
    run_sync,
)
from aioray._exec.lanes import Lanes
from aioray._handles.args import unpack_args
from aioray._objects import pickler as _pickle
from aioray._wire.messages import ActorRun, ActorStart, ActorStop, Done, Exit, Exited, Yield
from aioray._worker.runtime_env import apply_runtime_env
from aioray.exceptions import TaskCancelledError

if TYPE_CHECKING:
    from aioray._worker.main import WorkerClient

# The actor call (or creation) the calling code belongs to, per thread and per coroutine.
CURRENT_CALL: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "aioray_worker_call", default=None)


class ActorServer:
    """One actor's instance in this process and the threads or loop its calls run on."""

    def __init__(self, client: WorkerClient, start: ActorStart) -> None:
        self.client = client
        self.start = start
        self.instance: Any = None
        self.cancelled: set[bytes] = set()
        self.exiting = False
        self.main_lane = start.groups.get(DEFAULT_GROUP, 1) == 1 and not start.is_async
        self.lanes = {g: Lanes(g, n) for g, n in start.groups.items()
                      if not start.is_async and not (g == DEFAULT_GROUP and self.main_lane)}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[bytes, asyncio.Task[None]] = {}
        self.limits: dict[str, asyncio.Semaphore] = {}
        self.stopped: asyncio.Future[bool] | None = None
        self.graceful = False  # ended by a graceful stop: run atexit handlers (as Ray)

    # -- set-up (main thread) -------------------------------------------------------------
    def serve(self) -> None:
        """Build the instance and serve calls until the actor ends (then the process exits)."""
        _apply_environment(self.start)
        if self.start.is_async:
            asyncio.run(self._serve_async())
        else:
            if self._construct():
                self._serve_main_lane()
        self.client._flush_releases()
        if self.graceful:
            atexit._run_exitfuncs()  # a graceful end is a normal exit of the actor's process

    def _construct(self) -> bool:
        start = self.start
        token = CURRENT_CALL.set(start.task_id)
        try:
            ac = _pickle.loads(start.cls_blob)
            args, kwargs = unpack_args(start.payload, start.dep_values)
            instance = ac._cls(*args, **kwargs)
            if inspect.isawaitable(instance):
                raise TypeError("__init__ returned an awaitable")
        except ActorExit:
            self.graceful = True  # exit_actor() in __init__: a normal exit (atexit runs)
            self.client.send(Exited(start.task_id))
            return False
        except BaseException as e:
            self.client._send_error(start.task_id, f"{start.class_name}.__init__", e)
            return False
        finally:
            CURRENT_CALL.reset(token)
        self.instance = instance
        self.client.actor = self  # from now on the reader routes calls to us
        self.client.send(Done(start.task_id, []))
        return True

    def _serve_main_lane(self) -> None:
        inbox = self.client._inbox
        while True:
            msg = inbox.get()
            tp = type(msg)
            if tp is ActorRun:
                self.run_sync_call(msg)
                msg = None
            elif tp is ActorStop or tp is Exit:
                self._stop(tp is ActorStop and msg.shutdown_hook)
                return

    # -- from the reader thread -------------------------------------------------------------
    def route(self, msg: Any) -> None:
        """A message for the actor (reader thread): hand it to where it runs."""
        tp = type(msg)
        if tp is ActorRun:
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._spawn, msg)
                return
            lane = self.lanes.get(msg.group)
            if lane is None:
                self.client._inbox.put(msg)  # the main thread's lane
            else:
                lane.submit(functools.partial(self.run_sync_call, msg))
        elif self.loop is not None:  # ActorStop / Exit of an async actor
            self.loop.call_soon_threadsafe(self._finish_async, tp is ActorStop and msg.shutdown_hook)
        else:
            self.client._inbox.put(msg)

    def cancel(self, task_id: bytes) -> None:
        self.cancelled.add(task_id)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._cancel_task, task_id)

    # -- sync calls (a lane thread or the main thread) ----------------------------------------
    def run_sync_call(self, msg: ActorRun) -> None:
        client = self.client
        task_id = msg.task_id
        if self.exiting or task_id in self.cancelled:
            self.cancelled.discard(task_id)
            client.send(Done(task_id, None))  # not run: the driver has settled it already
            return
        name = f"{self.start.class_name}.{msg.method}"
        token = CURRENT_CALL.set(task_id)
        emit, stop = self._item_hooks(msg)
        pause = None
        if msg.streaming and msg.backpressure > 0:
            pause = functools.partial(self._wait_credit, task_id, msg.backpressure)
        try:
            body = Body(actor_method(self.instance, msg.method), msg.payload, msg.dep_values,
                        name, msg.nret, client.driver_pid)
            stored = run_sync(body, emit, stop=stop, pause=pause, passthrough=(ActorExit,))
            client._flush_releases()
            client.send(Done(task_id, stored or []))
        except ActorExit:
            self.exiting = True  # no call starts after this one
            client.send(Exited(task_id))
        except AppError as e:
            client._send_error(task_id, name, e.original or e.error)
        except BaseException as e:
            client._send_error(task_id, name, e)
        finally:
            CURRENT_CALL.reset(token)
            self.cancelled.discard(task_id)
            client._credit.pop(task_id, None)

    def label(self) -> str:
        """How this actor's output lines are prefixed: its __repr__ if its class defines one
        (as Ray), else its class name."""
        instance = self.instance
        if instance is not None and "__repr__" in _own_attrs(type(instance)):
            try:
                return repr(instance)
            except Exception:
                pass
        return self.start.class_name

    def _item_hooks(self, msg: ActorRun) -> tuple[Any, Any]:
        """A generator method's ``emit`` (each item to the driver) and ``stop`` (a cancel ends
        it at its next yield); (None, None) for other methods."""
        if not msg.streaming:
            return None, None
        return (functools.partial(self._emit, msg.task_id),
                functools.partial(self._stop_at_yield, msg.task_id))

    def _emit(self, task_id: bytes, stored: Any) -> None:
        self.client._flush_releases()
        self.client.send(Yield(task_id, stored))

    def _stop_at_yield(self, task_id: bytes, _items: Iterable[Any]) -> bool:
        return task_id in self.cancelled

    def _wait_credit(self, task_id: bytes, backpressure: int, _items: Iterable[Any],
                     produced: int) -> None:
        client = self.client
        with client._credit_cv:
            while (produced - client._credit.get(task_id, 0) >= backpressure
                   and task_id not in self.cancelled):
                client._credit_cv.wait(0.5)

    def _stop(self, shutdown_hook: bool) -> None:
        """The driver ends the actor (no call runs any more): the hook, then exit."""
        for lane in self.lanes.values():
            lane.close()
        if shutdown_hook:
            _call_shutdown_hook(self.instance, self.start.class_name)
            self.graceful = True
        self.instance = None  # its __del__ runs now, as when a thread actor is dropped
        gc.collect()

    # -- async actors (the main thread runs the loop) -----------------------------------------
    async def _serve_async(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        self.limits = {g: asyncio.Semaphore(n) for g, n in self.start.groups.items()}
        self.loop = loop  # set before the reader can route calls (after _construct)
        if not self._construct():
            return
        hook = await self.stopped
        for task in list(self.tasks.values()):
            task.cancel()
        if hook:
            self.graceful = True
            result = _call_shutdown_hook(self.instance, self.start.class_name)
            if inspect.isawaitable(result):
                try:
                    await result
                except BaseException as e:
                    _log_hook_error(self.start.class_name, e)
        self.instance = None
        gc.collect()

    def _finish_async(self, hook: bool) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(hook)

    def _spawn(self, msg: ActorRun) -> None:
        assert self.loop is not None
        self.tasks[msg.task_id] = self.loop.create_task(self._run_async_call(msg))

    def _cancel_task(self, task_id: bytes) -> None:
        task = self.tasks.get(task_id)
        if task is not None:
            task.cancel()

    async def _run_async_call(self, msg: ActorRun) -> None:
        client = self.client
        task_id = msg.task_id
        name = f"{self.start.class_name}.{msg.method}"
        CURRENT_CALL.set(task_id)  # this task's own context
        try:
            async with self.limits.get(msg.group) or self.limits[DEFAULT_GROUP]:
                if self.exiting or task_id in self.cancelled:
                    client.send(Done(task_id, None))
                    return
                fn = actor_method(self.instance, msg.method)
                if inspect.isgeneratorfunction(fn):
                    # a sync generator method: on a thread, as in the driver
                    stored = await asyncio.get_running_loop().run_in_executor(
                        None, contextvars.copy_context().run, self._sync_body, msg, fn, name)
                else:
                    emit = functools.partial(self._emit, task_id) if msg.streaming else None
                    stored = await run_async(fn, msg.payload, msg.dep_values, name, msg.nret,
                                             client.driver_pid, emit,
                                             passthrough=(asyncio.CancelledError, ActorExit))
            client._flush_releases()
            client.send(Done(task_id, stored or []))
        except ActorExit:
            self.exiting = True
            client.send(Exited(task_id))
        except asyncio.CancelledError:
            client._send_error(task_id, name, TaskCancelledError(task_id.hex()))
        except AppError as e:
            client._send_error(task_id, name, e.original or e.error)
        except BaseException as e:
            client._send_error(task_id, name, e)
        finally:
            self.tasks.pop(task_id, None)
            self.cancelled.discard(task_id)

    def _sync_body(self, msg: ActorRun, fn: Callable[..., Any], name: str) -> list[Any] | None:
        emit, stop = self._item_hooks(msg)
        return run_sync(Body(fn, msg.payload, msg.dep_values, name, msg.nret,
                             self.client.driver_pid), emit, stop=stop, passthrough=(ActorExit,))


def _own_attrs(cls: type) -> set[str]:
    """Names the class (or a base of its own, not ``object``) defines."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}


def _apply_environment(start: ActorStart) -> None:
    """The actor's process environment, for its whole life: its GPUs and runtime_env."""
    if start.gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, start.gpu_ids))
    if start.runtime_env:
        apply_runtime_env(start.runtime_env)  # never undone: the process is the actor's
    threading.current_thread().name = f"aioray-actor-{start.class_name}"


def _call_shutdown_hook(instance: Any, class_name: str) -> Any:
    hook = getattr(instance, "__ray_shutdown__", None)
    if hook is None:
        return None
    try:
        return hook()
    except BaseException as e:
        _log_hook_error(class_name, e)
        return None


def _log_hook_error(class_name: str, e: BaseException) -> None:
    print(f"aioray: {class_name}.__ray_shutdown__() raised:", flush=True)
    traceback.print_exception(type(e), e, e.__traceback__)
