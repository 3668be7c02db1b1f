"""The worker process: runs sync task bodies for the driver and talks back to it.

Started as ``python -m aioray._worker FD`` (not ``multiprocessing``: that would re-import the
user's ``__main__`` script, which for unguarded Ray scripts means running them again). One socket
carries everything: tasks in, results and streamed generator items out, and the back-channel
through which task code calls ``.remote()``, ``get``, ``put``, ``wait`` and actor methods.

A reader thread demultiplexes incoming frames; the main thread runs one task at a time, so
``SIGINT`` from the driver (``cancel``) interrupts exactly the user code of the current task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import queue
import signal
import socket
import sys
import threading
import traceback
import uuid
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NoReturn, cast

from aioray._backend import registry
from aioray._backend.base import (
    USE_ACTOR,
    Backend,
    ContextInfo,
    PlacementGroups,
    Queues,
    RuntimeInfo,
)
from aioray._backend.metrics import MetricRecord
from aioray._backend.progress import BarState
from aioray._exec.invoke import ActorExit, AppError, Body, run_sync
from aioray._handles.actor import ActorHandle, MethodMeta, _rebuild_handle
from aioray._handles.args import pack_args
from aioray._handles.context import RuntimeContext
from aioray._handles.function import adopt_pickled
from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.placement_group import PlacementGroup
from aioray._handles.ref import ObjectRef, _rebuild_ref
from aioray._handles.validate import as_ref_list, check_timeout, check_wait_args
from aioray._objects import ids as _ids
from aioray._objects import pickler as _pickle
from aioray._objects import serialization as _serialization
from aioray._objects.ids import new_task_id, object_id
from aioray._objects.serialization import ErrorValue, deserialize, picklable_exception, serialize
from aioray._wire.framing import encode, recv_frame
from aioray._wire.messages import (
    ActorRun,
    ActorStart,
    ActorStop,
    Call,
    Cancel,
    Credit,
    Done,
    Exit,
    Failed,
    Fn,
    Init,
    Ready,
    Release,
    Reply,
    Req,
    Task,
    Yield,
)
from aioray._worker import output, zygote
from aioray._worker.actor_server import CURRENT_CALL, ActorServer
from aioray._worker.runtime_env import apply_runtime_env
from aioray.exceptions import (
    RayTaskError,
    TaskCancelledError,
    UnserializableException,
)


class BorrowToken:
    """Keeps the driver's object alive while refs to it live in this worker."""

    __slots__ = ("__weakref__", "client", "id", "seen")

    def __init__(self, client: WorkerClient, id: bytes) -> None:
        self.client = client
        self.id = id
        # How many frames had arrived when we last saw this id: the driver keeps its pin if it
        # has sent the id again since (a frame still in flight).
        self.seen = 0

    def __del__(self) -> None:
        try:
            self.client._releases.append((self.id, self.seen))
        except Exception:
            pass

    def reduce_ref(self, ref: ObjectRef[Any]) -> Any:
        _serialization.note_ref(ref)
        return (_rebuild_ref, (ref.binary(),))


class WorkerStream:
    """A streaming generator consumed from inside a worker process: each ``next`` asks the
    driver (``gen_next``), which holds the real stream."""

    __slots__ = ("client", "task_id")

    def __init__(self, client: WorkerClient, task_id: bytes) -> None:
        self.client = client
        self.task_id = task_id

    def _next(self) -> ObjectRef[Any] | None:
        id = self.client.request("gen_next", self.task_id)
        return None if id is None else self.client.borrow(id)

    def next_ref(self) -> ObjectRef[Any]:
        ref = self._next()
        if ref is None:
            raise StopIteration
        return ref

    async def anext_ref(self) -> ObjectRef[Any]:
        # The worker has no runtime loop: a thread blocks on the driver for us.
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def completed(self) -> ObjectRef[None]:
        return self.client.borrow(object_id(self.task_id, 0))

    def is_finished(self) -> bool:
        return bool(self.client.request("gen_finished", self.task_id))

    def next_ready(self) -> bool:
        return bool(self.client.request("gen_next_ready", self.task_id))

    def task_id_hex(self) -> str:
        return self.task_id.hex()

    def wait_key(self) -> object:
        return self.task_id

    def drop(self) -> None:
        self.client.call("gen_drop", self.task_id)


