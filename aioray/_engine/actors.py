"""Every actor of one runtime (:class:`ActorManager`): creation, calls, names, kill, shutdown,
and the handles' lifetimes. How one actor runs is :mod:`aioray._engine.actor_state`.

Handles are ordinary picklable objects; the actor lives while any handle does (unless named or
detached), as in Ray.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import uuid
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aioray._engine.actor_state import ActorCall, ActorState
from aioray._engine.backchannel import ref_for
from aioray._engine.context import current_call, current_task
from aioray._engine.states import ActorStatus, CallState, Placement, placement_of
from aioray._engine.streams import make_outputs, user_outputs
from aioray._exec.invoke import cancelled_error
from aioray._handles.actor import ActorClass, ActorHandle, MethodMeta
from aioray._handles.args import ArgRef, pack_args, unpack_args
from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.ref import ObjectRef
from aioray._objects import pickler as _pickle
from aioray._objects.ids import new_task_id, object_id
from aioray._objects.serialization import ErrorValue
from aioray._objects.store import STORE, ObjectEntry
from aioray.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorHandleNotFoundError,
    ActorShutdownError,
    PendingCallsLimitExceeded,
    RayActorError,
    TaskCancelledError,
)

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime

_log = logging.getLogger("aioray")
GRAVEYARD_SIZE = 10_000



# -- handles -------------------------------------------------------------------------------
class ActorToken:
    """Shared by every driver-side handle of one actor; its death means no handle is left."""

    __slots__ = ("__weakref__", "actor_id", "manager")

    def __init__(self, manager: ActorManager, actor_id: bytes) -> None:
        self.manager = manager
        self.actor_id = actor_id

    def __del__(self) -> None:
        # Always deferred: while __del__ runs, weak references to this token still resolve,
        # so _out_of_scope would think a handle is still alive.
        try:
            rt = self.manager.rt
            if rt.in_loop_thread():
                rt.loop.call_soon(self.manager._out_of_scope, self.actor_id)
            else:
                rt.call_soon(self.manager._out_of_scope, self.actor_id)
        except Exception:
            pass


def pin_actor(rt: Runtime, actor_id: bytes) -> ActorHandle[Any]:
    """Driver side: a handle that keeps ``actor_id`` alive while a stored value (sent back by a
    worker, say) contains a handle to it."""
    state = rt.actors.actors.get(actor_id)
    if state is None:  # dead or unknown: nothing to keep alive
        return ActorHandle(actor_id, "actor", {}, None, None)
    return rt.actors.handle_for(actor_id, state.ac.__name__, state.ac._methods)


def _submitter() -> Any:
    """Who is calling, as Ray counts submitters: an actor, a task, or the driver (None)."""
    call = current_call.get()
    if call is not None:
        return call.actor_id
    spec = current_task.get()
    return spec.task_id if spec is not None else None


class ActorManager:
    """Every actor of one runtime: creation, calls, names, kill, shutdown."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.actors: dict[bytes, ActorState] = {}
        self.named: dict[tuple[str, str], ActorState] = {}
        self.calls: dict[bytes, ActorCall] = {}
        # max_pending_calls: the limit and the count of calls in flight, per actor
        self.pending_limits: dict[bytes, int] = {}
        self.pending: dict[bytes, int] = {}
        self._pending_lock = threading.Lock()
        # Why recently dead actors died, so later calls raise the real cause (bounded).
        self.graveyard: OrderedDict[bytes, ActorDiedError] = OrderedDict()
        self._named_lock = threading.Lock()
        self.class_blobs: weakref.WeakKeyDictionary[ActorClass[Any], bytes] = (
            weakref.WeakKeyDictionary())
        self.spare_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="aioray-actor-gen")
        bc = runtime.backchannel
        bc.handle_call("actor_call", self._worker_call)
        bc.handle("create_actor", self._worker_create)
        bc.handle("get_actor", self._worker_get_actor)
        bc.handle("kill_actor", self._worker_kill)
        bc.handle("list_named_actors", self._worker_list_named)

    # -- API (any thread) ---------------------------------------------------------------
    def create(self, ac: ActorClass[Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               opts: dict[str, Any], actor_id: bytes | None = None) -> ActorHandle[Any]:
        if opts.get("runtime_env") and placement_of(
                ac._is_async, opts.get("executor"), self.rt.local_mode) is not Placement.PROCESS:
            raise ValueError(
                f"runtime_env cannot apply to actor {ac.__name__}: aioray's actors run in the "
                "driver process (on its threads and event loop), whose one environment "
                "(os.environ, working directory, sys.path) every thread shares. Put the work "
                "that needs it in a sync task (worker process) with that runtime_env.")
        if placement_of(ac._is_async, opts.get("executor"),
                        self.rt.local_mode) is Placement.PROCESS:
            self.class_blob(ac)  # at .remote(), as Ray: a class that can't cross says so here
        name = opts.get("name")
        namespace = opts.get("namespace") or self.rt.namespace
        if name is not None:
            with self._named_lock:
                existing = self.named.get((namespace, name))
                if existing is not None and existing.status is not ActorStatus.DEAD:
                    if opts.get("get_if_exists"):
                        return self.handle_for(existing.actor_id, existing.ac.__name__,
                                               existing.ac._methods)
                    raise ActorAlreadyExistsError(
                        f"An actor named {name!r} already exists in namespace {namespace!r}. "
                        "Pick another name, fetch it with aioray.get_actor(name), or pass "
                        "get_if_exists=True.")
                payload, deps = pack_args(args, kwargs, f"{ac.__name__}.__init__",
                                          self.rt.driver_pid)
                state = ActorState(self, actor_id or uuid.uuid4().bytes, ac, payload, deps, opts)
                self.named[(namespace, name)] = state
        else:
            payload, deps = pack_args(args, kwargs, f"{ac.__name__}.__init__",
                                      self.rt.driver_pid)
            state = ActorState(self, actor_id or uuid.uuid4().bytes, ac, payload, deps, opts)
        self.actors[state.actor_id] = state
        limit = opts.get("max_pending_calls")
        if isinstance(limit, int) and limit > 0:  # -1 (Ray's default): unlimited
            self.pending_limits[state.actor_id] = limit
        handle = self.handle_for(state.actor_id, ac.__name__, ac._methods)
        self.rt.call_soon(self._start, state)
        return handle

    def class_blob(self, ac: ActorClass[Any]) -> bytes:
        """``ac`` pickled for its actors' processes (once per class)."""
        blob = self.class_blobs.get(ac)
        if blob is None:
            try:
                blob = _pickle.dumps(ac)
            except Exception as e:
                raise TypeError(
                    f"The actor class {ac.__name__} can't be sent to its worker process: "
                    f"pickling it failed ({type(e).__name__}: {e}). Something its methods use "
                    "(a module global, a class attribute) can't be pickled. Create that object "
                    "in __init__ instead, or keep the actor in this process with "
                    "executor=\"thread\" (sync actors run in their own process by default, "
                    "as in Ray).") from e
            self.class_blobs[ac] = blob
        return blob

    def _start(self, state: ActorState) -> None:
        if state.status is ActorStatus.DEAD:  # killed before it could start
            return
        state.create_task = self.rt.loop.create_task(state.create())

    def handle_for(self, actor_id: bytes, class_name: str,
                   methods: dict[str, MethodMeta]) -> ActorHandle[Any]:
        state = self.actors.get(actor_id)
        token = state.token_ref() if state is not None and state.token_ref else None
        if token is None:
            token = ActorToken(self, actor_id)
            if state is not None:
                state.token_ref = weakref.ref(token)
        return ActorHandle(actor_id, class_name, methods, token, self.rt)

    def call(self, handle: ActorHandle[Any], meta: MethodMeta, args: tuple[Any, ...],
             kwargs: dict[str, Any], opts: dict[str, Any],
             task_id: bytes | None = None, payload: Any = None,
             deps: list[ObjectRef[Any]] | None = None, submitter: Any = None) -> Any:
        if payload is None:
            payload, deps = pack_args(args, kwargs, meta.name, self.rt.driver_pid)
        call = ActorCall(task_id or new_task_id(), meta, payload, deps or [], opts)
        call.actor_id = handle._actor_id
        call.submitter = submitter if submitter is not None else _submitter()
        limit = self.pending_limits.get(handle._actor_id)
        if limit is not None:
            with self._pending_lock:
                n = self.pending.get(handle._actor_id, 0)
                if n >= limit:
                    raise PendingCallsLimitExceeded(
                        f"The actor {handle._class_name} has {n} calls in flight, its "
                        f"max_pending_calls. Wait for some results before sending more.")
                self.pending[handle._actor_id] = n + 1
        nret = call.nret = opts.get("num_returns")
        if not meta.is_generator and nret in (None, "streaming", "dynamic"):
            nret = call.nret = 1
        make_outputs(call, self.rt, call.task_id, meta.name, meta.is_generator, nret,
                     opts.get("_generator_backpressure_num_objects") or 0)
        self.calls[call.task_id] = call  # now: cancel() may come before _submit_call runs
        self.rt.call_soon(self._submit_call, handle._actor_id, call)
        return user_outputs(call.returns, call.sink)

    def done(self, call: ActorCall) -> None:
        """A call is over (finished, failed or dropped): forget it (the state API keeps a
        record)."""
        if self.calls.pop(call.task_id, None) is None:
            return  # already forgotten
        if self.rt.state.on:
            self.rt.state.call_done(call, self.actors.get(call.actor_id))
        if call.actor_id in self.pending_limits:
            with self._pending_lock:
                self.pending[call.actor_id] = self.pending.get(call.actor_id, 1) - 1

    def _submit_call(self, actor_id: bytes, call: ActorCall) -> None:
        state = self.actors.get(actor_id)
        if call.cancelled:  # cancelled before it reached the actor
            self.done(call)
            return
        if state is None:
            self.done(call)
            call.fail(self.graveyard.get(actor_id) or ActorDiedError(
                "The actor is dead (killed, exited, or out of scope).", actor_id=actor_id.hex()))
            return
        state.submit(call)

    def kill(self, handle: ActorHandle[Any], no_restart: bool = True) -> None:
        if not isinstance(handle, ActorHandle):
            raise TypeError(f"aioray.kill() expects an actor handle, got "
                            f"{type(handle).__name__}. To stop a task use aioray.cancel().")
        token = handle._token
        if (handle._actor_id not in self.actors and isinstance(token, ActorToken)
                and token.manager is not self):
            raise ActorHandleNotFoundError(
                f"aioray.kill(): actor {handle._actor_id.hex()} is not known to this runtime: "
                "its handle was made before aioray.shutdown() and init() (Ray's error for a "
                "handle from a previous session).")
        self.rt.call_soon(self._kill, handle._actor_id, no_restart)

    def _kill(self, actor_id: bytes, no_restart: bool) -> None:
        state = self.actors.get(actor_id)
        if state is None:
            return
        cause = ActorDiedError("The actor is dead because it was killed by `ray.kill` "
                               "(aioray.kill()).",
                               actor_id=actor_id.hex())
        if state.status in (ActorStatus.PENDING, ActorStatus.RESTARTING):
            if not no_restart and state.can_restart():
                return  # already on its way to a fresh instance
            task = getattr(state, "create_task", None)
            if task is not None and not task.done():
                task.cancel()
        state._die(cause, restart=not no_restart)

    def get_actor(self, name: str, namespace: str | None = None) -> ActorHandle[Any]:
        if not isinstance(name, str) or not name:
            raise ValueError(f"get_actor() needs a non-empty actor name, got {name!r}.")
        ns = namespace or self.rt.namespace
        with self._named_lock:
            state = self.named.get((ns, name))
        if state is None or state.status is ActorStatus.DEAD:
            names = sorted(n for (space, n), s in self.named.items() if space == ns)
            raise ValueError(
                f"Failed to look up actor with name {name!r} in namespace {ns!r}. Named actors "
                f"in that namespace: {names or 'none'}.")
        return self.handle_for(state.actor_id, state.ac.__name__, state.ac._methods)

    def list_named(self, namespace: str, all_namespaces: bool) -> list[Any]:
        """Ray's ``list_named_actors``: live named actors (names, or name/namespace dicts)."""
        with self._named_lock:
            live = [key for key, s in self.named.items() if s.status is not ActorStatus.DEAD]
        if all_namespaces:
            return [{"name": name, "namespace": ns} for ns, name in sorted(live)]
        return sorted(name for ns, name in live if ns == namespace)

    def check_cancel(self, task_id: bytes, force: bool) -> None:
        """Any thread: refuse ``cancel(force=True)`` of an actor call at the caller (as Ray)."""
        if force and task_id in self.calls:
            raise ValueError("force=True is not supported for actor tasks (as in Ray); use "
                             "aioray.kill(actor) to stop the actor.")

    def cancel_call(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        call = self.calls.get(task_id)
        if call is None or call.cancelled:
            return False
        self.check_cancel(task_id, force)
        call.cancelled = True
        if call.state is CallState.RUNNING and call.atask is not None and not call.in_thread:
            # Interrupted inside the async method: a task error, as Ray reports it (a
            # RayTaskError that is also a TaskCancelledError). A call that never ran: plain.
            state = self.actors.get(call.actor_id)
            name = f"{state.ac.__name__}.{call.meta.name}" if state else call.meta.name
            call.fail(cancelled_error(name, task_id.hex()))
        else:
            call.fail(TaskCancelledError(task_id.hex()))
        if call.state is CallState.RUNNING and call.atask is not None and not call.in_thread:
            call.atask.cancel()
        elif call.in_thread:
            state = self.actors.get(call.actor_id)
            if state is not None and state.host is not None:
                state.host.cancel(task_id)  # is_canceled() turns true; a generator stops
        elif call.state is CallState.QUEUED:
            state = self.actors.get(call.actor_id)
            group = state.groups.get(call.group) if state is not None else None
            if group is not None and call in group.waiting:
                # it held back its submitter's later calls while waiting for its arguments
                group.waiting.pop(call).cancel()
                state._pump(group)  # type: ignore[union-attr]
        # A sync method already on its thread is not interrupted (as in Ray): it runs to the
        # end (``get_runtime_context().is_canceled()`` tells it), and its result is dropped.
        return True

    # -- bookkeeping (loop thread) ------------------------------------------------------
    def _out_of_scope(self, actor_id: bytes) -> None:
        state = self.actors.get(actor_id)
        if state is None or state.name is not None or state.detached:
            return
        if state.token_ref is not None and state.token_ref() is not None:
            return  # a new handle was made meanwhile
        # Ray lets queued calls finish before an out-of-scope actor goes away.
        state.terminate_when_idle = True
        if state.status is ActorStatus.PENDING and state._idle():
            # Never used and not created yet (maybe waiting for resources): don't create it.
            task = getattr(state, "create_task", None)
            if task is not None and not task.done():
                task.cancel()
            state._die(ActorDiedError(
                f"The actor {state.ac.__name__} went out of scope before it was created.",
                actor_id=actor_id.hex()))
            return
        state._exit_if_unused()

    def _forget(self, state: ActorState) -> None:
        if self.actors.pop(state.actor_id, None) is not None and self.rt.state.on:
            self.rt.state.actor_dead(state)
        self.pending_limits.pop(state.actor_id, None)
        self.pending.pop(state.actor_id, None)
        self.graveyard[state.actor_id] = state._dead_error()
        if len(self.graveyard) > GRAVEYARD_SIZE:
            self.graveyard.popitem(last=False)
        if state.name is not None:
            key = (state.namespace, state.name)
            with self._named_lock:
                if self.named.get(key) is state:
                    del self.named[key]

    def shutdown(self, error: BaseException) -> None:
        for state in list(self.actors.values()):
            state.shutdown_hook = state.status is ActorStatus.ALIVE
            state._die(error if isinstance(error, RayActorError) else ActorShutdownError(
                f"The actor was stopped by aioray.shutdown(): {error}", cause=error,
                actor_id=state.actor_id.hex()))
        self.spare_threads.shutdown(wait=False, cancel_futures=True)

    # -- from worker processes ----------------------------------------------------------
    def _worker_call(self, worker: Any, actor_id: bytes, meta: MethodMeta, payload: Any,
                     dep_ids: list[bytes], opts: dict[str, Any], task_id: bytes) -> None:
        state = self.actors.get(actor_id)
        name = state.ac.__name__ if state is not None else "actor"
        handle: ActorHandle[Any] = ActorHandle(actor_id, name, {}, None, self.rt)
        try:
            run = worker.run
            out = self.call(handle, meta, (), {}, opts, task_id=task_id, payload=payload,
                            deps=[ref_for(i) for i in dep_ids],
                            submitter=("worker", worker.pid, run.task_id if run else None))
        except PendingCallsLimitExceeded as e:  # the worker's refs carry the error
            nret = opts.get("num_returns")
            n = nret if isinstance(nret, int) and not meta.is_generator else 1
            out = [ObjectRef(entry.id, entry) for entry in (
                ObjectEntry(object_id(task_id, i + 1), ErrorValue(e)) for i in range(n))]
        refs = out if isinstance(out, list) else [out] if isinstance(out, ObjectRef) else []
        if isinstance(out, ObjectRefGenerator):
            self.rt.backchannel.generators[task_id] = out
            refs = [out.completed()]
        for r in refs:
            STORE.register(r._entry)
            worker.pin_created(r)

    async def _worker_create(self, worker: Any, ac: ActorClass[Any], payload: Any,
                             dep_ids: list[bytes], opts: dict[str, Any],
                             actor_id: bytes) -> bytes:
        deps = [ref_for(i) for i in dep_ids]
        args, kwargs = unpack_args(payload, [])
        args = tuple(deps[a.index] if type(a) is ArgRef else a for a in args)
        kwargs = {k: deps[v.index] if type(v) is ArgRef else v for k, v in kwargs.items()}
        handle = self.create(ac, args, kwargs, opts, actor_id=actor_id)
        worker.borrowed[handle._actor_id] = [handle, worker.seq + 1]
        return handle._actor_id  # not ``actor_id`` when get_if_exists found one

    async def _worker_get_actor(self, worker: Any, name: str, namespace: str | None) -> Any:
        handle = self.get_actor(name, namespace)
        worker.borrowed[handle._actor_id] = [handle, worker.seq + 1]
        return (handle._actor_id, handle._class_name, handle._methods)

    async def _worker_list_named(self, worker: Any, namespace: str,
                                 all_namespaces: bool) -> list[Any]:
        return self.list_named(namespace, all_namespaces)

    async def _worker_kill(self, worker: Any, actor_id: bytes, no_restart: bool) -> None:
        self._kill(actor_id, no_restart)
