"""The worker process: runs sync task bodies for the driver and talks back to it.

Started as ``python -m aioray._worker_main FD`` (not ``multiprocessing``: that would re-import the
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
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from aioray import _object_ref
from aioray._generator import (
    WorkerObjectRefGenerator,
    check_no_generator,
    worker_wait,
    yield_items,
)
from aioray._object_ref import ObjectRef, new_task_id, object_id
from aioray._objects import pickler as _pickle
from aioray._objects import serialization as _serialization
from aioray._objects.serialization import ErrorValue, deserialize, picklable_exception, serialize
from aioray._remote_function import adopt_pickled
from aioray._runtime import _as_ref_list, _check_timeout, _check_wait_args
from aioray._task_args import pack_args, split_returns, unpack_args
from aioray._wire.framing import encode, recv_frame
from aioray.exceptions import (
    GetTimeoutError,
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


class _TaskCancelled(KeyboardInterrupt):
    """Raised in the task's code by ``cancel()``: a KeyboardInterrupt, as in Ray, so code that
    cleans up on Ctrl-C cleans up on cancel too."""


class WorkerClient:
    """The runtime as seen from inside a worker process: every call goes to the driver."""

    is_worker = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._replies: dict[int, concurrent.futures.Future[Any]] = {}
        self._rids = itertools.count(1)
        self._functions: dict[bytes, Callable[..., Any]] = {}
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
        self.gpu_ids: list[int] = []
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
            self.send(("release", rel))

    def request(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        rid = next(self._rids)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._replies[rid] = fut
        try:
            self._flush_releases()
            self.send(("req", rid, op, args))
            ok, value = fut.result(timeout)
        finally:
            self._replies.pop(rid, None)
        if not ok:
            raise value
        return value

    def call(self, op: str, *args: Any) -> None:
        """Fire-and-forget message; ordering on the socket keeps later requests after it."""
        self.send(("call", op, args))

    def _reader(self) -> None:
        # The driver's cancel is a SIGINT to this process: it must reach the main thread (the
        # one running the task), which it only interrupts if delivered there. (This thread
        # starts no processes, so its mask leaks nowhere.)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while True:
                self._frame_seq += 1
                msg = recv_frame(self.sock)
                kind = msg[0]
                if kind == "reply":
                    fut = self._replies.get(msg[1])
                    if fut is not None and not fut.done():
                        fut.set_result((msg[2], msg[3]))
                elif kind == "cancel":
                    self._cancel_for = msg[1]
                    if self.current_task == msg[1] and self._interruptible:
                        os.kill(os.getpid(), signal.SIGINT)
                elif kind == "credit":
                    with self._credit_cv:
                        self._credit[msg[1]] = msg[2]
                        self._credit_cv.notify_all()
                else:
                    self._inbox.put(msg)
        except (EOFError, OSError):
            pass
        # The driver is gone: nothing we compute can be delivered.
        os._exit(0)

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
        self.send(("ready", os.getpid()))
        while True:
            msg = self._inbox.get()
            kind = msg[0]
            if kind == "init":
                _, self.driver_pid, path, self.namespace, self.job_id, self.node_id = msg
                sys.path[:] = path
            elif kind == "fn":
                self._functions[msg[1]] = _load_function(msg[2])
                adopt_pickled(msg[1], msg[2])
            elif kind == "task":
                self._run_task(msg)
                msg = None
                # The task's arguments died with it: release their borrowed refs now, not at
                # the next message (an idle worker would otherwise pin them indefinitely).
                self._flush_releases()
            elif kind == "exit":
                break

    def _run_task(self, msg: tuple[Any, ...]) -> None:
        _, task_id, fn_id, payload, dep_values, nret, name, gpu_ids, streaming, bp = msg
        self.current_task = task_id
        self.current_name = name
        # _cancel_for is not reset: a cancel that arrived before this task started counts.
        self.gpu_ids = list(gpu_ids or ())
        if gpu_ids is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
        elif self._initial_cvd is None:  # not the devices of an earlier GPU task on this worker
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self._initial_cvd
        try:
            fn = self._functions[fn_id]
            args, kwargs = unpack_args(payload, dep_values)
            self._interruptible = True
            try:
                if self._cancel_for == task_id:
                    raise _TaskCancelled()
                result = fn(*args, **kwargs)
                if streaming:
                    self._stream(task_id, yield_items(result, name), bp)
                    result = None
            finally:
                self._interruptible = False
            if streaming:
                stored: list[Any] = []
            else:
                stored = [serialize(v, self.driver_pid) for v in split_returns(result, nret, name)]
            self._flush_releases()
            self.send(("done", task_id, stored))
        except (_TaskCancelled, KeyboardInterrupt) as e:
            self._interruptible = False
            if isinstance(e, KeyboardInterrupt) and self._cancel_for != task_id:
                self._send_error(task_id, name, e)
            else:
                self._flush_releases()
                self.send(("done", task_id, ErrorValue(TaskCancelledError(task_id.hex()))))
        except BaseException as e:
            self._interruptible = False
            self._send_error(task_id, name, e)
        finally:
            self.current_task = None

    def _send_error(self, task_id: bytes, name: str, e: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        err = RayTaskError(name, tb, picklable_exception(e), os.getpid())
        self._flush_releases()
        try:
            self.send(("failed", task_id, err))
        except Exception as send_error:  # pickled in the check, not on the wire: say why
            stand_in = UnserializableException.of(e, repr(send_error))
            self.send(("failed", task_id, RayTaskError(name, tb, stand_in, os.getpid())))

    def _stream(self, task_id: bytes, gen: Iterable[Any], backpressure: int) -> None:
        """Send each yielded item as it is produced; pause while ``backpressure`` items are
        unconsumed (when set)."""
        produced = 0
        for item in gen:
            self._interruptible = False
            if self._cancel_for == task_id:  # arrived while the item was produced
                self._cancel_at_yield(gen)
            stored = serialize(item, self.driver_pid)
            self._flush_releases()
            self.send(("yield", task_id, stored))
            produced += 1
            if backpressure > 0:
                with self._credit_cv:
                    while produced - self._credit.get(task_id, 0) >= backpressure:
                        if self._cancel_for == task_id:
                            self._cancel_at_yield(gen)
                        self._interruptible = True
                        try:
                            self._credit_cv.wait(0.5)
                        finally:
                            self._interruptible = False
            if self._cancel_for == task_id:  # arrived while we were sending (not interruptible)
                self._cancel_at_yield(gen)
            self._interruptible = True
        self._credit.pop(task_id, None)

    @staticmethod
    def _cancel_at_yield(gen: Iterable[Any]) -> None:
        """Raise the cancel inside the generator, at its ``yield``, so its code sees the
        KeyboardInterrupt as it would have mid-body; if it swallows that, stop anyway."""
        throw = getattr(gen, "throw", None)
        if throw is not None:
            throw(_TaskCancelled())
        raise _TaskCancelled()

    # -- the API, from inside a task ------------------------------------------------------
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
        from aioray._generator import WorkerObjectRefGenerator
        payload, deps = pack_args(args, kwargs, rf._name, self.driver_pid, rf._function)
        task_id = new_task_id()
        nret: Any = opts.get("num_returns", None if rf._is_generator else 1)
        self.call("submit", rf, payload, [d.binary() for d in deps], opts, task_id,
                  self.current_task)
        if rf._is_generator and nret in (None, "streaming"):
            return WorkerObjectRefGenerator(self, task_id)
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
        check_no_generator(refs, "get")
        single, lst = _as_ref_list(refs, "get")
        _check_timeout(timeout)
        try:
            stored = self.request("get", [r.binary() for r in lst], timeout)
        except GetTimeoutError:
            raise
        values = [deserialize(s) for s in stored]
        return values[0] if single else values

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None,
             fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        # Same checks as in the driver: a bad call must fail here, not hang the task.
        refs = _check_wait_args(refs, num_returns, timeout)
        if not refs:
            return [], []
        if any(isinstance(r, WorkerObjectRefGenerator) for r in refs):
            return worker_wait(self, refs, num_returns, timeout)
        ids = [r.binary() for r in refs]
        ready_ids = set(self.request("wait", ids, num_returns, timeout))
        ready = [r for r in refs if r.binary() in ready_ids][:num_returns]
        taken = {r.binary() for r in ready}
        return ready, [r for r in refs if r.binary() not in taken]

    async def await_ref(self, ref: ObjectRef[Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self.get, ref)

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
        id = (object_id(ref._task_id, 0) if isinstance(ref, WorkerObjectRefGenerator)
              else ref.binary())
        self.call("cancel", id, force, recursive)

    # -- actors, through the driver --------------------------------------------------------
    def create_actor(self, ac: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     opts: dict[str, Any]) -> Any:
        import uuid

        from aioray._actor import ActorHandle
        actor_id = uuid.uuid4().bytes
        payload, deps = pack_args(args, kwargs, f"{ac.__name__}.__init__", self.driver_pid)
        # get_if_exists may answer with an existing actor's id
        actor_id = self.request("create_actor", ac, payload, [d.binary() for d in deps], opts,
                                actor_id) or actor_id
        return ActorHandle(actor_id, ac.__name__, ac._methods, self.borrow(actor_id), self)

    def call_actor(self, handle: Any, meta: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any], opts: dict[str, Any]) -> Any:
        from aioray._generator import WorkerObjectRefGenerator
        payload, deps = pack_args(args, kwargs, meta.name, self.driver_pid)
        task_id = new_task_id()
        self.call("actor_call", handle._actor_id, meta, payload, [d.binary() for d in deps],
                  opts, task_id)
        nret = opts.get("num_returns")
        if meta.is_generator and nret in (None, "streaming"):
            return WorkerObjectRefGenerator(self, task_id)
        if not isinstance(nret, int):
            nret = 1
        refs = self._new_refs(task_id, nret)
        return refs[0] if nret == 1 else (refs or None)

    def kill(self, handle: Any, no_restart: bool = True) -> None:
        self.request("kill_actor", handle._actor_id, no_restart)

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        from aioray._actor import ActorHandle
        actor_id, class_name, methods = self.request("get_actor", name, namespace)
        return ActorHandle(actor_id, class_name, methods, self.borrow(actor_id), self)

    def generic(self, op: str, *args: Any) -> Any:
        """Any driver-side operation that returns a value (actors, resources, queues…)."""
        return self.request(op, *args)


def _load_function(blob: bytes) -> Callable[..., Any]:
    return _pickle.loads(blob)  # type: ignore[no-any-return]


CLIENT: WorkerClient | None = None


def main() -> None:
    global CLIENT
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    _object_ref.reseed_ids()
    CLIENT = WorkerClient(sock)
    _object_ref.rebuild_hook = CLIENT.borrow
    from aioray import _runtime
    _runtime.set_worker_client(CLIENT)
    _serialization.OWN_SEGMENTS = False
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except Exception:
        pass
    try:
        CLIENT.serve()
    except (EOFError, OSError):
        pass  # the driver went away (shutdown while we started): nothing to report to
    os._exit(0)


if __name__ == "__main__":
    main()