class WorkerPlacement(PlacementGroups):
    """Placement groups from a worker process: the driver's, through the back-channel."""

    def __init__(self, client: WorkerClient) -> None:
        self.client = client

    def create(self, bundles: list[dict[str, float]], strategy: str, name: str,
               lifetime: str | None, bundle_label_selector: Any) -> PlacementGroup:
        handle, infeasible = self.client.request("pg_create", bundles, strategy, name,
                                                 lifetime, self.client.namespace)
        if infeasible is not None:
            warnings.warn(infeasible, stacklevel=3)
        return cast(PlacementGroup, handle)

    def remove(self, pg: PlacementGroup) -> None:
        self.client.request("pg_remove", pg)

    def get(self, name: str) -> PlacementGroup:
        return cast(PlacementGroup, self.client.request("pg_get", name, self.client.namespace))

    def table(self, pg: PlacementGroup | None) -> dict[Any, Any]:
        return cast(dict[Any, Any], self.client.request("pg_table", pg))

    def current(self) -> PlacementGroup | None:
        task = self.client.task_now()
        return None if task is None else cast(PlacementGroup | None,
                                              self.client.request("pg_current", task))

    def ready(self, pg: PlacementGroup) -> ObjectRef[Any]:
        return self.client.borrow(self.client.request("pg_ready", pg))

    def wait(self, pg: PlacementGroup, timeout_seconds: float) -> bool:
        ref = self.ready(pg)
        done, _ = self.client.wait([ref], 1, timeout_seconds, True)
        if not done:
            return False
        try:
            self.client.get(ref, 0)
            return True
        except Exception:
            return False

    def infeasible_reason(self, pg: PlacementGroup) -> str | None:
        return None


class _TaskCancelled(KeyboardInterrupt):
    """Raised in the task's code by ``cancel()``: a KeyboardInterrupt, as in Ray, so code that
    cleans up on Ctrl-C cleans up on cancel too."""


class WorkerQueues(Queues):
    """Queues from a worker process: non-waiting operations are one back-channel request to
    the driver, which holds the queue; the rest are actor calls."""

    def __init__(self, client: WorkerClient) -> None:
        self.client = client

    def open(self, qid: str, maxsize: int) -> bool:
        return True  # its actor runs in the driver: direct() reaches the queue there

    def actor_started(self, qid: str, maxsize: int) -> asyncio.Queue[Any]:
        return asyncio.Queue(maxsize)  # not reached: queue actors run on the driver's loop

    def fast(self, qid: str) -> asyncio.Queue[Any] | None:
        return None

    def direct(self, qid: str, maxsize: int, op: str, arg: Any) -> Any:
        client = self.client
        if op in ("put", "put_batch"):
            arg = serialize(arg, client.driver_pid)
        got = client.request("queue_op", qid, maxsize, op, arg)
        if isinstance(got, str) and got == "use-actor":
            return USE_ACTOR
        if op in ("get", "get_batch") and isinstance(got, list):
            holder = client.borrow(got[1]) if len(got) > 1 else None
            value = deserialize(got[0])
            del holder  # mapped: the driver may drop its copy now
            return value
        return got

    def copy(self, item: Any, what: str) -> Any:
        return item  # direct() serializes


