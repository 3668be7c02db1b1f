"""``Queue`` in the engine: the queue actor runs on this runtime's loop, so the driver shares its
``asyncio.Queue`` — loop-thread callers touch it directly, driver threads take one hop to the
loop, worker processes one back-channel request — and only operations that must wait go
through the actor (so ``shutdown`` still fails every waiter)."""

from __future__ import annotations

import asyncio
import pickle
import weakref
from typing import TYPE_CHECKING, Any

from aioray._backend.base import USE_ACTOR, Queues
from aioray._engine.context import current_actor
from aioray._engine.states import ActorStatus
from aioray._engine.worker_pool import adopt_segments
from aioray._handles import queue_ops
from aioray._handles.ref import ObjectRef
from aioray._objects import pickler
from aioray._objects.ids import new_task_id, object_id
from aioray._objects.serialization import IMMUTABLE_TYPES, SerializedObject, deserialize, serialize
from aioray._objects.shm import SharedBuffer
from aioray._objects.store import PENDING, ObjectEntry

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime

USE_ACTOR_WIRE = "use-actor"  # what a worker's request gets back instead of USE_ACTOR


class EmbeddedQueues(Queues):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # qid -> the asyncio.Queue the driver shares with the queue's actor
        self.local: weakref.WeakValueDictionary[str, asyncio.Queue[Any]] = (
            weakref.WeakValueDictionary())
        # qid -> the actor behind it (its ActorState): serve it only while it lives
        self.actors: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._strong: dict[str, asyncio.Queue[Any]] = {}
        rt.backchannel.handle("queue_op", self._serve)

    def open(self, qid: str, maxsize: int) -> bool:
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._strong[qid] = q  # until the actor adopts it
        self.local[qid] = q
        return True

    def actor_started(self, qid: str, maxsize: int) -> asyncio.Queue[Any]:
        q = self._strong.pop(qid, None) or self.local.get(qid)
        if q is None:
            q = asyncio.Queue(maxsize)
            self.local[qid] = q
        state = current_actor.get()
        if state is not None:
            self.actors[qid] = state
        return q

    def _live(self, qid: str) -> asyncio.Queue[Any] | None:
        q = self.local.get(qid)
        state = self.actors.get(qid)
        if q is None or state is None or state.status is not ActorStatus.ALIVE:
            return None  # not created yet, or dead: the actor path gives the right outcome
        return q

    def fast(self, qid: str) -> asyncio.Queue[Any] | None:
        rt = self.rt
        if rt.closed or not rt.in_loop_thread():
            return None
        return self.local.get(qid)

    def direct(self, qid: str, maxsize: int, op: str, arg: Any) -> Any:
        rt = self.rt
        if rt.closed or self.local.get(qid) is None:
            return USE_ACTOR
        if op in ("put", "put_batch"):
            arg = self.copy(arg, f"{op}()")

        async def on_loop() -> Any:
            q = self._live(qid)
            if q is None:
                return USE_ACTOR
            return queue_ops.apply(q, maxsize, op, arg)
        return rt.run_sync(on_loop(), None, f"Queue.{op}()", "await queue.get_async()")

    def copy(self, item: Any, what: str) -> Any:
        if type(item) in IMMUTABLE_TYPES:
            return item
        if isinstance(item, ObjectRef):
            if item._entry.value is PENDING:
                raise RuntimeError(
                    f"Queue.{what} would block the event loop that runs aioray (it has to "
                    f"wait). In async code use `await queue.{what.split('(')[0]}_async(...)`.")
            return deserialize(item._entry.value)
        # In-band pickle round trip: the same copy the actor would hold, without shared memory.
        return pickle.loads(pickler.dumps(item))

    async def _serve(self, worker: Any, qid: str, maxsize: int, op: str, arg: Any) -> Any:
        """A worker's non-waiting operation, applied to the queue directly (loop thread)."""
        q = self._live(qid)
        if q is None:
            return USE_ACTOR_WIRE
        if op in ("put", "put_batch"):
            adopt_segments(arg)
            arg = deserialize(arg)
        got = queue_ops.apply(q, maxsize, op, arg)
        if op in ("get", "get_batch") and type(got) is not queue_ops.Fail:
            stored = serialize(got, self.rt.driver_pid)
            if type(stored) is SerializedObject and any(
                    isinstance(b, SharedBuffer) for b in stored.buffers):
                # Shared memory must outlive the reply until the worker has mapped it: an entry
                # holds it, pinned (like any ref sent to a worker) until the worker lets go.
                entry = ObjectEntry(object_id(new_task_id(), 0), stored)
                worker.borrowed[entry.id] = [ObjectRef(entry.id, entry), worker.seq + 1]
                return [stored, entry.id]
            return [stored]  # a list: the reply pins the refs inside
        return got
