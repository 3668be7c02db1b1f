"""``ObjectRef``: a typed, awaitable handle to one object."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import weakref
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from aioray._backend import registry
from aioray._backend.base import Entry
from aioray._objects import serialization
from aioray._objects.serialization import ErrorValue, deserialize, note_ref
from aioray._objects.store import PENDING, STORE, ObjectEntry
from aioray.exceptions import ObjectFreedError

_log = logging.getLogger("aioray")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class ObjectRef(Generic[T_co]):
    """A reference to an object that a task returns or ``put`` stored.

    ``await ref`` gives the value from any event loop; ``aioray.get(ref)`` from sync code;
    ``ref.future()`` a :class:`concurrent.futures.Future`. Refs are hashable, compare by id and
    can be passed to tasks and actors (as top-level arguments they are resolved first).
    """

    __slots__ = ("__weakref__", "_entry", "_id")

    def __init__(self, id: bytes, entry: ObjectEntry | Entry | None = None) -> None:
        if entry is None:  # ObjectRef(ref.binary()), as in Ray: the object behind that id
            if not isinstance(id, bytes) or len(id) != 28:
                raise ValueError(f"ObjectRef(id) expects the 28 bytes of ref.binary(), got "
                                 f"{id!r:.60}.")
            entry = _rebuild_ref(id)._entry
        self._id = id
        # An ObjectEntry of this process's store (the engine's refs: its code reads the entry
        # directly), or another backend's Entry (a worker's borrow, a Ray ref).
        self._entry: Any = entry

    def binary(self) -> bytes:
        entry = self._entry
        if type(entry) is ObjectEntry:
            STORE.register(entry)  # so ObjectRef(ref.binary()) finds the object again
        return self._id

    def hex(self) -> str:
        return self.binary().hex()

    @classmethod
    def from_binary(cls, binary: bytes) -> ObjectRef[Any]:
        """The ref whose ``binary()`` is ``binary`` (in the process that can reach it)."""
        return cls(binary)

    @classmethod
    def from_hex(cls, hex_id: str) -> ObjectRef[Any]:
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def nil(cls) -> ObjectRef[Any]:
        return cls(b"\0" * 28, ObjectEntry(b"\0" * 28, None))


    def task_id(self) -> str:
        return self._id[:24].hex()

    def is_nil(self) -> bool:
        return not any(self._id)

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __await__(self) -> Generator[Any, None, T_co]:
        entry = self._entry
        if type(entry) is ObjectEntry:
            if entry.value is PENDING:
                waiter = registry.current().loop_waiter(entry)
                if waiter is not None:
                    fut, on_ready = waiter
                    try:
                        yield from fut
                    finally:
                        if entry.value is PENDING:  # cancelled: leave nothing on the entry
                            entry.remove_callback(on_ready)
            if entry.value is not PENDING:
                entry.retrieved = True
                value: T_co = deserialize(entry.value)
                return value
        value = yield from registry.current().await_ref(self).__await__()
        return value

    def future(self) -> concurrent.futures.Future[T_co]:
        """A ``concurrent.futures.Future`` that completes with the object's value or error."""
        return registry.current().ref_future(self)

    def _on_completed(self, callback: Callable[[Any], object]) -> None:
        """Ray's completion hook (private in Ray, used by its libraries and tests): once the
        object is ready, ``callback(value)``, or ``callback(error)`` with the task's error
        instance. It runs on a runtime thread, so keep it short; what it raises is logged.
        The callback is released once it ran."""
        held: list[Callable[[Any], object]] = [callback]

        def fire(fut: concurrent.futures.Future[Any]) -> None:
            fn = held.pop()
            error = fut.exception()  # the object's error is what is handed over
            try:
                fn(error if error is not None else fut.result())
            except Exception:
                _log.exception("aioray: the _on_completed callback of %r raised", self)

        self.future().add_done_callback(fire)

    def as_future(self) -> Any:
        """An ``asyncio.Future`` on the running loop (Ray's name for the same thing)."""
        return asyncio.ensure_future(_as_coro(self))

    # -- the bit of the Future protocol ``asyncio.wait([ref, ...])`` uses ----------------------
    # Python 3.11+ no longer wraps awaitables in asyncio.wait: it calls add_done_callback /
    # remove_done_callback / done() on what it is given and returns those same objects in its
    # (done, pending) sets, so result() / exception() are here too.
    def done(self) -> bool:
        """Whether the object is ready (a value or an error); never blocks."""
        entry = self._entry
        if type(entry) is ObjectEntry:
            return entry.value is not PENDING
        return bool(registry.current().wait([self], 1, 0, True)[0])

    def cancelled(self) -> bool:
        return False

    def result(self) -> T_co:
        """The value of a ready object (raises its error); ``InvalidStateError`` if pending."""
        if not self.done():
            raise asyncio.InvalidStateError(f"{self!r} is not ready yet.")
        value: T_co = registry.current().get(self, None)
        return value

    def exception(self) -> BaseException | None:
        """The error of a ready object, or None if it holds a value."""
        try:
            self.result()
        except Exception as e:
            if type(e).__name__ == "InvalidStateError":
                raise
            return e
        return None

    def add_done_callback(self, fn: Callable[[Any], object], *,
                          context: Any = None) -> None:
        """Call ``fn(ref)`` on the running event loop once the object is ready."""
        loop = asyncio.get_running_loop()
        waiters = _DONE_CALLBACKS.setdefault(self, {})

        def fire(task: Any = None) -> None:
            if task is not None and not task.cancelled():
                task.exception()  # consumed here; the ref itself carries any error
            if waiters.pop(fn, None) is None:  # removed meanwhile
                return
            if not waiters:
                _DONE_CALLBACKS.pop(self, None)
            if context is not None:
                context.run(fn, self)
            else:
                fn(self)

        if self.done():
            waiters[fn] = loop.call_soon(fire)
            return
        # Wait for readiness only (not the value): an error is not "retrieved" by waiting.
        task = loop.create_task(registry.current().wait_async([self], 1, None, True))
        task.add_done_callback(fire)
        waiters[fn] = task

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        waiters = _DONE_CALLBACKS.get(self)
        handle = waiters.pop(fn, None) if waiters else None
        if handle is None:
            return 0
        if not waiters:
            _DONE_CALLBACKS.pop(self, None)
        handle.cancel()
        return 1

    def __reduce__(self) -> Any:
        entry = self._entry
        if type(entry) is ObjectEntry:
            note_ref(self)
            STORE.register(entry)  # so the id can find its entry again in this process
            return (_rebuild_ref, (self._id,))
        return entry.reduce_ref(self)  # a worker's borrowed or a Ray ref: its backend says

    def __iter__(self) -> Any:
        raise TypeError(
            "An ObjectRef is not iterable. Did you mean aioray.get(ref), or to set "
            "num_returns on the remote function so that .remote() returns several refs?"
        )

    def __bool__(self) -> bool:
        return True


# ref -> {callback: pending handle or task}, for add/remove_done_callback (asyncio.wait).
_DONE_CALLBACKS: weakref.WeakKeyDictionary[ObjectRef[Any], dict[Any, Any]] = (
    weakref.WeakKeyDictionary())


async def _as_coro(ref: ObjectRef[T]) -> T:
    return await ref


def local_ref(id: bytes) -> ObjectRef[Any]:
    """A ref to ``id`` in this process's store; an object already freed holds that error."""
    entry = STORE.lookup(id)
    if entry is None:
        entry = ObjectEntry(id, ErrorValue(ObjectFreedError(
            id.hex(), f"Object {id.hex()} was freed: every reference to it was dropped "
            "before this copy of the reference was rebuilt.")))
    return ObjectRef(id, entry)


def _rebuild_ref(id: bytes) -> ObjectRef[Any]:
    """Unpickle: the backend in use rebuilds it (a worker borrows it from the driver); with none,
    this process's store — never starts a runtime."""
    backend = registry.installed()
    if backend is not None:
        return backend.rebuild_ref(id)
    return local_ref(id)


serialization.rebuild_ref = _rebuild_ref
