"""``ActorPool``: spread work over a fixed set of actors, Ray's ``ray.util.ActorPool``.

Sync API (Ray's, same semantics): ``map``, ``map_unordered``, ``submit``, ``get_next``,
``get_next_unordered``, ``has_next``, ``has_free``, ``pop_idle``, ``push``. ``fn(actor, value)``
must return the ObjectRef of a call on ``actor`` (or a list of refs: its result is then the
list of values); the actor is busy until that result is taken. An error raised by a call is
re-raised when its result is taken — at the matching item of ``map`` — and the actor goes back
to the pool, except after ``ActorDiedError`` (a dead actor is dropped from the pool).

Async API (aioray's), for code running on an event loop, where the sync forms would block it:

* ``async for v in pool.map_async(fn, values)`` / ``pool.map_unordered_async(fn, values)``.
  ``values`` may also be an **async** iterable: it is then pulled lazily, one value per idle
  actor, so a slow or endless source streams through the pool with bounded memory.
* ``await pool.get_next_async(timeout=None, ignore_if_timedout=False)`` and
  ``await pool.get_next_unordered_async(...)``.

``submit``/``has_next``/``has_free``/``pop_idle``/``push`` never block and serve both.
A pool, like Ray's, is meant to be driven by one thread or one task at a time.

Where Ray is weak: ``get_next_unordered(timeout, ignore_if_timedout=True)`` with nothing ready
crashes in Ray (``UnboundLocalError``); here it drops the oldest call still in flight (its actor
returns to the pool) and raises ``TimeoutError``, like ``get_next``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, NoReturn, TypeVar

from aioray._api import get, get_async, wait, wait_async
from aioray._backend import registry
from aioray.exceptions import ActorDiedError

A = TypeVar("A")
V = TypeVar("V")

_TIMEOUT_MSG = "Timed out waiting for result"

__all__ = ["ActorPool"]


def _refs(future: Any) -> list[Any]:
    return list(future) if isinstance(future, (list, tuple)) else [future]


def _key(future: Any) -> Any:
    return tuple(future) if isinstance(future, list) else future


def _on_running_loop() -> bool:
    backend = registry.installed()
    return backend is not None and backend.on_own_loop()


class ActorPool(Generic[A]):
    """A fixed pool of actors to run ``fn(actor, value)`` calls on; see the module doc."""

    def __init__(self, actors: Iterable[A]) -> None:
        self._idle_actors: list[A] = list(actors)
        self._future_to_actor: dict[Any, tuple[int, A]] = {}
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list[tuple[Callable[[A, Any], Any], Any]] = []

    # -- submission (never blocks) ------------------------------------------------------
    def submit(self, fn: Callable[[A, V], Any], value: V) -> None:
        """Run ``fn(actor, value)`` on an idle actor now, or as soon as one is free.
        Take the result with ``get_next()`` / ``get_next_unordered()``."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            self._future_to_actor[_key(future)] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        """Whether a submitted result is still to be taken."""
        return bool(self._future_to_actor)

    def has_free(self) -> bool:
        """Whether an actor is idle (and no submit is waiting for one)."""
        return len(self._idle_actors) > 0 and len(self._pending_submits) == 0

    def pop_idle(self) -> A | None:
        """Remove and return an idle actor, or None if none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: A) -> None:
        """Add an actor to the pool (ValueError if it is already in it)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    def _return_actor(self, actor: A, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    # -- taking results: shared bookkeeping ---------------------------------------------
    def _check_next(self, ordered: bool, stop: type[Exception] = StopIteration) -> None:
        if not self.has_next():
            raise stop("No more results to get")
        if ordered and self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")

    def _take(self, future: Any) -> A:
        """Remove ``future`` from the books; returns its actor (still busy)."""
        i, actor = self._future_to_actor.pop(_key(future))
        del self._index_to_future[i]
        self._next_return_index = max(self._next_return_index, i + 1)
        return actor

    def _drop(self, future: Any) -> NoReturn:
        """``ignore_if_timedout``: forget a call still running and free its actor."""
        self._return_actor(self._take(future))
        raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")

    def _oldest(self) -> Any:
        return self._index_to_future[min(self._index_to_future)]

    def _first_ready(self, ready: list[Any]) -> Any | None:
        """The earliest-submitted future all of whose refs are in ``ready``."""
        ids = {r.binary() for r in ready}
        for future in self._index_to_future.values():
            if all(r.binary() in ids for r in _refs(future)):
                return future
        return None

    def _all_refs(self) -> list[Any]:
        return [r for f in self._index_to_future.values() for r in _refs(f)]

    def _loop_guard(self, name: str, refs: list[Any], timeout: float | None) -> None:
        if timeout == 0 or not _on_running_loop():
            return
        done, _ = wait(refs, num_returns=len(refs), timeout=0)
        if len(done) < len(refs):
            raise RuntimeError(
                f"ActorPool.{name}() would block the event loop that runs aioray. In async "
                f"code use `await pool.{name}_async(...)` or `async for v in "
                "pool.map_async(fn, values)`.")

    # -- sync API ---------------------------------------------------------------------------
    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds
        (``TimeoutError``; with ``ignore_if_timedout`` that call is also dropped)."""
        self._check_next(ordered=True)
        future = self._index_to_future[self._next_return_index]
        refs = _refs(future)
        self._loop_guard("get_next", refs, timeout)
        if timeout is not None:
            done, _ = wait(refs, num_returns=len(refs), timeout=timeout)
            if len(done) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MSG)
                self._drop(future)
        return self._result(future, self._take(future))

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Any finished result (the earliest submitted among those ready), waiting up to
        ``timeout`` seconds. Mixing it with ``get_next`` on the same submissions is an error."""
        self._check_next(ordered=False)
        future = self._wait_any(timeout)
        if future is None:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            self._drop(self._oldest())
        return self._result(future, self._take(future))

    def _wait_any(self, timeout: float | None) -> Any | None:
        refs = self._all_refs()
        if len(refs) == len(self._index_to_future):  # one ref per call: one wait
            if _on_running_loop() and timeout != 0:
                self._loop_guard_any(refs)
            done, _ = wait(refs, num_returns=1, timeout=timeout)
            return self._first_ready(done)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, pending = wait(refs, num_returns=len(refs), timeout=0)
            future = self._first_ready(done)
            if future is not None:
                return future
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0 or not pending:
                return None
            if _on_running_loop():
                self._loop_guard_any(pending)
            wait(pending, num_returns=1, timeout=left)

    def _loop_guard_any(self, refs: list[Any]) -> None:
        done, _ = wait(refs, num_returns=1, timeout=0)
        if not done:
            raise RuntimeError(
                "ActorPool.get_next_unordered() would block the event loop that runs aioray. "
                "In async code use `await pool.get_next_unordered_async(...)` or `async for v "
                "in pool.map_unordered_async(fn, values)`.")

    def _result(self, future: Any, actor: A) -> Any:
        alive = True
        try:
            return get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def map(self, fn: Callable[[A, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """Apply ``fn`` over ``values`` on the pool's actors; results in order. Results of
        earlier submissions not yet taken are discarded first (as in Ray)."""
        self._discard(ordered=True)
        for v in values:
            self.submit(fn, v)

        def gen() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()
        return gen()

    def map_unordered(self, fn: Callable[[A, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """Like :meth:`map`, results in completion order."""
        self._discard(ordered=False)
        for v in values:
            self.submit(fn, v)

        def gen() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()
        return gen()

    def _discard(self, ordered: bool) -> None:
        while self.has_next():
            try:
                if ordered:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except Exception:  # a timeout, or the discarded call's own error
                pass

    # -- async API -------------------------------------------------------------------------
    async def get_next_async(self, timeout: float | None = None,
                             ignore_if_timedout: bool = False) -> Any:
        """:meth:`get_next` for async code (``StopAsyncIteration`` when nothing is pending:
        a coroutine cannot raise ``StopIteration``)."""
        self._check_next(ordered=True, stop=StopAsyncIteration)
        future = self._index_to_future[self._next_return_index]
        refs = _refs(future)
        done, _ = await wait_async(refs, num_returns=len(refs), timeout=timeout)
        if len(done) < len(refs):
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            self._drop(future)
        return await self._result_async(future, self._take(future))

    async def get_next_unordered_async(self, timeout: float | None = None,
                                       ignore_if_timedout: bool = False) -> Any:
        """:meth:`get_next_unordered` for async code (``StopAsyncIteration`` when nothing is
        pending)."""
        self._check_next(ordered=False, stop=StopAsyncIteration)
        deadline = None if timeout is None else time.monotonic() + timeout
        future = None
        while True:
            refs = self._all_refs()
            done, pending = await wait_async(refs, num_returns=len(refs), timeout=0)
            future = self._first_ready(done)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if future is not None or left == 0 or not pending:
                break
            await wait_async(pending, num_returns=1, timeout=left)
        if future is None:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            self._drop(self._oldest())
        return await self._result_async(future, self._take(future))

    async def _result_async(self, future: Any, actor: A) -> Any:
        alive = True
        try:
            return await get_async(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def map_async(self, fn: Callable[[A, V], Any],
                  values: Iterable[V] | AsyncIterable[V]) -> AsyncIterator[Any]:
        """``async for v in pool.map_async(fn, values)``: :meth:`map` for async code."""
        return self._map_async(fn, values, ordered=True)

    def map_unordered_async(self, fn: Callable[[A, V], Any],
                            values: Iterable[V] | AsyncIterable[V]) -> AsyncIterator[Any]:
        """``async for v in pool.map_unordered_async(fn, values)``."""
        return self._map_async(fn, values, ordered=False)

    async def _map_async(self, fn: Callable[[A, V], Any],
                         values: Iterable[V] | AsyncIterable[V],
                         ordered: bool) -> AsyncIterator[Any]:
        take = self.get_next_async if ordered else self.get_next_unordered_async
        await self._discard_async(ordered)
        if not isinstance(values, AsyncIterable):
            for v in values:
                self.submit(fn, v)
            while self.has_next():
                yield await take()
            return
        source = values.__aiter__()
        exhausted = False
        while True:
            # Pull one value per idle actor, so the source is read only as fast as the pool
            # works through it.
            while not exhausted and self.has_free():
                try:
                    v = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                self.submit(fn, v)
            if not self.has_next():
                if exhausted:
                    return
                if not self._idle_actors:
                    raise ValueError("ActorPool.map_async() needs at least one actor in "
                                     "the pool.")
                continue
            yield await take()

    async def _discard_async(self, ordered: bool) -> None:
        while self.has_next():
            try:
                if ordered:
                    await self.get_next_async(timeout=0, ignore_if_timedout=True)
                else:
                    await self.get_next_unordered_async(timeout=0, ignore_if_timedout=True)
            except Exception:
                pass
