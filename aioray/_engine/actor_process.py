"""An actor hosted in its own worker process, seen from the driver's loop.

The loop keeps the actor's queues, ordering, concurrency groups, restarts and backpressure
(``actor_state.ActorState``); this object only moves what the state decides across the process
boundary: the creation, each ready call (``ActorRun``), cancels, the end (``ActorStop`` or a
kill). Outcomes come back as task messages and go to the same place a thread's outcome goes
(``ActorState._thread_done``), so there is one place that settles calls. When the process
dies, the state learns how (exit code or signal) and decides: death or restart.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple

from aioray._engine.states import CallState
from aioray._engine.streams import GeneratorStream
from aioray._engine.tasks import return_count
from aioray._engine.worker_pool import WorkerHandle, adopt_segments
from aioray._exec.invoke import ActorExit, AppError
from aioray._handles.options import merge_runtime_env, resource_request
from aioray._wire.messages import (
    ActorRun,
    ActorStart,
    ActorStop,
    Cancel,
    Credit,
    Done,
    Exited,
    Failed,
    Yield,
)
from aioray.exceptions import ActorDiedError, WorkerCrashedError

if TYPE_CHECKING:
    from aioray._engine.actor_state import ActorCall, ActorState, Group


class _Run(NamedTuple):
    call: ActorCall
    attempt: int
    group: Group
    push: Any  # the stream's pusher for a generator method, else None


class ActorProcess:
    """One actor's worker process (one per incarnation: a restart starts a new one)."""

    def __init__(self, state: ActorState) -> None:
        self.state = state
        self.worker: WorkerHandle | None = None
        self.runs: dict[bytes, _Run] = {}
        self.closed = False  # ended by us: its exit is expected, not a crash
        self.stopping = False  # asked to end gracefully: answers still count
        self.creation: asyncio.Future[Any] = state.rt.loop.create_future()
        self.creation_id = b""

    async def start(self, dep_values: list[Any], creation_id: bytes) -> None:
        """Start the process and build the instance in it. Raises what ``__init__`` raised
        (``AppError``), ``ActorExit``, or ``WorkerCrashedError`` if the process died."""
        state = self.state
        rt = state.rt
        w = await rt.workers.take()
        if self.closed:  # killed while we waited for a worker
            rt.workers.retire(w)
            raise asyncio.CancelledError()
        self.worker = w
        w.host = self
        self.creation_id = creation_id
        grant = state.grant
        w.send(ActorStart(
            creation_id, state.actor_id, state.class_blob(), state.args_payload, dep_values,
            state.ac.__name__, state.name, state.namespace, state.restarts, state.is_async,
            {g.name: g.limit for g in state.groups.values()},
            list(grant.gpu_ids) if grant is not None and grant.gpu_ids else None,
            resource_request(state.opts, 0.0),
            merge_runtime_env(rt.runtime_env, state.opts.get("runtime_env"))),
            carrying=[state.args_payload, *dep_values])
        if w.dead:
            self.lost()
        outcome = await self.creation
        if type(outcome) is Failed:
            raise AppError(outcome.error.as_instanceof_cause())
        if type(outcome) is Exited:
            raise ActorExit()

    # -- calls ----------------------------------------------------------------------------
    def dispatch(self, call: ActorCall, group: Group, dep_values: list[Any]) -> None:
        """Send a ready call; its outcome comes back to ``state._thread_done``."""
        w = self.worker
        assert w is not None
        sink = call.sink
        push = None
        backpressure = 0
        if sink is not None:
            push = sink.pusher()  # a retry after a restart skips items already sent
            if isinstance(sink, GeneratorStream) and sink.backpressure:
                backpressure = sink.backpressure
                task_id = call.task_id
                sink.on_consumed = lambda n: w.send(Credit(task_id, n))
        self.runs[call.task_id] = _Run(call, call.attempt, group, push)
        w.send(ActorRun(call.task_id, call.meta.name, call.args_payload, dep_values,
                        return_count(call.nret),
                        group.name, sink is not None, backpressure),
               carrying=[call.args_payload, *dep_values])

    def in_flight(self) -> list[ActorCall]:
        """The calls sent and not answered, in the order sent; those that may have started
        marked STARTED. A group runs its calls in order on at most ``limit`` threads, and a
        call's answer leaves before the next starts on its thread, so the started ones are
        the first ``limit`` unanswered calls of each group; the rest never started."""
        taken: dict[str, int] = {}
        out = []
        for run in self.runs.values():
            call = run.call
            n = taken.get(run.group.name, 0)
            if n < run.group.limit:
                call.state = CallState.STARTED
                taken[run.group.name] = n + 1
            out.append(call)
        return out

    def cancel(self, task_id: bytes) -> None:
        w = self.worker
        if w is not None and task_id in self.runs:
            w.send(Cancel(task_id))

    def on_message(self, msg: Any) -> None:
        if self.closed and not self.stopping:
            return  # killed: whatever it still said is stale (its calls were settled)
        tp = type(msg)
        task_id = msg.task_id
        if tp is Yield:
            adopt_segments(msg.stored)
            run = self.runs.get(task_id)
            if run is not None and run.push is not None:
                run.push(msg.stored)
            return
        if tp is Done:
            stored = msg.stored
            for s in stored if isinstance(stored, list) else (stored,):
                adopt_segments(s)
        if task_id == self.creation_id:
            if not self.creation.done():
                self.creation.set_result(msg)
            return
        run = self.runs.pop(task_id, None)
        if run is None:
            return
        if isinstance(run.call.sink, GeneratorStream):
            run.call.sink.on_consumed = None
        if tp is Done:
            kind, value = ("skip", None) if msg.stored is None else ("ok", msg.stored)
        elif tp is Failed:
            kind, value = "error", msg.error.as_instanceof_cause()
        else:
            kind, value = "exit", None
        self.state._thread_done(run.call, run.attempt, run.group, kind, value)

    # -- the end ----------------------------------------------------------------------------
    def stop(self, shutdown_hook: bool) -> None:
        """The actor ended gracefully (no call runs): ``__ray_shutdown__`` if asked, then the
        process exits by itself."""
        self.closed = True
        self.stopping = True
        w = self.worker
        if w is not None and not w.dead:
            w.send(ActorStop(shutdown_hook))

    def kill(self) -> None:
        """End the process now (kill, restart, or an end while calls still run)."""
        self.closed = True
        if not self.creation.done():
            self.creation.cancel()
        w = self.worker
        if w is not None and not w.dead:
            w.kill()

    def lost(self) -> None:
        """The process died (the pool saw its socket close)."""
        if self.closed:
            return
        self.closed = True
        self.state.rt.loop.create_task(self._report())

    async def _report(self) -> None:
        w = self.worker
        how = await w.exit_status() if w is not None else "it never started"
        state = self.state
        crash = WorkerCrashedError(
            f"The worker process (pid={w.pid if w else '?'}) of actor {state.ac.__name__} "
            f"died ({how}).", exit_code=w.exit_code if w is not None else None)
        if not self.creation.done():
            self.creation.set_exception(crash)
            return
        if state.host is not self:
            return  # an old incarnation
        state.process_died(ActorDiedError(
            f"The actor {state.ac.__name__} died: its worker process (pid="
            f"{w.pid if w else '?'}) ended unexpectedly ({how}).", cause=crash,
            actor_id=state.actor_id.hex()))
