"""Generator tasks in the engine: the stream of refs a running generator feeds, and the sinks.

* :class:`ObjectRefGenerator` (streaming, Ray's default for generator functions; the older
  ``num_returns="streaming"`` is an alias): an async queue of refs. ``next``/``for`` block the
  calling thread, ``async for``/``__anext__`` await. The task runs eagerly to completion whether
  or not anyone reads, unless ``_generator_backpressure_num_objects=N`` pauses the producer while
  N refs are unconsumed.
* ``num_returns=k``: :class:`StaticSink` fills k ordinary refs, each as soon as it is yielded.
* ``num_returns="dynamic"``: :class:`DynamicSink` resolves one ref to a
  :class:`DynamicObjectRefGenerator` when the task ends. Recent Ray deprecates "dynamic" in
  favour of streaming; aioray supports it for old code.

Every executor (loop coroutine, thread, worker process, actor) produces items the same way: it
calls ``push(stored)`` per yield and ``finish(error)`` at the end, on the loop thread.

Rules where Ray leaves a choice:

* **Errors.** An exception raised by the generator becomes the next ref in order (refs yielded
  before it stay valid), then the stream ends. A system failure (worker crash, cancel) ends the
  stream the same way with a ``WorkerCrashedError`` / ``TaskCancelledError`` ref.
* **Retries** (``max_retries``, ``retry_exceptions``, actor ``max_task_retries``): the generator
  re-runs from the start and its first items — as many as earlier attempts already produced —
  are dropped, so a ref handed out is never duplicated or replaced (Ray's rule: items are keyed
  by their index). A non-deterministic generator therefore may mix attempts; use
  ``max_retries=0`` for those, as Ray recommends.
* **return value.** ``return v`` inside a generator task is ignored, as in Ray; aioray warns
  (``RuntimeWarning``) so it does not vanish silently. Yield the value instead.
* **Passing a generator** to a task or actor, ``put``-ing it or pickling it raises TypeError
  (Ray's limitation). Pass the refs it yields, or ``gen.completed()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aioray._engine import tracing
from aioray._exec.invoke import generator_count_error
from aioray._handles.generator import DynamicObjectRefGenerator, ObjectRefGenerator
from aioray._handles.ref import ObjectRef
from aioray._objects.ids import object_id
from aioray._objects.serialization import ErrorValue, deserialize, serialize_always
from aioray._objects.store import PENDING, ObjectEntry

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime

_log = logging.getLogger("aioray")


class Sink:
    """What a generator task feeds: ``push(stored)`` per item, ``finish(error)`` once."""

    produced: int
    _epoch = 0

    def push(self, stored: Any) -> None:
        raise NotImplementedError

    def finish(self, error: BaseException | None = None) -> None:
        raise NotImplementedError

    def pusher(self) -> Callable[[Any], None]:
        """A ``push`` for one run of the task (loop thread, when the run starts).

        A retry re-runs the generator from the start: its first items — as many as earlier runs
        produced — are dropped, so refs already handed out are never duplicated or replaced.
        Once a newer run started, an older one still winding down pushes nothing.
        """
        self._epoch += 1
        epoch, skip, seen = self._epoch, self.produced, 0

        def push(stored: Any) -> None:
            nonlocal seen
            if self._epoch != epoch:
                return
            seen += 1
            if seen > skip:
                self.push(stored)
        trace = tracing.ACTIVE
        if trace is None:
            return push
        task_id = self.trace_id()

        def traced(stored: Any) -> None:  # the timeline's generator items (tracing on)
            push(stored)
            trace.item(task_id)
        return traced

    def trace_id(self) -> bytes:
        """The id of the task this sink belongs to (for tracing)."""
        return b""


class GeneratorStream(Sink):
    """The refs a generator task produced and nobody has taken yet (loop thread writes)."""

    def __init__(self, runtime: Runtime, task_id: bytes, backpressure: int = -1) -> None:
        self.runtime = runtime
        self.task_id = task_id
        self.items: deque[ObjectRef[Any]] = deque()
        self.produced = 0
        self.consumed = 0
        self.done = False
        self.dropped = False
        self.backpressure = backpressure if backpressure and backpressure > 0 else 0
        self._waiters: list[asyncio.Future[None]] = []
        self.completed_entry = ObjectEntry(object_id(task_id, 0))
        # Called with the consumed count when backpressure is on (producer resumes).
        self.on_consumed: Callable[[int], None] | None = None
        self._capacity: asyncio.Future[None] | None = None
        self._thread_cv = threading.Condition()

    # -- producer side (loop thread) ----------------------------------------------------
    def push(self, stored: Any) -> None:
        if self.done:
            return
        self.produced += 1
        if self.dropped:
            self.consumed += 1
            self._notify_consumed()
            return
        entry = ObjectEntry(object_id(self.task_id, self.produced), stored)
        self.items.append(ObjectRef(entry.id, entry))
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        """The task ended; an error becomes one last ref (Ray's ordering rule)."""
        if self.done:
            return
        if error is not None:
            self.push(ErrorValue(error))
        self.done = True
        # The error also went into the stream as a ref: report it unretrieved once, not twice.
        self.completed_entry.retrieved = True
        self.completed_entry.resolve(ErrorValue(error) if error is not None else None)
        self._wake()
        if self._capacity is not None and not self._capacity.done():
            self._capacity.set_result(None)
        with self._thread_cv:
            self._thread_cv.notify_all()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_capacity(self) -> None:
        """In-loop producers pause here while ``backpressure`` refs are unconsumed."""
        while self.backpressure and not self.done and not self.dropped and (
            self.produced - self.consumed >= self.backpressure
        ):
            self._capacity = self.runtime.loop.create_future()
            await self._capacity

    def wait_capacity_blocking(self, produced: int) -> None:
        """Thread producers (sync actors, thread tasks) pause here likewise; ``produced`` is
        their own count (the loop's ``produced`` lags behind the items they posted)."""
        with self._thread_cv:
            while (not self.dropped and not self.done
                   and produced - self.consumed >= self.backpressure):
                self._thread_cv.wait(0.5)

    def _notify_consumed(self) -> None:
        if not self.backpressure:
            return
        if self.on_consumed is not None:
            self.on_consumed(self.consumed)
        if self._capacity is not None and not self._capacity.done():
            self._capacity.set_result(None)
        with self._thread_cv:
            self._thread_cv.notify_all()

    # -- consumer side -------------------------------------------------------------------
    def ready(self) -> bool:
        return bool(self.items) or self.done

    def take(self) -> ObjectRef[Any] | None:
        """The next ref if one is there (any thread); None if none yet or the stream ended."""
        try:
            ref = self.items.popleft()
        except IndexError:
            return None
        self.consumed_one()
        return ref

    def consumed_one(self) -> None:
        if self.backpressure:
            self.runtime.call_soon(self._consumed_on_loop)

    def _consumed_on_loop(self) -> None:
        self.consumed += 1
        self._notify_consumed()

    async def wait_ready(self) -> None:
        """Loop thread: until an item is there or the stream has ended."""
        while not self.items and not self.done:
            fut = self.runtime.loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut.cancelled():  # a wait() timed out: don't pile up waiters
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass

    # -- the Stream interface (what ObjectRefGenerator reads) ---------------------------
    def next_ref(self) -> ObjectRef[Any]:
        while True:
            ref = self.take()
            if ref is not None:
                return ref
            if self.done:
                ref = self.take()  # an item pushed just before done, else the end
                if ref is None:
                    raise StopIteration
                return ref
            self.runtime.run_sync(self.wait_ready(), None, "next(gen)", "await gen.__anext__()")

    async def anext_ref(self) -> ObjectRef[Any]:
        while True:
            ref = self.take()
            if ref is not None:
                return ref
            if self.done:
                ref = self.take()
                if ref is None:
                    raise StopAsyncIteration
                return ref
            await self.runtime.run_async(self.wait_ready())

    def completed(self) -> ObjectRef[None]:
        e = self.completed_entry
        return ObjectRef(e.id, e)

    def is_finished(self) -> bool:
        return self.done and not self.items

    def next_ready(self) -> bool:
        # Ray's rule: False once the stream has ended and every ref was taken (next() would
        # raise StopIteration); items are stored before they are pushed, so any is ready.
        return bool(self.items)

    def task_id_hex(self) -> str:
        return self.task_id.hex()

    def wait_key(self) -> object:
        return self

    def drop(self) -> None:
        """The consumer is gone (from any thread): free untaken refs, let a paused producer
        finish."""
        try:
            self.runtime.call_soon(self._drop_on_loop)
        except Exception:
            pass

    def trace_id(self) -> bytes:
        return self.task_id

    def _drop_on_loop(self) -> None:
        self.dropped = True
        n = len(self.items)
        self.items.clear()
        self.consumed += n
        self._notify_consumed()
        with self._thread_cv:
            self._thread_cv.notify_all()


class StaticSink(Sink):
    """``num_returns=k`` with a generator: k refs, each resolved as soon as it is yielded.

    Fewer than k items (or an error before item k): refs already produced keep their values,
    the rest hold the error. **More** than k items: an error in ref k, which is therefore held
    back until the generator ends — Ray only logs this case (a known Ray bug, ray#28689); we
    raise it. An exception *after* all k values were yielded has no ref left to go to: it is
    logged (as in Ray) and the k values stand.
    """

    def __init__(self, entries: list[ObjectEntry], name: str) -> None:
        self.entries = entries
        self.name = name
        self.produced = 0
        self._last: Any = None
        self._done = False


    def trace_id(self) -> bytes:
        return self.entries[0].id[:24] if self.entries else b""  # an object id: task id + index
    def push(self, stored: Any) -> None:
        if self._done:
            return
        self.produced += 1
        k = len(self.entries)
        if self.produced < k:
            self.entries[self.produced - 1].resolve(stored)
        elif self.produced == k:
            self._last = stored  # held: an extra item would turn it into an error
        else:
            self._last = None

    def finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        k = len(self.entries)
        n = self.produced
        if k == 0:
            return
        if n > k:
            self.entries[-1].resolve(ErrorValue(generator_count_error(self.name, (
                f"Generator task {self.name} yielded more values than num_returns={k}; "
                "yield exactly num_returns values, or use num_returns='streaming'."))))
            return
        if n == k:
            self.entries[-1].resolve(self._last)
            self._last = None
            if error is not None:
                _log.error("Generator task %s raised after yielding all num_returns=%d values; "
                           "the error is not stored in any ref: %s", self.name, k, error)
            return
        if error is None:  # as Ray: a RayTaskError that is also a ValueError
            error = generator_count_error(self.name, f"Generator task {self.name} yielded {n} "
                                          f"values but num_returns={k}.")
        ev = ErrorValue(error)
        for e in self.entries[n:]:
            e.resolve(ev)


class DynamicSink(Sink):
    """``num_returns="dynamic"``: one ref whose value lists the yielded refs (an exception is
    one extra final ref). Ray deprecates this mode in favour of streaming generators."""

    def __init__(self, entry: ObjectEntry, task_id: bytes, driver_pid: int) -> None:
        self.entry = entry
        self.task_id = task_id
        self.driver_pid = driver_pid
        self.refs: list[ObjectRef[Any]] = []
        self.produced = 0
        self._done = False

    def trace_id(self) -> bytes:
        return self.task_id

    def push(self, stored: Any) -> None:
        if self._done:
            return
        self.produced += 1
        e = ObjectEntry(object_id(self.task_id, self.produced), stored)
        self.refs.append(ObjectRef(e.id, e))

    def finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        if error is not None:
            self.push(ErrorValue(error))
        self._done = True
        self.entry.resolve(serialize_always(DynamicObjectRefGenerator(self.refs),
                                            self.driver_pid))


# -- what a task or actor call produces -------------------------------------------------------
class Outputs(Protocol):
    """A task or actor call record: what it resolves and the sink its generator feeds."""

    returns: list[ObjectEntry]
    sink: Sink | None


def make_outputs(record: Outputs, rt: Runtime, task_id: bytes, name: str, is_generator: bool,
                 nret: Any, backpressure: int) -> None:
    """Set ``record``'s return entries for ``num_returns=nret`` (already checked to suit the
    function) and the sink a generator body feeds. (Set in place: one allocation less per
    call, which the cyclic GC would otherwise count.)"""
    if not is_generator:
        record.sink = None
        if nret == 1:  # the common case first
            record.returns = [ObjectEntry(task_id + _INDEX_1)]
        else:
            record.returns = [ObjectEntry(object_id(task_id, i + 1)) for i in range(nret)]
    elif nret in (None, "streaming"):
        record.returns = []
        record.sink = GeneratorStream(rt, task_id, backpressure)
    elif nret == "dynamic":
        entry = ObjectEntry(object_id(task_id, 1))
        record.returns = [entry]
        record.sink = DynamicSink(entry, task_id, rt.driver_pid)
    else:
        record.returns = [ObjectEntry(object_id(task_id, i + 1)) for i in range(nret)]
        record.sink = StaticSink(record.returns, name)


_INDEX_1 = object_id(b"", 1)


def user_outputs(returns: list[ObjectEntry], sink: Sink | None) -> Any:
    """What ``.remote()`` returns: a generator, one ref, a list of refs, or None."""
    if isinstance(sink, GeneratorStream):
        return ObjectRefGenerator(sink)
    if len(returns) == 1:  # the common case first
        e = returns[0]
        return ObjectRef(e.id, e)
    return [ObjectRef(e.id, e) for e in returns] or None


# -- readiness of what get()/wait() were given (refs and generators) -------------------
def values_of(entries: list[ObjectEntry]) -> list[Any]:
    out = []
    for e in entries:
        e.retrieved = True
        out.append(deserialize(e.value))
    return out


def ready_now(items: list[Any]) -> set[int]:
    out = set()
    for i, r in enumerate(items):
        if isinstance(r, ObjectRefGenerator):
            # wait(): a generator is ready when next() would not block (an item, or the end)
            stream = r._stream
            if stream.ready() if isinstance(stream, GeneratorStream) else stream.next_ready():
                out.add(i)
        elif r._entry.value is not PENDING:
            out.add(i)
    return out


