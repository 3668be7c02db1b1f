"""The driver side of the back-channel: what task code in a worker process asks of the runtime.

Two kinds of message arrive from a worker: ``req`` (the worker blocks until our ``reply``) and
``call`` (fire and forget — ``.remote()`` and ``put`` return at once with ids the worker made up,
and the socket's ordering guarantees a later ``get`` of those ids arrives after them).
Other modules (actors, queues, placement groups) add request handlers with :meth:`handle`.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aioray._engine.scheduling.resources import lending_cpu
from aioray._engine.state import timeline_events
from aioray._engine.streams import GeneratorStream, ready_now
from aioray._engine.worker_pool import adopt_segments
from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.ref import ObjectRef
from aioray._objects.ids import object_id
from aioray._objects.serialization import ErrorValue, picklable_exception
from aioray._objects.store import PENDING, STORE, ObjectEntry
from aioray._wire.messages import Reply
from aioray.exceptions import GetTimeoutError, ObjectFreedError

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime
    from aioray._engine.worker_pool import WorkerHandle

Handler = Callable[..., Awaitable[Any]]


def entry_for(id: bytes) -> ObjectEntry:
    entry = STORE.lookup(id)
    if entry is None:
        entry = ObjectEntry(id, ErrorValue(ObjectFreedError(
            id.hex(), f"Object {id.hex()} was freed before a worker asked for it.")))
    return entry


def ref_for(id: bytes) -> ObjectRef[Any]:
    return ObjectRef(id, entry_for(id))


class Backchannel:
    """Serves worker processes' requests on the runtime loop."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.generators: dict[bytes, Any] = {}
        self._handlers: dict[str, Handler] = {
            "get": self._get,
            "wait": self._wait,
            "gen_next": self._gen_next,
            "gen_wait": self._gen_wait,
            "gen_finished": self._gen_finished,
            "gen_next_ready": self._gen_next_ready,
            "cluster_resources": self._cluster_resources,
            "available_resources": self._available_resources,
            "metrics_snapshot": self._metrics_snapshot,
            "state_rows": self._state_rows,
            "timeline": self._timeline,
        }
        self._calls: dict[str, Callable[..., None]] = {
            "submit": self._submit,
            "put": self._put,
            "cancel": self._cancel,
            "gen_drop": self._gen_drop,
            "metric": self._metric,
            "progress": self._progress,
            "progress_print": self._progress_print,
        }

    def handle(self, op: str, handler: Handler) -> None:
        """Register ``async handler(worker, *args)`` for ``client.request(op, ...)``."""
        self._handlers[op] = handler

    def handle_call(self, op: str, handler: Callable[..., None]) -> None:
        self._calls[op] = handler

    def close(self) -> None:
        self.generators.clear()

    # -- dispatch -----------------------------------------------------------------------
    def request(self, worker: WorkerHandle, rid: int, op: str, args: tuple[Any, ...]) -> None:
        handler = self._handlers.get(op)
        if handler is None:
            worker.send(Reply(rid, False, RuntimeError(f"unknown request {op!r}")))
            return
        self.rt.loop.create_task(self._serve(worker, rid, handler, args))

    async def _serve(self, worker: WorkerHandle, rid: int, handler: Handler,
                     args: tuple[Any, ...]) -> None:
        try:
            value = await handler(worker, *args)
            ok = True
        except BaseException as e:
            ok, value = False, picklable_exception(e)
        carrying = value if ok and isinstance(value, list) else ()
        worker.send(Reply(rid, ok, value), carrying=carrying)

    def call(self, worker: WorkerHandle, op: str, args: tuple[Any, ...]) -> None:
        handler = self._calls.get(op)
        if handler is None:
            print(f"aioray: unknown worker call {op!r}")
            return
        try:
            handler(worker, *args)
        except Exception:
            traceback.print_exc()

    def _grant_of(self, worker: WorkerHandle) -> Any:
        """What the worker's caller holds: its task's grant, or its actor's."""
        if worker.host is not None:
            return worker.host.state.grant
        spec = self._task_of(worker)
        return spec.grant if spec is not None else None

    def _task_of(self, worker: WorkerHandle) -> Any:
        run = worker.run
        return self.rt.tasks.tasks.get(run.task_id) if run is not None else None

    # -- requests -----------------------------------------------------------------------
    async def _get(self, worker: WorkerHandle, ids: list[bytes], timeout: float | None) -> Any:
        entries = [entry_for(i) for i in ids]
        pending = [e for e in entries if e.value is PENDING]
        if pending and not any(type(e.value) is ErrorValue for e in entries):
            async with lending_cpu(self._grant_of(worker)):
                if not await self.rt.wait_entries(pending, timeout=timeout, fail_fast=True):
                    raise GetTimeoutError(f"Get timed out after {timeout} seconds.")
        if any(e.value is PENDING for e in entries):  # failed fast: the worker raises it
            bad = next(e for e in entries if type(e.value) is ErrorValue)
            bad.retrieved = True
            return [bad.value]
        for e in entries:
            e.retrieved = True
        return [e.value for e in entries]

    async def _wait(self, worker: WorkerHandle, ids: list[bytes], num: int,
                    timeout: float | None) -> list[bytes]:
        entries = [entry_for(i) for i in ids]
        async with lending_cpu(self._grant_of(worker)):
            await self.rt.wait_entries(entries, num, timeout)
        return [e.id for e in entries if e.value is not PENDING]

    async def _gen_next(self, worker: WorkerHandle, task_id: bytes) -> bytes | None:
        gen = self.generators.get(task_id)
        if gen is None:
            return None
        stream = gen._stream
        await stream.wait_ready()
        ref = stream.take()
        if ref is None:
            return None
        return self.lend(worker, ref)

    def lend(self, worker: WorkerHandle, ref: ObjectRef[Any]) -> bytes:
        """Hand ``ref`` to ``worker`` by id (it borrows it): pinned until the worker releases
        it, as if the reply frame carried it."""
        STORE.register(ref._entry)
        worker.borrowed[ref.binary()] = [ref, worker.seq + 1]
        return ref.binary()

    async def _cluster_resources(self, worker: WorkerHandle) -> dict[str, float]:
        return dict(self.rt.total)

    async def _available_resources(self, worker: WorkerHandle) -> dict[str, float]:
        return {k: v for k, v in self.rt.node_pool.available.items() if v > 1e-9}

    async def _gen_finished(self, worker: WorkerHandle, task_id: bytes) -> bool:
        gen = self.generators.get(task_id)
        return True if gen is None else bool(gen.is_finished())  # gone: it can only have ended

    async def _gen_next_ready(self, worker: WorkerHandle, task_id: bytes) -> bool:
        gen = self.generators.get(task_id)
        return False if gen is None else bool(gen.next_ready())  # gone: it can only have ended

    async def _gen_wait(self, worker: WorkerHandle, keys: list[tuple[str, bytes]], num: int,
                        timeout: float | None) -> list[int]:
        """wait() over refs and generators: indices of the ready ones."""
        items: list[Any] = []
        for kind, id in keys:
            gen = self.generators.get(id) if kind == "g" else None
            # A generator we no longer hold can only have ended: its completed() ref is ready.
            items.append(gen if gen is not None else ref_for(
                object_id(id, 0) if kind == "g" else id))
        async with lending_cpu(self._grant_of(worker)):
            await self.rt._wait_items(items, num, timeout)
        return sorted(ready_now(items))

    # -- calls --------------------------------------------------------------------------
    def _submit(self, worker: WorkerHandle, rf: Any, payload: Any, dep_ids: list[bytes],
                opts: dict[str, Any], task_id: bytes, parent: bytes | None) -> None:
        tm = self.rt.tasks
        try:
            spec = tm.make_spec(rf, payload, [ref_for(i) for i in dep_ids], opts, task_id, parent)
        except Exception as e:  # bad options: the refs the worker holds get the error
            entry = ObjectEntry(object_id(task_id, 1), ErrorValue(e))
            STORE.register(entry)
            worker.pin_created(ObjectRef(entry.id, entry))
            return
        for ret in spec.returns:
            STORE.register(ret)
            worker.pin_created(ObjectRef(ret.id, ret))
        if isinstance(spec.sink, GeneratorStream):
            self.generators[task_id] = ObjectRefGenerator(spec.sink)
            done = spec.sink.completed_entry
            STORE.register(done)
            worker.pin_created(ObjectRef(done.id, done))
        tm.start(spec)

    def _put(self, worker: WorkerHandle, id: bytes, stored: Any) -> None:
        adopt_segments(stored)
        entry = ObjectEntry(id, stored)
        STORE.register(entry)
        worker.pin_created(ObjectRef(id, entry))

    def _cancel(self, worker: WorkerHandle, id: bytes, force: bool, recursive: bool) -> None:
        self.rt._cancel_on_loop(id[:24], force, recursive)

    def _progress(self, worker: WorkerHandle, state: Any) -> None:
        self.rt.bars.update(state)

    def _progress_print(self, worker: WorkerHandle, text: str, kwargs: dict[str, Any]) -> None:
        self.rt.bars.print(text, kwargs)

    def _metric(self, worker: WorkerHandle, record: Any) -> None:
        self.rt.metrics.record(record)

    async def _timeline(self, worker: WorkerHandle) -> list[dict[str, Any]]:
        return timeline_events(self.rt.state)

    async def _state_rows(self, worker: WorkerHandle, kind: str) -> list[dict[str, Any]]:
        return self.rt.state.rows(kind)

    async def _metrics_snapshot(self, worker: WorkerHandle) -> list[dict[str, Any]]:
        return self.rt.metrics.snapshot()

    def _gen_drop(self, worker: WorkerHandle, task_id: bytes) -> None:
        self.generators.pop(task_id, None)

