"""An actor's life on the driver: its queues per concurrency group, its calls, where its methods
run, its deaths and restarts (:class:`ActorState`), for the three execution models.

* **Async actors** (any ``async def`` method): methods are coroutines on the runtime loop, up to
  ``max_concurrency`` (default 1000) at once. Their sync methods run on the loop too (as in Ray:
  on the actor's event loop), so they never race with the async ones.
* **Sync actors**: by default in a worker process of their own (:class:`ActorProcess` moves
  ready calls across; the loop still decides everything), with ``executor="thread"`` on threads
  of the driver. One method at a time in submission order, or up to ``max_concurrency`` at once.
* ``executor="process"`` puts an async actor in a process with its own event loop.

Each concurrency group is a FIFO queue with a limit. For async actors a call leaves the queue
when a slot is free, then waits for its ref arguments, then runs. For sync actors the loop hands
every call whose arguments are ready to the group's threads or process (at most ``limit`` at
once on one FIFO) and outcomes come back in batches; a call still waiting for its arguments
holds back the calls behind it. Either way, with a limit of 1 calls run strictly in the order
they were submitted (per caller and overall).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioray._engine.actor_process import ActorProcess
from aioray._engine.context import current_actor, current_call, current_task
from aioray._engine.states import ActorStatus, CallState, Placement, placement_of
from aioray._engine.streams import GeneratorStream
from aioray._engine.tasks import _raise_in_thread, fail_outputs, loop_ended_error
from aioray._exec.invoke import (
    DEFAULT_GROUP,
    ActorExit,
    AppError,
    Body,
    actor_method,
    app_error,
    run_async,
    run_sync,
)
from aioray._exec.lanes import Interrupted, Lanes
from aioray._handles.actor import ActorClass, MethodMeta
from aioray._handles.args import unpack_args
from aioray._handles.options import resource_request
from aioray._handles.ref import ObjectRef
from aioray._objects.ids import new_task_id
from aioray._objects.serialization import ErrorValue
from aioray._objects.store import PENDING, ObjectEntry
from aioray.exceptions import (
    ActorDiedError,
    ActorUnschedulableError,
    TaskCancelledError,
    WorkerCrashedError,
)

if TYPE_CHECKING:
    from aioray._engine.actors import ActorManager, ActorToken
    from aioray._engine.scheduling.resources import Grant

_log = logging.getLogger("aioray")


class ActorCall:
    __slots__ = ("actor_id", "args_payload", "atask", "attempt", "cancelled", "created", "deps",
                 "group", "in_thread", "meta", "nret", "opts", "returns", "sink", "started",
                 "state", "submitter", "task_id", "thread_ident")

    def __init__(self, task_id: bytes, meta: MethodMeta, payload: Any,
                 deps: list[ObjectRef[Any]], opts: dict[str, Any]) -> None:
        self.task_id = task_id
        self.actor_id = b""
        self.meta = meta
        self.args_payload = payload
        self.deps = deps
        self.opts = opts
        self.nret: Any = opts.get("num_returns", 1)
        self.returns: list[ObjectEntry] = []
        self.sink: Any = None
        self.group = opts.get("concurrency_group") or DEFAULT_GROUP
        self.atask: asyncio.Task[None] | None = None
        self.thread_ident: int | None = None
        self.in_thread = False  # handed to an actor thread: asyncio cannot stop it any more
        self.cancelled = False
        self.attempt = 0
        self.state = CallState.QUEUED
        self.submitter: Any = None  # who made the call; calls keep their order per submitter
        self.created = time.time()  # for the state API
        self.started: float | None = None

    def fail(self, error: BaseException) -> None:
        fail_outputs(self.sink, self.returns, error)


class Group:
    """One concurrency group: a FIFO of calls and a limit on how many run at once."""

    def __init__(self, name: str, limit: int, threaded: bool) -> None:
        self.name = name
        self.limit = limit
        self.queue: deque[ActorCall] = deque()
        self.running: set[ActorCall] = set()
        self.lanes = Lanes(name, limit) if threaded else None
        # queued calls waiting for their ref arguments (their submitter's later calls wait too)
        self.waiting: dict[ActorCall, asyncio.Task[None]] = {}


class ActorState:
    """One live (or dead) actor, on the driver."""

    def __init__(self, manager: ActorManager, actor_id: bytes, ac: ActorClass[Any],
                 args: Any, deps: list[ObjectRef[Any]], opts: dict[str, Any]) -> None:
        self.manager = manager
        self.rt = manager.rt
        self.actor_id = actor_id
        self.ac = ac
        self.args_payload = args
        self.deps = deps
        self.opts = opts
        self.name: str | None = opts.get("name")
        self.namespace: str = opts.get("namespace") or self.rt.namespace
        self.detached = opts.get("lifetime") == "detached"
        self.instance: Any = None
        self.status = ActorStatus.PENDING
        self.death_cause: BaseException | None = None
        self.restarts = 0
        self.max_restarts = opts.get("max_restarts") or 0
        self.max_task_retries = opts.get("max_task_retries") or 0
        self.grant: Grant | None = None
        self.token_ref: weakref.ref[ActorToken] | None = None
        self.is_async = ac._is_async
        self.placement = placement_of(self.is_async, opts.get("executor"), self.rt.local_mode)
        self.host: ActorProcess | None = None  # Placement.PROCESS: the current incarnation
        default_limit = opts.get("max_concurrency") or (1000 if self.is_async else 1)
        threaded = self.placement is Placement.THREADS
        self.groups: dict[str, Group] = {DEFAULT_GROUP: Group(DEFAULT_GROUP, default_limit,
                                                                threaded)}
        for g, lim in (opts.get("concurrency_groups") or {}).items():
            self.groups[g] = Group(g, lim, threaded)
        self.ready = self.rt.loop.create_future()
        self.terminate_when_idle = False
        self.exiting = False  # set by a thread whose call ran exit_actor()
        self.shutdown_hook = False  # a graceful end: call __ray_shutdown__ on release
        self.ended_itself = False  # exit_actor(): its process exits on its own (atexit runs)

    # -- lifecycle (loop thread) --------------------------------------------------------
    async def create(self) -> None:
        current_task.set(None)  # not the calling task's context
        try:
            if self.deps:
                await self.rt.wait_entries([d._entry for d in self.deps])
                for d in self.deps:
                    if type(d._entry.value) is ErrorValue:
                        raise d._entry.value.error
            req = resource_request(self.opts, 0.0)
            pool = self.rt.pool_for(self.opts)  # raises for a removed placement group, ...
            if req:
                if not pool.feasible(req):
                    raise ActorUnschedulableError(
                        f"Actor {self.ac.__name__} can never be created: "
                        f"{pool.describe_infeasible(req)}.")
                self.grant = await pool.acquire(req)
            await self._construct()
        except asyncio.CancelledError:
            self._die(ActorDiedError("The actor was killed before it was created.",
                                     actor_id=self.actor_id.hex()))
        except ActorExit:
            self.ended_itself = True
            self._die(ActorDiedError("The actor exited on purpose: exit_actor() was called in "
                                     "__init__ (worker exit type: INTENDED_USER_EXIT).",
                                     actor_id=self.actor_id.hex()))
        except WorkerCrashedError as e:  # its process died in __init__: restartable, as Ray
            self._creation_crashed(e)
        except BaseException as e:
            cause = e.error if isinstance(e, AppError) else e
            self._die(ActorDiedError(
                f"The actor {self.ac.__name__} died because of an error raised in its creation "
                f"task: {cause}", cause=cause, actor_id=self.actor_id.hex()))

    def class_blob(self) -> bytes:
        """The actor class, pickled once per class (sent to each incarnation's process)."""
        return self.manager.class_blob(self.ac)

    async def _construct(self) -> None:
        if self.placement is Placement.PROCESS:
            host = self.host = ActorProcess(self)
            await host.start([d._entry.value for d in self.deps], new_task_id())
            if self.host is not host or self.status is ActorStatus.DEAD:
                host.kill()  # killed meanwhile
                return
            self._alive(None)
            return
        args, kwargs = unpack_args(self.args_payload, [d._entry.value for d in self.deps])
        cls = self.ac._cls
        token = current_actor.set(self)
        try:
            if self.placement is Placement.LOOP:
                instance = _construct_instance(cls, args, kwargs, self.ac.__name__)
            else:
                # On the actor's own thread, like its methods (thread-locals set up in
                # __init__ stay visible to a max_concurrency=1 actor's methods).
                lanes = self.groups[DEFAULT_GROUP].lanes
                assert lanes is not None
                ctx = contextvars.copy_context()
                done: concurrent.futures.Future[Any] = concurrent.futures.Future()

                def job() -> None:
                    if not done.set_running_or_notify_cancel():
                        return  # killed while waiting
                    try:
                        done.set_result(ctx.run(_construct_instance, cls, args, kwargs,
                                                self.ac.__name__))
                    except BaseException as e:
                        done.set_exception(e)
                lanes.submit(job)
                instance = await asyncio.wrap_future(done)
        finally:
            current_actor.reset(token)
        if self.status is ActorStatus.DEAD:
            return
        self._alive(instance)

    def _alive(self, instance: Any) -> None:
        self.instance = instance
        self.status = ActorStatus.ALIVE
        if not self.ready.done():
            self.ready.set_result(None)
        for g in self.groups.values():
            self._pump(g)
        self._exit_if_unused()

    def can_restart(self) -> bool:
        return self.max_restarts == -1 or self.restarts < self.max_restarts

    def _idle(self) -> bool:
        return all(not g.queue and not g.running for g in self.groups.values())

    def _exit_if_unused(self) -> None:
        """No handle is left (and not named/detached): go once the queued calls are done."""
        if self.terminate_when_idle and self.status is ActorStatus.ALIVE and self._idle():
            self.shutdown_hook = True
            self._die(ActorDiedError(
                f"The actor {self.ac.__name__} went out of scope: every handle to it was "
                "dropped.", actor_id=self.actor_id.hex()))

    def _die(self, cause: BaseException, restart: bool = False, graceful: bool = False) -> None:
        """End the actor (or restart it). ``graceful`` (exit_actor, __ray_terminate__): calls
        already running finish; otherwise (kill) they are interrupted and fail with ``cause``.
        Queued calls fail with ``cause`` either way."""
        if self.status is ActorStatus.DEAD:
            return
        if restart and self.can_restart():
            self._restart(cause)
            return
        self.status = ActorStatus.DEAD
        self.death_cause = cause
        if not self.ready.done():
            self.ready.set_result(None)
        running = False
        for g in self.groups.values():
            for call in list(g.running):
                # a call handed to a thread but not started yet counts as queued
                if not graceful or call.state is CallState.DISPATCHED:
                    self._abort_running(call, cause)
            running = running or any(c.state is not CallState.DISPATCHED for c in g.running)
            while g.queue:
                call = g.queue.popleft()
                self.manager.done(call)
                call.fail(cause)
            self._stop_waiting(g)
            if g.lanes is not None:
                g.lanes.close()
        self.manager._forget(self)  # the name is free from now on
        if not (graceful and running):
            self._release()
        # else: the last running call releases the resources (see _run)

    def _holds(self) -> bool:
        """An instance (or its process) is still there to release."""
        return self.instance is not None or self.host is not None

    def _release(self) -> None:
        instance, self.instance = self.instance, None
        host, self.host = self.host, None
        hook = self.shutdown_hook and self.status is ActorStatus.DEAD
        self.shutdown_hook = False  # exactly once
        if host is not None:
            if hook or self.ended_itself:
                host.stop(shutdown_hook=hook)  # __ray_shutdown__ in the process, then exit
            else:
                host.kill()
        elif instance is not None and hook:
            _call_shutdown_hook(self, instance)
        if self.grant is not None:
            self.grant.release()
            self.grant = None

    def _abort_running(self, call: ActorCall, cause: BaseException) -> None:
        call.cancelled = True
        call.fail(cause)
        self._interrupt(call)

    @staticmethod
    def _interrupt(call: ActorCall) -> None:
        """Stop a running call's code: cancel its coroutine, or raise in its thread (which
        takes effect when the thread next runs Python code)."""
        if not call.in_thread:
            if call.atask is not None:
                call.atask.cancel()
        elif call.thread_ident is not None:
            _raise_in_thread(call.thread_ident, Interrupted)

    def _restart(self, cause: BaseException) -> None:
        self.restarts += 1
        self.status = ActorStatus.RESTARTING
        self.instance = None
        sent: list[ActorCall] | None = None
        if self.host is not None:  # the old process goes; calls go to a fresh one
            sent = self.host.in_flight()
            self.host.kill()
            self.host = None
        for g in self.groups.values():
            again: list[ActorCall] = []  # back to the queue's front, in submission order
            for call in (list(g.running) if sent is None
                         else [c for c in sent if c in g.running]):
                g.running.discard(call)
                if sent is not None and call.state is CallState.DISPATCHED:
                    # Sent to the old process but not started there: not a retry.
                    call.state = CallState.QUEUED
                    call.in_thread = False
                    again.append(call)
                elif self._retries_left(call):
                    # Retry on the new instance, ahead of the calls queued behind it. The old
                    # execution is stopped and, being stale (attempt changed), resolves nothing.
                    call.attempt += 1
                    call.state = CallState.QUEUED
                    call.in_thread = False
                    again.append(call)
                    self._interrupt_stale(call)
                else:
                    self._abort_running(call, ActorDiedError(
                        f"The actor restarted while this call was running: {cause}",
                        cause=cause, actor_id=self.actor_id.hex()))
            g.queue.extendleft(reversed(again))
            self._stop_waiting(g)
            if g.lanes is not None:  # fresh threads; the old ones skip their stale jobs
                g.lanes.close()
                g.lanes = Lanes(g.name, g.limit)
        self.create_task = self.rt.loop.create_task(self._reconstruct())

    def _interrupt_stale(self, call: ActorCall) -> None:
        if call.thread_ident is not None:
            _raise_in_thread(call.thread_ident, Interrupted)
        elif call.atask is not None:
            call.atask.cancel()

    def process_died(self, cause: ActorDiedError) -> None:
        """The actor's process ended on its own (exit, signal, OOM kill): Ray's actor death,
        then a restart if ``max_restarts`` allows."""
        if self.status is ActorStatus.ALIVE:
            self._die(cause, restart=True)

    def _creation_crashed(self, crash: WorkerCrashedError) -> None:
        self._die(ActorDiedError(
            f"The actor {self.ac.__name__} died: its worker process ended unexpectedly while "
            f"running __init__: {crash}", cause=crash, actor_id=self.actor_id.hex()),
            restart=True)

    async def _reconstruct(self) -> None:
        current_task.set(None)
        try:
            await self._construct()
        except WorkerCrashedError as e:
            self._creation_crashed(e)
        except asyncio.CancelledError:
            self._die(ActorDiedError("The actor was killed while restarting.",
                                     actor_id=self.actor_id.hex()))
        except BaseException as e:
            cause = e.error if isinstance(e, AppError) else e
            self._die(ActorDiedError(f"The actor failed to restart: {cause}", cause=cause,
                                     actor_id=self.actor_id.hex()))

    # -- calls (loop thread) ------------------------------------------------------------
    def submit(self, call: ActorCall) -> None:
        if self.status is ActorStatus.DEAD:
            self.manager.done(call)
            call.fail(self._dead_error())
            return
        group = self.groups.get(call.group)
        if group is None:
            self.manager.done(call)
            call.fail(ValueError(
                f"Concurrency group {call.group!r} is not declared on actor "
                f"{self.ac.__name__}; declared: {sorted(g for g in self.groups if g != DEFAULT_GROUP)}."))
            return
        group.queue.append(call)
        if self.status is ActorStatus.ALIVE:
            self._pump(group)

    def _dead_error(self) -> ActorDiedError:
        cause = self.death_cause
        if isinstance(cause, ActorDiedError):
            return cause
        return ActorDiedError(f"The actor {self.ac.__name__} is dead: {cause}", cause=cause,
                              actor_id=self.actor_id.hex())

    def _pump(self, group: Group) -> None:
        """Start the queued calls that may start. Calls run in submission order per submitter
        (the driver, a task, an actor, a worker process): a call whose ref arguments are not
        ready holds back its submitter's later calls, while other submitters' calls pass (as
        in Ray). Async actors take at most ``limit`` calls at once; sync actors hand every
        startable call to the group's threads, which bound the concurrency themselves."""
        if self.status is not ActorStatus.ALIVE:
            return
        lanes = group.lanes
        host = self.host
        q = group.queue
        blocked: set[Any] | None = None
        i = 0
        bounded = lanes is None and host is None  # else the threads or the process bound it
        while i < len(q):
            if bounded and len(group.running) >= group.limit:
                return
            call = q[i]
            if call.cancelled:
                del q[i]
                self.manager.done(call)
                continue
            if blocked is not None and call.submitter in blocked:
                i += 1
                continue
            if call.meta.name == "__ray_terminate__":
                if i or group.running:
                    return  # after every call submitted before it
                q.popleft()
                self._exit(call, "__ray_terminate__ was called")
                self.manager.done(call)
                return
            dep_values: list[Any] = []
            if call.deps:
                entries = [d._entry for d in call.deps]
                if any(e.value is PENDING for e in entries):
                    if blocked is None:
                        blocked = set()
                    blocked.add(call.submitter)
                    if call not in group.waiting:
                        group.waiting[call] = self.rt.loop.create_task(
                            self._await_args(group, call, entries))
                    i += 1
                    continue
                dep_values = [e.value for e in entries]
                bad = next((v for v in dep_values if type(v) is ErrorValue), None)
                if bad is not None:
                    del q[i]
                    call.fail(bad.error)
                    self.manager.done(call)
                    continue
            if i:
                del q[i]
            else:
                q.popleft()
            group.running.add(call)
            call.started = time.time()
            if host is not None:
                call.state = CallState.DISPATCHED
                call.in_thread = True
                host.dispatch(call, group, dep_values)
            elif lanes is not None:
                call.state = CallState.DISPATCHED
                call.in_thread = True
                lanes.submit(functools.partial(self._run_in_thread, call, call.attempt, group,
                                               dep_values))
            else:
                call.state = CallState.RUNNING
                call.atask = self.rt.loop.create_task(self._run(call, group, dep_values))

    async def _await_args(self, group: Group, call: ActorCall,
                          entries: list[ObjectEntry]) -> None:
        current_task.set(None)
        try:
            await self.rt.wait_entries(entries)
        except asyncio.CancelledError:
            return  # the actor died or restarted, or the call was cancelled
        group.waiting.pop(call, None)
        self._pump(group)

    def _stop_waiting(self, group: Group) -> None:
        for task in group.waiting.values():
            task.cancel()
        group.waiting.clear()

    def _run_in_thread(self, call: ActorCall, attempt: int, group: Group,
                       dep_values: list[Any]) -> None:
        """On one of the group's threads: run the call, post the outcome to the loop."""
        if call.cancelled or call.attempt != attempt or self.exiting or self.status is ActorStatus.DEAD:
            self.rt.call_soon(self._thread_done, call, attempt, group, "skip", None)
            return
        call.state = CallState.STARTED
        call.thread_ident = threading.get_ident()
        actor_token = current_actor.set(self)
        call_token = current_call.set(call)
        kind: str
        value: Any = None
        try:
            value = self._body(call, dep_values)
            kind = "ok"
        except ActorExit:
            kind = "exit"
            self.exiting = True  # no call starts on any thread after this one
        except AppError as e:
            kind, value = "error", e.error
        except Interrupted:
            kind = "interrupted"
        except BaseException as e:
            kind, value = "error", e if isinstance(e, Exception) else RuntimeError(repr(e))
        finally:
            call.thread_ident = None
            current_call.reset(call_token)
            current_actor.reset(actor_token)
        self.rt.call_soon(self._thread_done, call, attempt, group, kind, value)

    def _body(self, call: ActorCall, dep_values: list[Any]) -> list[Any] | None:
        """A sync method's code and the serialization of its results (in a thread)."""
        sink = call.sink
        if sink is None:  # the common case: no per-call hooks to build
            return run_sync(self._what(call, dep_values), passthrough=_THREAD_PASSTHROUGH)
        post = self.rt.call_soon  # the same FIFO as the call's outcome: items first
        push = sink.pusher()  # a retry after a restart skips items already sent
        return run_sync(self._what(call, dep_values), functools.partial(post, push),
                        pause=_pause_thread(sink),
                        stop=lambda _items: call.cancelled,  # ends at the next yield
                        passthrough=_THREAD_PASSTHROUGH)

    def _method_of(self, call: ActorCall, name: str) -> Callable[..., Any]:
        """The bound method a call runs (``name``, for errors: "Class.method")."""
        try:
            return actor_method(self.instance, call.meta.name)
        except AttributeError as e:
            raise AppError(app_error(name, e), e) from None

    def _what(self, call: ActorCall, dep_values: list[Any]) -> Body:
        name = f"{self.ac.__name__}.{call.meta.name}"
        return Body(self._method_of(call, name), call.args_payload, dep_values, name,
                    call.nret, self.rt.driver_pid)

    def _thread_done(self, call: ActorCall, attempt: int, group: Group, kind: str,
                     value: Any) -> None:
        """Loop thread: the outcome of a call that ran (or was skipped) on a thread."""
        current = call.attempt == attempt  # else re-queued by a restart: not ours any more
        if kind == "exit" and current:
            group.running.discard(call)
            self._exit(call, "exit_actor() was called")
        elif current and not call.cancelled:
            if kind == "ok":
                if call.sink is not None:
                    call.sink.finish(None)
                elif value is not None:
                    for ret, v in zip(call.returns, value, strict=True):
                        ret.resolve(v)
            elif kind == "error":
                if self._retry_on_error(call, group, value):
                    current = False  # back in the queue: still in flight
                    self._pump(group)
                else:
                    call.fail(value)
            elif kind == "interrupted":
                call.fail(TaskCancelledError(call.task_id.hex()))
            elif kind == "skip":  # the actor ended before the call could start
                call.fail(self._dead_error())
        if current:
            group.running.discard(call)
            self.manager.done(call)
        if self.status is ActorStatus.ALIVE:
            if current:
                self._pump(group)
            self._exit_if_unused()
        elif self.status is ActorStatus.DEAD and self._holds() and self._idle():
            self._release()  # the last call running at a graceful exit is done

    def _retries_left(self, call: ActorCall) -> bool:
        limit = call.opts.get("max_task_retries")  # @method / .options() over the actor's
        limit = self.max_task_retries if limit is None else limit
        return bool(limit == -1 or call.attempt < limit)

    def _retry_on_error(self, call: ActorCall, group: Group, error: BaseException) -> bool:
        """``retry_exceptions`` (on the method or the call): run a call that raised again,
        up to ``max_task_retries`` times, from the front of the queue (calls already handed
        to threads may run first: Ray guarantees no order once retries happen)."""
        wanted = call.opts.get("retry_exceptions")
        if not wanted or call.sink is not None or call.cancelled or self.status is not ActorStatus.ALIVE:
            return False  # generator methods are not retried: their items are out already
        if isinstance(wanted, (list, tuple)) and not isinstance(error, tuple(wanted)):
            return False
        if not self._retries_left(call):
            return False
        group.running.discard(call)
        call.attempt += 1
        call.state = CallState.QUEUED
        call.in_thread = False
        group.queue.appendleft(call)
        return True

    def _exit(self, call: ActorCall, why: str) -> None:
        """exit_actor() / __ray_terminate__: the caller sees the actor's death."""
        call.fail(ActorDiedError(f"The actor exited on purpose: {why} (worker exit type: "
                                 "INTENDED_USER_EXIT).",
                                 actor_id=self.actor_id.hex()))
        if self.host is not None:
            self.host.in_flight()  # which calls may be running there: those finish (as Ray)
        self.ended_itself = True
        self.shutdown_hook = self.status is ActorStatus.ALIVE
        self._die(ActorDiedError(f"The actor {self.ac.__name__} exited on purpose: {why} "
                                 "(worker exit type: INTENDED_USER_EXIT).",
                                 actor_id=self.actor_id.hex()), graceful=True)

    async def _run(self, call: ActorCall, group: Group, dep_values: list[Any]) -> None:
        """An async actor's call (its arguments are ready: see _pump)."""
        current_task.set(None)  # this asyncio task may have inherited a calling task's context
        attempt = call.attempt  # a restart bumps it: this execution is then stale
        try:
            await self._invoke(call, group, dep_values, attempt)
        except (asyncio.CancelledError, Interrupted):
            if call.attempt == attempt:
                call.fail(TaskCancelledError(call.task_id.hex()) if call.cancelled
                          or self.status is not ActorStatus.ALIVE else loop_ended_error())
        except ActorExit:
            self._exit(call, "exit_actor() was called")
        except AppError as e:
            if call.attempt == attempt and not self._retry_on_error(call, group, e.error):
                call.fail(e.error)
        except BaseException as e:
            if call.attempt == attempt:
                call.fail(e if isinstance(e, Exception) else RuntimeError(repr(e)))
        finally:
            if call.attempt == attempt:  # else re-queued by a restart: not ours any more
                group.running.discard(call)
                self.manager.done(call)
            if self.status is ActorStatus.ALIVE:
                self._pump(group)
                self._exit_if_unused()
            elif self.status is ActorStatus.DEAD and self._holds() and self._idle():
                self._release()  # the last call running at a graceful exit is done

    async def _invoke(self, call: ActorCall, group: Group, dep_values: list[Any],
                      attempt: int) -> None:
        meta = call.meta
        sink = call.sink
        stream = sink if isinstance(sink, GeneratorStream) else None
        token = current_actor.set(self)
        call_token = current_call.set(call)
        try:
            if meta.is_async or (self.is_async and not meta.is_generator):
                name = f"{self.ac.__name__}.{meta.name}"
                values = await run_async(
                    self._method_of(call, name), call.args_payload, dep_values, name,
                    call.nret, self.rt.driver_pid,
                    sink.pusher() if meta.is_generator and sink is not None else None,
                    pause=stream.wait_capacity if stream is not None and stream.backpressure
                    else None, passthrough=_ASYNC_PASSTHROUGH)
            else:
                values = await self._invoke_in_thread(call, self._what(call, dep_values))
        finally:
            current_call.reset(call_token)
            current_actor.reset(token)
        if call.cancelled or call.attempt != attempt:
            return  # cancelled, or stale after a restart: someone else resolves the call
        if sink is not None:
            sink.finish(None)
        elif values is not None:
            for ret, v in zip(call.returns, values, strict=True):
                ret.resolve(v)

    async def _invoke_in_thread(self, call: ActorCall, what: Body) -> list[Any] | None:
        """A sync generator method of an async actor: on a spare thread."""
        loop = self.rt.loop
        sink = call.sink
        emit = pause = None
        if sink is not None:
            push = sink.pusher()  # a retry skips items already sent
            emit = functools.partial(loop.call_soon_threadsafe, push)
            pause = _pause_thread(sink)
        executor = self.manager.spare_threads

        def body() -> list[Any] | None:
            call.thread_ident = threading.get_ident()
            try:
                return run_sync(what, emit, pause=pause, stop=lambda _items: call.cancelled,
                                passthrough=(ActorExit,))
            finally:
                call.thread_ident = None

        ctx = contextvars.copy_context()
        call.in_thread = True
        fut = loop.run_in_executor(executor, ctx.run, body)
        # A sync call cannot be interrupted by asyncio cancellation; wait for the thread.
        return await asyncio.shield(fut)


# What an async method's body lets through untouched: asyncio's cancel and exit_actor().
_ASYNC_PASSTHROUGH: tuple[type[BaseException], ...] = (asyncio.CancelledError, ActorExit)
# What a sync actor method's body lets through untouched: exit_actor() and kill/restart.
_THREAD_PASSTHROUGH: tuple[type[BaseException], ...] = (ActorExit, Interrupted)


def _pause_thread(sink: Any) -> Callable[[Any, int], None] | None:
    """Backpressure for a generator method running on a thread."""
    if not isinstance(sink, GeneratorStream) or not sink.backpressure:
        return None
    return lambda _items, produced: sink.wait_capacity_blocking(produced)


def _call_shutdown_hook(state: ActorState, instance: Any) -> None:
    """``__ray_shutdown__()`` on a graceful end (out of scope, ``__ray_terminate__``,
    ``exit_actor()``, ``shutdown()``; never on ``kill``), as Ray 2.60: after the last call,
    once; its errors are logged. It runs on the loop thread, so it should be quick."""
    hook = getattr(instance, "__ray_shutdown__", None)
    if hook is None:
        return
    token = current_actor.set(state)
    try:
        result = hook()
        if inspect.isawaitable(result):  # Ray wants a sync method; an async one still runs
            state.rt.loop.create_task(_await_hook(result, state.ac.__name__))
    except BaseException:
        _log.exception("aioray: %s.__ray_shutdown__() raised", state.ac.__name__)
    finally:
        current_actor.reset(token)


async def _await_hook(result: Any, name: str) -> None:
    try:
        await result
    except BaseException:
        _log.exception("aioray: %s.__ray_shutdown__() raised", name)


def _construct_instance(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any],
                        name: str) -> Any:
    try:
        return cls(*args, **kwargs)
    except ActorExit:
        raise
    except Exception as e:
        raise AppError(app_error(f"{name}.__init__", e)) from None
