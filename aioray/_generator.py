"""Generator tasks: the stream of refs a running generator feeds, and the three ways to read it.

* :class:`ObjectRefGenerator` (streaming, Ray's default for generator functions): an async
  queue of refs. ``next``/``for`` block the calling thread, ``async for``/``__anext__`` await.
* ``num_returns=k``: :class:`StaticSink` fills k ordinary refs from the stream.
* ``num_returns="dynamic"`` (deprecated in Ray): :class:`DynamicSink` resolves one ref to a
  :class:`DynamicObjectRefGenerator` when the task ends.

Every executor (loop coroutine, thread, worker process, actor) produces items the same way: it
calls ``push(stored)`` per yield and ``finish(error)`` at the end, on the loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aioray._object_ref import ObjectRef, object_id
from aioray._object_store import ObjectEntry
from aioray._serialization import ErrorValue, serialize_always

if TYPE_CHECKING:
    from aioray._runtime import Runtime

T = TypeVar("T")


class GeneratorStream:
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

    def wait_capacity_blocking(self) -> None:
        """Thread producers (sync actors, thread tasks) pause here likewise."""
        with self._thread_cv:
            while self.backpressure and not self.done and not self.dropped and (
                self.produced - self.consumed >= self.backpressure
            ):
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
            await fut

    def drop(self) -> None:
        """The consumer is gone: free untaken refs, let a paused producer finish."""
        self.dropped = True
        n = len(self.items)
        self.items.clear()
        self.consumed += n
        self._notify_consumed()
        with self._thread_cv:
            self._thread_cv.notify_all()


class ObjectRefGenerator(Generic[T]):
    """The refs a generator task yields, in order, as they are produced.

    Iterate with ``next``/``for`` (blocks the thread) or ``async for``/``await gen.__anext__()``.
    The task runs eagerly whether or not anyone reads; an application error arrives as the next
    ref in order, then the stream ends. Not thread-safe (as in Ray).
    """

    def __init__(self, stream: GeneratorStream) -> None:
        self._stream = stream

    def __iter__(self) -> ObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        s = self._stream
        while True:
            ref = s.take()
            if ref is not None:
                return ref
            if s.done:
                ref = s.take()  # an item pushed just before done
                if ref is not None:
                    return ref
                raise StopIteration
            s.runtime.run_sync(s.wait_ready(), None, "next(gen)", "await gen.__anext__()")

    def __aiter__(self) -> ObjectRefGenerator[T]:
        return self

    async def __anext__(self) -> ObjectRef[T]:
        s = self._stream
        while True:
            ref = s.take()
            if ref is not None:
                return ref
            if s.done:
                ref = s.take()
                if ref is not None:
                    return ref
                raise StopAsyncIteration
            await s.runtime.run_async(s.wait_ready())

    def completed(self) -> ObjectRef[None]:
        """A ref that resolves when the task finishes (its error, if it failed)."""
        e = self._stream.completed_entry
        return ObjectRef(e.id, e)

    def is_finished(self) -> bool:
        """True once the task has ended and every ref was taken."""
        return self._stream.done and not self._stream.items

    def next_ready(self) -> bool:
        return self._stream.ready()

    def task_id(self) -> str:
        return self._stream.task_id.hex()

    def _generator_ref(self) -> ObjectRef[None]:
        return self.completed()

    def __del__(self) -> None:
        try:
            self._stream.runtime.call_soon(self._stream.drop)
        except Exception:
            pass

    def __reduce__(self) -> Any:
        raise TypeError(
            "An ObjectRefGenerator cannot be pickled or passed to another task or actor (a Ray "
            "limitation aioray keeps). Pass the refs it yields, or gen.completed()."
        )

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._stream.task_id.hex()})"


# Ray's older name.
StreamingObjectRefGenerator = ObjectRefGenerator


class DynamicObjectRefGenerator(Generic[T]):
    """The value of a ``num_returns="dynamic"`` task: an iterable of the refs it yielded."""

    def __init__(self, refs: list[ObjectRef[T]]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef[T]]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __reduce__(self) -> Any:
        return (DynamicObjectRefGenerator, (self._refs,))

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


class StaticSink:
    """``num_returns=k`` with a generator: k refs resolved when the task ends.

    Exactly k items: every ref gets its value. An error (or a missing item) before ref k: refs
    already produced keep their values, the rest hold the error. An error or an extra item after
    all k were produced: every ref holds the error — Ray only logs that case (a known Ray bug).
    """

    def __init__(self, entries: list[ObjectEntry], name: str) -> None:
        self.entries = entries
        self.name = name
        self.values: list[Any] = []
        self.extra = False

    def push(self, stored: Any) -> None:
        if len(self.values) < len(self.entries):
            self.values.append(stored)
        else:
            self.extra = True

    def finish(self, error: BaseException | None = None) -> None:
        k = len(self.entries)
        if error is None and self.extra:
            error = ValueError(
                f"Generator task {self.name} yielded more than num_returns={k} values.")
        if error is not None and len(self.values) == k:
            for e in self.entries:
                e.resolve(ErrorValue(error))
            return
        if error is None and len(self.values) < k:
            error = ValueError(f"Generator task {self.name} yielded {len(self.values)} values "
                               f"but num_returns={k}.")
        for i, e in enumerate(self.entries):
            e.resolve(self.values[i] if i < len(self.values) else ErrorValue(error))  # type: ignore[arg-type]


class DynamicSink:
    """``num_returns="dynamic"``: one ref whose value lists the yielded refs."""

    def __init__(self, entry: ObjectEntry, task_id: bytes, driver_pid: int) -> None:
        self.entry = entry
        self.task_id = task_id
        self.driver_pid = driver_pid
        self.refs: list[ObjectRef[Any]] = []

    def push(self, stored: Any) -> None:
        e = ObjectEntry(object_id(self.task_id, len(self.refs) + 1), stored)
        self.refs.append(ObjectRef(e.id, e))

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.push(ErrorValue(error))
        self.entry.resolve(serialize_always(DynamicObjectRefGenerator(self.refs),
                                            self.driver_pid))


class WorkerObjectRefGenerator(Generic[T]):
    """A streaming generator consumed from inside a worker process (through the driver)."""

    def __init__(self, client: Any, task_id: bytes) -> None:
        self._client = client
        self._task_id = task_id

    def __iter__(self) -> WorkerObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        id = self._client.request("gen_next", self._task_id)
        if id is None:
            raise StopIteration
        return self._client.borrow(id)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[ObjectRef[T]]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[ObjectRef[T]]:
        loop = asyncio.get_running_loop()
        sentinel = object()
        while True:
            ref = await loop.run_in_executor(None, next, self, sentinel)
            if ref is sentinel:
                return
            yield ref  # type: ignore[misc]

    def completed(self) -> ObjectRef[None]:
        return self._client.borrow(object_id(self._task_id, 0))  # type: ignore[no-any-return]

    def __del__(self) -> None:
        try:
            self._client.call("gen_drop", self._task_id)
        except Exception:
            pass

    def __reduce__(self) -> Any:
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or actor.")