class WorkerClient(Backend):
    """The runtime as seen from inside a worker process: every call goes to the driver."""

    name = "worker"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._replies: dict[int, concurrent.futures.Future[Any]] = {}
        self._rids = itertools.count(1)
        self._functions: dict[bytes, Callable[..., Any]] = {}
        # Pickles that failed to load on arrival (their module may be in the runtime_env
        # working_dir / py_modules of the task): loaded again under the task's env.
        self._unloaded: dict[bytes, bytes] = {}
        self._tokens: weakref.WeakValueDictionary[bytes, BorrowToken] = (
            weakref.WeakValueDictionary()
        )
        self._releases: list[tuple[bytes, int]] = []
        self._frame_seq = 0
        self.driver_pid = 0
        self.namespace = ""
        self.job_id = ""
        self.node_id = ""
        self.current_task: bytes | None = None
        self.current_name = ""
        self._interruptible = False
        self._cancel_for: bytes | None = None
        self._sending = False  # the main thread is writing a frame: a cancel must wait
        self._deferred_cancel = False
        self._credit: dict[bytes, int] = {}
        self._credit_cv = threading.Condition()
        self._runtime_env: dict[str, Any] = {}  # of the task running now
        self._streaming = b""  # the streaming task running now, and its backpressure
        self._backpressure = 0
        self._gpu_ids: list[int] = []
        self._resources: dict[str, float] = {}  # what the running task holds
        # Set when this process hosts an actor (for the rest of its life).
        self.actor_start: ActorStart | None = None
        self.actor: ActorServer | None = None  # once its instance exists
        self.placement = WorkerPlacement(self)
        self.queues = WorkerQueues(self)
        # What a task without GPUs sees: the environment this worker started with.
        self._initial_cvd = os.environ.get("CUDA_VISIBLE_DEVICES")

    # -- wire ----------------------------------------------------------------------------
    def send(self, msg: tuple[Any, ...]) -> None:
        data = encode(msg)
        on_main = threading.current_thread() is threading.main_thread()
        if not on_main:
            with self._send_lock:
                self.sock.sendall(data)
            return
        # A cancel interrupt must not land mid-frame (the driver would lose the stream):
        # the handler defers it while we write, and we raise it once the frame is out.
        self._sending = True
        try:
            with self._send_lock:
                self.sock.sendall(data)
        finally:
            self._sending = False
        if self._deferred_cancel:
            self._deferred_cancel = False
            if self._interruptible and self._cancel_for == self.current_task:
                raise _TaskCancelled()

    def _flush_releases(self) -> None:
        if self._releases:
            rel, self._releases = self._releases, []
            self.send(Release(rel))

    def request(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        rid = next(self._rids)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._replies[rid] = fut
        try:
            self._flush_releases()
            self.send(Req(rid, op, args))
            ok, value = fut.result(timeout)
        finally:
            self._replies.pop(rid, None)
        if not ok:
            raise value
        return value

    def call(self, op: str, *args: Any) -> None:
        """Fire-and-forget message; ordering on the socket keeps later requests after it."""
        self.send(Call(op, args))

    def _reader(self) -> None:
        # The driver's cancel is a SIGINT to this process: it must reach the main thread (the
        # one running the task), which it only interrupts if delivered there. (This thread
        # starts no processes, so its mask leaks nowhere.)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while True:
                self._frame_seq += 1
                msg = recv_frame(self.sock)
                tp = type(msg)
                if tp is Reply:
                    fut = self._replies.get(msg.rid)
                    if fut is not None and not fut.done():
                        fut.set_result((msg.ok, msg.value))
                elif self.actor is not None and (tp is ActorRun or tp is ActorStop
                                                 or tp is Exit):
                    self.actor.route(msg)
                elif tp is Cancel and self.actor is not None:
                    self.actor.cancel(msg.task_id)
                elif tp is Cancel:
                    self._cancel_for = msg.task_id
                    if self.current_task == msg.task_id and self._interruptible:
                        os.kill(os.getpid(), signal.SIGINT)
                elif tp is Credit:
                    with self._credit_cv:
                        self._credit[msg.task_id] = msg.consumed
                        self._credit_cv.notify_all()
                else:
                    self._inbox.put(msg)
        except (EOFError, OSError):
            pass
        # The driver is gone: nothing we compute can be delivered.
        end_process()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Only user code is interruptible; a SIGINT that lands while we talk to the driver
        # would corrupt a frame.
        if self._interruptible and self._cancel_for == self.current_task:
            if self._sending:
                self._deferred_cancel = True
                return
            raise _TaskCancelled()

    # -- main loop -----------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._reader, name="aioray-worker-reader", daemon=True).start()
        self.send(Ready(os.getpid()))
        while True:
            msg = self._inbox.get()
            tp = type(msg)
            if tp is Init:
                self.driver_pid, path, self.namespace, self.job_id, self.node_id = msg[:5]
                sys.path[:] = path
                output.install(self.output_label, msg.log_to_driver, msg.logging)
                output.set_title("idle")
            elif tp is Fn:
                try:
                    self._functions[msg.fn_id] = _load_function(msg.blob)
                except Exception:
                    self._unloaded[msg.fn_id] = msg.blob  # see _function()
                else:
                    adopt_pickled(msg.fn_id, msg.blob)
            elif tp is Task:
                self._run_task(msg)
                msg = None
                # The task's arguments died with it: release their borrowed refs now, not at
                # the next message (an idle worker would otherwise pin them indefinitely).
                self._flush_releases()
            elif tp is ActorStart:
                self.actor_start = msg
                output.set_title(msg.class_name)
                ActorServer(self, msg).serve()
                break  # the actor's process ends with the actor
            elif tp is Exit:
                break

    def _function(self, fn_id: bytes) -> Callable[..., Any]:
        fn = self._functions.get(fn_id)
        if fn is None:  # failed to load on arrival: again, now under the task's runtime_env
            blob = self._unloaded[fn_id]
            fn = self._functions[fn_id] = _load_function(blob)  # raises: the task's error
            del self._unloaded[fn_id]
            adopt_pickled(fn_id, blob)
        return fn

    def _run_task(self, msg: Task) -> None:
        (task_id, fn_id, payload, dep_values, nret, name, gpu_ids, streaming, bp,
         runtime_env, self._resources) = msg
        self.current_task = task_id
        self.current_name = name
        output.set_title(name.rpartition(".")[2])
        # _cancel_for is not reset: a cancel that arrived before this task started counts.
        self._gpu_ids = list(gpu_ids or ())
        if gpu_ids is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
        elif self._initial_cvd is None:  # not the devices of an earlier GPU task on this worker
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self._initial_cvd
        # This task's env_vars / working_dir / py_modules, undone after it: the worker runs
        # other tasks next (those set nothing or their own).
        restore: Callable[[], None] | None = None
        def started() -> None:  # only user code is interruptible by a cancel
            self._interruptible = True
            if self._cancel_for == task_id:
                raise _TaskCancelled()

        def finished() -> None:
            self._interruptible = False

        emit = stop = pause = None
        if streaming:  # hooks read the task from self (bound methods: the per-item path)
            self._streaming = task_id
            self._backpressure = bp
            emit, stop, pause = self._emit, self._before_item, self._after_item
        try:
            self._runtime_env = dict(runtime_env or {})
            if runtime_env:
                restore = apply_runtime_env(runtime_env)
            stored = run_sync(Body(self._function(fn_id), payload, dep_values, name, nret,
                                   self.driver_pid), emit, stop=stop, pause=pause,
                              started=started, finished=finished,
                              passthrough=(KeyboardInterrupt,))
            self._credit.pop(task_id, None)
            self._flush_releases()
            self.send(Done(task_id, stored or []))
        except KeyboardInterrupt as e:  # our cancel (_TaskCancelled), or the user's own
            self._interruptible = False
            if not isinstance(e, _TaskCancelled) and self._cancel_for != task_id:
                self._send_error(task_id, name, e)
            else:
                self._flush_releases()
                self.send(Done(task_id, ErrorValue(TaskCancelledError(task_id.hex()))))
        except AppError as e:
            self._interruptible = False
            self._send_error(task_id, name, e.original or e.error)
        except BaseException as e:  # outside user code (e.g. loading the function)
            self._interruptible = False
            self._send_error(task_id, name, e)
        finally:
            self.current_task = None
            output.set_title("idle")
            if restore is not None:
                restore()

    def _send_error(self, task_id: bytes, name: str, e: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        err = RayTaskError(name, tb, picklable_exception(e), os.getpid())
        self._flush_releases()
        try:
            self.send(Failed(task_id, err))
        except Exception as send_error:  # pickled in the check, not on the wire: say why
            stand_in = UnserializableException.of(e, repr(send_error))
            self.send(Failed(task_id, RayTaskError(name, tb, stand_in, os.getpid())))

    # -- a streaming generator task: each item is sent as it is yielded ------------------
    def _before_item(self, items: Iterable[Any]) -> bool:
        self._interruptible = False  # no cancel may land mid-frame
        if self._cancel_for is not None and self._cancel_for == self._streaming:
            self._cancel_at_yield(items)  # arrived while the item was produced
        return False

    def _emit(self, stored: Any) -> None:
        if self._releases:
            self._flush_releases()
        self.send(Yield(self._streaming, stored))

    def _after_item(self, items: Iterable[Any], produced: int) -> None:
        """Pause while ``backpressure`` items are unconsumed (when set)."""
        task_id = self._streaming
        backpressure = self._backpressure
        if backpressure > 0:
            with self._credit_cv:
                while produced - self._credit.get(task_id, 0) >= backpressure:
                    if self._cancel_for == task_id:
                        self._cancel_at_yield(items)
                    self._interruptible = True
                    try:
                        self._credit_cv.wait(0.5)
                    finally:
                        self._interruptible = False
        if self._cancel_for == task_id:  # arrived while we were sending (not interruptible)
            self._cancel_at_yield(items)
        self._interruptible = True

    @staticmethod
    def _cancel_at_yield(gen: Iterable[Any]) -> None:
        """Raise the cancel inside the generator, at its ``yield``, so its code sees the
        KeyboardInterrupt as it would have mid-body; if it swallows that, stop anyway."""
        throw = getattr(gen, "throw", None)
        if throw is not None:
            throw(_TaskCancelled())
        raise _TaskCancelled()

    # -- the API, from inside a task ------------------------------------------------------
    def output_label(self) -> str:
        """Who prints (Ray's prefixes): the actor (its __repr__ if its class has one), or the
        task running now."""
        if self.actor_start is not None:
            actor = self.actor
            return actor.label() if actor is not None else self.actor_start.class_name
        return self.current_name.rpartition(".")[2] or "worker"  # f, not test.<locals>.f

    def task_now(self) -> bytes | None:
        """The task or actor call the calling code belongs to (None: none)."""
        call = CURRENT_CALL.get()
        return call if call is not None else self.current_task

    def borrow(self, id: bytes) -> ObjectRef[Any]:
        token = self._tokens.get(id)
        if token is None:
            token = BorrowToken(self, id)
            self._tokens[id] = token
        token.seen = self._frame_seq
        return ObjectRef(id, token)

    def _new_refs(self, task_id: bytes, n: int) -> list[ObjectRef[Any]]:
        return [self.borrow(object_id(task_id, i + 1)) for i in range(n)]

    def submit_task(self, rf: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    opts: dict[str, Any]) -> Any:
        payload, deps = pack_args(args, kwargs, rf._name, self.driver_pid, rf._function)
        task_id = new_task_id()
        nret: Any = opts.get("num_returns", None if rf._is_generator else 1)
        self.call("submit", rf, payload, [d.binary() for d in deps], opts, task_id,
                  self.task_now())
        if rf._is_generator and nret in (None, "streaming"):
            return ObjectRefGenerator(WorkerStream(self, task_id))
        if nret == "dynamic":
            nret = 1
        refs = self._new_refs(task_id, nret)
        if nret == 1:
            return refs[0]
        return refs if nret else None

    def put(self, value: Any) -> ObjectRef[Any]:
        task_id = new_task_id()
        ref = self.borrow(object_id(task_id, 0))
        self.call("put", ref.binary(), serialize(value, self.driver_pid))
        return ref

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        single, lst = as_ref_list(refs, "get")
        check_timeout(timeout)
        stored = self.request("get", [r.binary() for r in lst], timeout)
        values = [deserialize(s) for s in stored]
        return values[0] if single else values

    def wait(self, refs: Sequence[Any], num_returns: int = 1, timeout: float | None = None,
             fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        # Same checks as in the driver: a bad call must fail here, not hang the task.
        refs = check_wait_args(refs, num_returns, timeout)
        if not refs:
            return [], []
        if any(isinstance(r, ObjectRefGenerator) for r in refs):
            # The driver decides readiness of refs and generators alike.
            keys = [("g", r._stream.wait_key()) if isinstance(r, ObjectRefGenerator)
                    else ("r", r.binary()) for r in refs]
            ready_at = set(sorted(self.request("gen_wait", keys, num_returns, timeout))
                           [:num_returns])
            return ([r for i, r in enumerate(refs) if i in ready_at],
                    [r for i, r in enumerate(refs) if i not in ready_at])
        ids = [r.binary() for r in refs]
        ready_ids = set(self.request("wait", ids, num_returns, timeout))
        ready = [r for r in refs if r.binary() in ready_ids][:num_returns]
        taken = {r.binary() for r in ready}
        return ready, [r for r in refs if r.binary() not in taken]

    async def get_async(self, refs: Any, timeout: float | None = None) -> Any:
        # The worker has no runtime loop: a thread blocks on the driver for us.
        return await asyncio.get_running_loop().run_in_executor(None, self.get, refs, timeout)

    async def wait_async(self, refs: Any, num_returns: int = 1, timeout: float | None = None,
                         fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        return await asyncio.get_running_loop().run_in_executor(
            None, self.wait, refs, num_returns, timeout, fetch_local)

    def await_ref(self, ref: ObjectRef[Any]) -> Awaitable[Any]:
        return self.get_async(ref, None)

    def rebuild_ref(self, id: bytes) -> ObjectRef[Any]:
        return self.borrow(id)

    def notify_ready(self, refs: Sequence[ObjectRef[Any]],
                     push: Callable[[ObjectRef[Any]], None]) -> None:
        def run() -> None:
            remaining = list(refs)
            while remaining:
                ready, remaining = self.wait(remaining, 1, None, True)
                for r in ready:
                    push(r)
        threading.Thread(target=run, daemon=True).start()

    def ref_future(self, ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(self.get(ref))
            except BaseException as e:
                fut.set_exception(e)
        threading.Thread(target=run, daemon=True).start()
        return fut

    def cancel(self, ref: Any, force: bool = False, recursive: bool = True) -> None:
        id = (object_id(bytes.fromhex(ref._stream.task_id_hex()), 0)
              if isinstance(ref, ObjectRefGenerator) else ref.binary())
        self.call("cancel", id, force, recursive)

    # -- actors, through the driver --------------------------------------------------------
    def create_actor(self, ac: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     opts: dict[str, Any]) -> Any:
        actor_id = uuid.uuid4().bytes
        payload, deps = pack_args(args, kwargs, f"{ac.__name__}.__init__", self.driver_pid)
        # get_if_exists may answer with an existing actor's id
        actor_id = self.request("create_actor", ac, payload, [d.binary() for d in deps], opts,
                                actor_id) or actor_id
        return ActorHandle(actor_id, ac.__name__, ac._methods, self.borrow(actor_id), self)

    def call_actor(self, handle: Any, meta: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any], opts: dict[str, Any]) -> Any:
        payload, deps = pack_args(args, kwargs, meta.name, self.driver_pid)
        task_id = new_task_id()
        self.call("actor_call", handle._actor_id, meta, payload, [d.binary() for d in deps],
                  opts, task_id)
        nret = opts.get("num_returns")
        if meta.is_generator and nret in (None, "streaming"):
            return ObjectRefGenerator(WorkerStream(self, task_id))
        if not isinstance(nret, int):
            nret = 1
        refs = self._new_refs(task_id, nret)
        return refs[0] if nret == 1 else (refs or None)

    def kill(self, handle: Any, no_restart: bool = True) -> None:
        self.request("kill_actor", handle._actor_id, no_restart)

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        actor_id, class_name, methods = self.request("get_actor", name, namespace)
        return ActorHandle(actor_id, class_name, methods, self.borrow(actor_id), self)

    def progress(self, state: BarState) -> None:
        self.call("progress", state)  # drawn by the driver

    def progress_print(self, text: str, kwargs: dict[str, Any]) -> None:
        self.call("progress_print", text, kwargs)

    def timeline(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.request("timeline"))

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.request("state_rows", kind))

    def record_metric(self, record: MetricRecord) -> None:
        self.call("metric", record)  # aggregated in the driver

    def metrics_snapshot(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.request("metrics_snapshot"))

    def list_named_actors(self, all_namespaces: bool) -> list[Any]:
        return cast(list[Any], self.request("list_named_actors", self.namespace, all_namespaces))

    def exit_actor(self) -> NoReturn:
        if self.actor_start is not None and CURRENT_CALL.get() is not None:
            raise ActorExit()
        raise TypeError("exit_actor API is called on a non-actor worker: exit_actor() was "
                        "called inside a task, not an actor method.")

    def reduce_handle(self, handle: ActorHandle[Any]) -> Any:
        _serialization.note_ref(handle)  # the driver pins the actor while the value lives
        return (_rebuild_handle, (handle._actor_id, handle._class_name, handle._methods))

    def rebuild_handle(self, actor_id: bytes, class_name: str,
                       methods: dict[str, MethodMeta]) -> ActorHandle[Any]:
        return ActorHandle(actor_id, class_name, methods, self.borrow(actor_id), self)

    # -- the node and the caller ---------------------------------------------------------
    def cluster_resources(self) -> dict[str, float]:
        return cast(dict[str, float], self.request("cluster_resources"))

    def available_resources(self) -> dict[str, float]:
        return cast(dict[str, float], self.request("available_resources"))

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": self.node_id, "Alive": True, "Resources": self.cluster_resources(),
                 "NodeManagerAddress": "127.0.0.1"}]

    def gpu_ids(self) -> list[int]:
        start = self.actor_start
        if start is not None:
            return list(start.gpu_ids or ())
        return list(self._gpu_ids)

    def context_info(self) -> ContextInfo:
        start = self.actor_start
        if start is not None:
            call = CURRENT_CALL.get()
            actor = self.actor
            return ContextInfo(
                job_id=self.job_id, node_id=self.node_id, namespace=start.namespace,
                task_id=call.hex() if call else None,
                canceled=None if call is None else (actor is not None
                                                    and call in actor.cancelled),
                actor_id=start.actor_id.hex(), actor_name=start.name,
                restarted=start.restarts > 0, assigned_resources=dict(start.resources),
                gpu_ids=list(start.gpu_ids or ()), runtime_env=dict(start.runtime_env or {}))
        task = self.current_task
        return ContextInfo(
            job_id=self.job_id, node_id=self.node_id, namespace=self.namespace,
            task_id=task.hex() if task else None,
            canceled=None if task is None else self._cancel_for == task,
            gpu_ids=list(self._gpu_ids), runtime_env=dict(self._runtime_env) if task else {},
            assigned_resources=dict(self._resources) if task else {})

    def runtime_context(self) -> RuntimeContext:
        return RuntimeContext(self.context_info)

    def runtime_info(self) -> RuntimeInfo:
        return RuntimeInfo(node_id=self.node_id, job_id=self.job_id, namespace=self.namespace,
                           resources=self.cluster_resources(), loop="(the driver's)")

    def on_own_loop(self) -> bool:
        return False  # a worker has no runtime loop to block

    def check_strategy(self, strategy: object) -> None:
        pass  # checked by the driver when the task is scheduled (TaskUnschedulableError)

    def is_stale(self) -> bool:
        return False

    def shutdown(self) -> None:
        pass  # the driver ends this process


def _load_function(blob: bytes) -> Callable[..., Any]:
    return cast(Callable[..., Any], _pickle.loads(blob))


CLIENT: WorkerClient | None = None


def main() -> None:
    if sys.argv[1] == "--zygote":
        zygote.serve(int(sys.argv[2]), run_worker)
    else:
        run_worker(int(sys.argv[1]))


def run_worker(fd: int) -> NoReturn:
    """Serve the driver on socket ``fd`` until it says exit or goes away; never returns."""
    global CLIENT
    sock = socket.socket(fileno=fd)
    _ids.reseed_ids()
    CLIENT = WorkerClient(sock)
    registry.install_worker(CLIENT)
    _serialization.OWN_SEGMENTS = False
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except Exception:
        pass
    try:
        CLIENT.serve()
    except (EOFError, OSError):
        pass  # the driver went away (shutdown while we started): nothing to report to
    end_process()


def end_process() -> NoReturn:
    """Exit, taking down every process this worker's code started (as Ray does on Linux):
    a worker leads its own process group, and what its tasks start joins that group."""
    output.end()
    if os.getpgrp() == os.getpid():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            os.killpg(os.getpid(), signal.SIGKILL)  # this process too: exiting anyway
        except OSError:
            pass
    os._exit(0)
