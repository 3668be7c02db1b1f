"""What users hold for generator tasks: :class:`ObjectRefGenerator` and
:class:`DynamicObjectRefGenerator`.

An ``ObjectRefGenerator`` reads a :class:`~aioray._backend.base.Stream` that its backend
provides (the engine's in-process stream, a worker's view of the driver's, Ray's generator);
``next``/``for`` block the calling thread, ``async for`` awaits. How generator tasks produce
their items, and the rules for errors, retries and backpressure, are in
``aioray._engine.streams``.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Generator, Iterator
from typing import Any, Generic, TypeVar

from aioray._backend.base import Stream
from aioray._handles.ref import ObjectRef

T = TypeVar("T")


class ObjectRefGenerator(Generic[T]):
    """The refs a generator task yields, in order, as they are produced.

    Iterate with ``next``/``for`` (blocks the thread) or ``async for``/``await gen.__anext__()``.
    The task runs eagerly whether or not anyone reads; an application error arrives as the next
    ref in order, then the stream ends. Not thread-safe (as in Ray).
    """

    __slots__ = ("__weakref__", "_stream")

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def __iter__(self) -> ObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        return self._stream.next_ref()

    def __aiter__(self) -> ObjectRefGenerator[T]:
        return self

    def __anext__(self) -> Awaitable[ObjectRef[T]]:
        return self._stream.anext_ref()

    # Ray's generator protocol stubs: an ObjectRefGenerator only reads (same messages as Ray).
    def send(self, value: Any) -> Any:
        raise NotImplementedError("`gen.send` is not supported.")

    def throw(self, value: Any) -> Any:
        raise NotImplementedError("`gen.throw` is not supported.")

    def close(self) -> None:
        raise NotImplementedError("`gen.close` is not supported.")

    async def asend(self, value: Any) -> Any:
        raise NotImplementedError("`gen.asend` is not supported.")

    async def athrow(self, value: Any) -> Any:
        raise NotImplementedError("`gen.athrow` is not supported.")

    async def aclose(self) -> None:
        raise NotImplementedError("`gen.aclose` is not supported.")

    def completed(self) -> ObjectRef[None]:
        """A ref that resolves when the task finishes (its error, if it failed)."""
        return self._stream.completed()

    def is_finished(self) -> bool:
        """True once the task has ended and every ref was taken."""
        return self._stream.is_finished()

    def next_ready(self) -> bool:
        return self._stream.next_ready()

    def task_id(self) -> str:
        return self._stream.task_id_hex()

    def _generator_ref(self) -> ObjectRef[None]:
        return self.completed()

    def __del__(self) -> None:
        try:
            self._stream.drop()
        except Exception:
            pass

    def __reduce__(self) -> Any:
        raise TypeError(
            "An ObjectRefGenerator cannot be pickled or passed to another task or actor (a Ray "
            "limitation aioray keeps). Pass the refs it yields, or gen.completed()."
        )

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._stream.task_id_hex()})"


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


def yield_items(gen: Generator[Any, Any, Any], name: str) -> Generator[Any, None, None]:
    """Iterate a sync generator task's body; a ``return value`` is ignored (as in Ray) with a
    RuntimeWarning."""
    value = yield from gen
    if value is not None:
        warnings.warn(
            f"Generator task {name} returned {value!r:.60}; the return value of a generator "
            "task is ignored (as in Ray). Yield it instead.", RuntimeWarning, stacklevel=2)
