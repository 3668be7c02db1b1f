"""``Queue``: a FIFO queue shared by tasks and actors, Ray's ``ray.util.queue``.

As in Ray, the queue lives in an async actor (``queue.actor``) and a :class:`Queue` is a
picklable handle to it: pass it to tasks (also sync tasks in worker processes) and actors.
A blocking ``get``/``put`` waits inside the actor's coroutine on the runtime loop, so a worker
blocked in ``queue.get(timeout=...)`` holds no thread of the driver and never stalls the loop.

Beyond Ray:

* In the driver, calls made **on the runtime's loop thread** (async tasks and actors, async
  apps) skip the actor and touch the queue directly — they cost a function call, not an actor
  round trip. There the sync forms work whenever they need not wait (``put_nowait``,
  ``get_nowait``, the batches, ``qsize``/``empty``/``full``, ``put`` with room, ``get`` with an
  item); a sync call that would have to wait raises ``RuntimeError`` naming
  ``await queue.put_async(...)`` / ``await queue.get_async(...)`` instead of freezing the loop.
  Items are still copied on ``put`` (a later change to the object you put is not seen by the
  consumer), as with the actor.
* Elsewhere (worker processes, driver threads), operations that need not wait (a ``put``
  with room, a ``get`` with an item, the ``nowait`` forms, sizes) go straight to the queue —
  one back-channel request from a worker, one hop to the loop from a driver thread — instead
  of an actor call plus a ``get``. Only a call that has to wait goes through the actor, so
  ``shutdown`` still fails every waiter.
* The actor is created with an unbounded ``max_concurrency`` (Ray: 1000), so any number of
  blocked consumers cannot starve a producer's ``put``. Override with ``actor_options``.
"""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
import uuid
from collections.abc import Iterable
from typing import Any, cast

from aioray._api import get, kill, remote, wait, wait_async
from aioray._backend import registry
from aioray._backend.base import USE_ACTOR, Queues
from aioray._handles import queue_ops
from aioray._handles.queue_ops import Fail
from aioray._handles.ref import ObjectRef

__all__ = ["Empty", "Full", "Queue"]

_MAX_CONCURRENCY = 1_000_000_000


class Empty(_stdlib_queue.Empty):
    """``get`` found no item (non-blocking, or after ``timeout``)."""


class Full(_stdlib_queue.Full):
    """``put`` found no room (non-blocking, or after ``timeout``)."""


def _check(result: Any) -> Any:
    if type(result) is Fail:
        raise (Full if result.full else Empty)(result.msg) if result.msg else (
            Full() if result.full else Empty())
    return result


async def _put(q: asyncio.Queue[Any], item: Any, timeout: float | None) -> Fail | None:
    if not q.full():
        q.put_nowait(item)
        return None
    if timeout is not None and timeout <= 0:
        return Fail(True)
    try:
        await asyncio.wait_for(q.put(item), timeout)
    except asyncio.TimeoutError:
        return Fail(True)
    return None


async def _get(q: asyncio.Queue[Any], timeout: float | None) -> Any:
    if not q.empty():
        return q.get_nowait()
    if timeout is not None and timeout <= 0:
        return Fail(False)
    try:
        return await asyncio.wait_for(q.get(), timeout)
    except asyncio.TimeoutError:
        return Fail(False)


class _QueueActor:
    """The actor behind a :class:`Queue`. Ray's method names (raising ``Empty``/``Full``)
    plus the ``_``-prefixed ones the handle uses."""

    def __init__(self, maxsize: int, qid: str | None = None) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = (
            registry.current().queues.actor_started(qid, maxsize) if qid
            else asyncio.Queue(maxsize))

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        _check(await _put(self.queue, item, timeout))

    async def get(self, timeout: float | None = None) -> Any:
        return _check(await _get(self.queue, timeout))

    def put_nowait(self, item: Any) -> None:
        _check(queue_ops.put_nowait(self.queue, item))

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        _check(queue_ops.put_batch(self.queue, self.maxsize, list(items)))

    def get_nowait(self) -> Any:
        return _check(queue_ops.get_nowait(self.queue))

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        return cast(list[Any], _check(queue_ops.get_batch(self.queue, num_items)))

    async def _put(self, item: Any, timeout: float | None) -> Fail | None:
        return await _put(self.queue, item, timeout)

    async def _get(self, timeout: float | None) -> Any:
        return await _get(self.queue, timeout)

    def _put_nowait(self, item: Any) -> Fail | None:
        return queue_ops.put_nowait(self.queue, item)

    def _get_nowait(self) -> Any:
        return queue_ops.get_nowait(self.queue)

    def _put_batch(self, items: list[Any]) -> Fail | None:
        return queue_ops.put_batch(self.queue, self.maxsize, items)

    def _get_batch(self, num_items: int) -> Any:
        return queue_ops.get_batch(self.queue, num_items)

    def _barrier(self) -> None:
        """A no-op: its completion means every call submitted before it was applied."""


_QueueActorClass = remote(_QueueActor)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _would_block(what: str, await_form: str) -> RuntimeError:
    return RuntimeError(
        f"Queue.{what} would block the event loop that runs aioray (it has to wait). In async "
        f"code use `{await_form}`.")


class Queue:
    """A first-in, first-out queue usable from the driver, tasks and actors.

    ``maxsize <= 0`` means unbounded. ``actor_options`` go to the backing actor's
    ``.options(...)`` (e.g. ``{"num_cpus": 1}``, ``{"name": "q"}``).
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        # Checked as newer Ray does (2.60 accepted anything and failed later).
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"Queue(maxsize=...) takes an int (0: unbounded), got {maxsize!r}.")
        if maxsize < 0:
            raise ValueError(f"Queue(maxsize=...) must be 0 (unbounded) or more, got {maxsize}.")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError("Queue(actor_options=...) takes a dict of actor options, got "
                            f"{type(actor_options).__name__}.")
        self.maxsize = maxsize
        self._qid = uuid.uuid4().hex
        self._queues: Queues | None = registry.current().queues
        if not self._queues.open(self._qid, maxsize):
            self._queues = None  # every operation is an actor call
        opts = {"max_concurrency": _MAX_CONCURRENCY, **(actor_options or {})}
        self.actor: Any = _QueueActorClass.options(**opts).remote(maxsize, self._qid)

    def __reduce__(self) -> Any:
        return (_rebuild, (self.maxsize, self.actor, self._qid))

    # -- plumbing ---------------------------------------------------------------------------
    def _handle(self) -> Any:
        if self.actor is None:
            raise RuntimeError("This Queue was shut down (Queue.shutdown()).")
        return self.actor

    def _fast(self) -> asyncio.Queue[Any] | None:
        """The queue itself, when called on the loop thread of the runtime that owns it."""
        if self._queues is None or self.actor is None:
            return None
        return self._queues.fast(self._qid)

    def _direct(self, op: str, arg: Any = None) -> Any:
        """A non-waiting ``op`` applied to the queue without an actor call — in a worker
        process one back-channel request, in a driver thread one hop to the loop — or
        ``USE_ACTOR`` when that is not possible (queue not created yet, actor dead, ...)."""
        if self._queues is None or self.actor is None:
            return USE_ACTOR
        return self._queues.direct(self._qid, self.maxsize, op, arg)

    @staticmethod
    def _loop_running() -> bool:
        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            return False

    def _copy(self, item: Any, what: str) -> Any:
        """What the actor would store for ``item``: a copy; a top-level ref's value."""
        assert self._queues is not None  # only on the fast path
        return self._queues.copy(item, what)

    # -- size -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        fast = self._fast()
        if fast is not None:
            return fast.qsize()
        handle = self._handle()
        if (n := self._direct("qsize")) is not USE_ACTOR:
            return cast(int, n)
        return cast(int, get(handle.qsize.remote()))

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        fast = self._fast()
        if fast is not None:
            return fast.empty()
        handle = self._handle()
        if (e := self._direct("empty")) is not USE_ACTOR:
            return cast(bool, e)
        return cast(bool, get(handle.empty.remote()))

    def full(self) -> bool:
        """Whether the queue is full."""
        fast = self._fast()
        if fast is not None:
            return fast.full()
        handle = self._handle()
        if (f := self._direct("full")) is not USE_ACTOR:
            return cast(bool, f)
        return cast(bool, get(handle.full.remote()))

    # -- put ---------------------------------------------------------------------------------
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full wait up to ``timeout`` seconds (None: forever)
        for room, or with ``block=False`` raise :class:`Full` at once."""
        actor = self._handle()
        if block:
            _check_timeout(timeout)
        fast = self._fast()
        if fast is not None:
            copy = self._copy(item, "put()")
            if not fast.full():
                fast.put_nowait(copy)
                return
            if not block or timeout == 0:
                raise Full
            if self._loop_running():
                raise _would_block("put()", "await queue.put_async(item)")
        else:
            # A top-level ref is resolved by the actor call (Ray's argument rule).
            done = USE_ACTOR if isinstance(item, ObjectRef) else self._direct("put", item)
            if done is not USE_ACTOR and (done is None or not block or timeout == 0):
                _check(done)
                return
            # full and willing to wait: wait inside the actor
        if not block:
            _check(get(actor._put_nowait.remote(item)))
        else:
            _check(get(actor._put.remote(item, timeout)))

    async def put_async(self, item: Any, block: bool = True,
                        timeout: float | None = None) -> None:
        """:meth:`put` for async code."""
        actor = self._handle()
        if block:
            _check_timeout(timeout)
        fast = self._fast()
        if fast is not None:
            if isinstance(item, ObjectRef):
                item = await item
            else:
                item = self._copy(item, "put_async()")
            _check(await _put(fast, item, timeout if block else 0))
            return
        if not block:
            _check(await actor._put_nowait.remote(item))
        else:
            _check(await actor._put.remote(item, timeout))

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` in order, or none of them (:class:`Full`) if they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        actor = self._handle()
        fast = self._fast()
        if fast is not None:
            _check(queue_ops.put_batch(fast, self.maxsize, self._copy(list(items), "put_nowait_batch()")))
            return
        items = list(items)
        done = self._direct("put_batch", items)
        if done is not USE_ACTOR:
            _check(done)
            return
        _check(get(actor._put_batch.remote(items)))

    # -- get ---------------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the next item; if the queue is empty wait up to ``timeout``
        seconds (None: forever), or with ``block=False`` raise :class:`Empty` at once."""
        actor = self._handle()
        if block:
            _check_timeout(timeout)
        fast = self._fast()
        if fast is not None:
            if not fast.empty():
                return fast.get_nowait()
            if not block or timeout == 0:
                raise Empty
            if self._loop_running():
                raise _would_block("get()", "await queue.get_async()")
        else:
            got = self._direct("get")
            if got is not USE_ACTOR and (type(got) is not Fail or not block or timeout == 0):
                return _check(got)
            # empty and willing to wait: wait inside the actor
        if not block:
            return _check(get(actor._get_nowait.remote()))
        return _check(get(actor._get.remote(timeout)))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """:meth:`get` for async code."""
        actor = self._handle()
        if block:
            _check_timeout(timeout)
        fast = self._fast()
        if fast is not None:
            return _check(await _get(fast, timeout if block else 0))
        if not block:
            return _check(await actor._get_nowait.remote())
        return _check(await actor._get.remote(timeout))

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return ``num_items`` items in order, or none (:class:`Empty`) if fewer
        are queued."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        actor = self._handle()
        fast = self._fast()
        if fast is not None:
            return cast(list[Any], _check(queue_ops.get_batch(fast, num_items)))
        got = self._direct("get_batch", num_items)
        if got is not USE_ACTOR:
            return cast(list[Any], _check(got))
        return cast(list[Any], _check(get(actor._get_batch.remote(num_items))))

    # -- end ---------------------------------------------------------------------------------
    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """Terminate the backing actor; ``get``/``put`` calls still waiting in it then raise
        ``ActorDiedError``. Gracefully (unless ``force``): calls already submitted are
        applied first (waiting at most ``grace_period_s`` seconds for them), then the actor
        is killed. On the loop thread that happens in the background."""
        actor = self.actor
        self.actor = None
        self._queues = None
        if actor is None:
            return
        if force:
            kill(actor, no_restart=True)
        elif registry.current().on_own_loop():
            asyncio.get_running_loop().create_task(_stop(actor, grace_period_s))
        else:
            # Calls on one handle reach the actor in order: once this one ran, every call
            # submitted before it has been applied (or is waiting, and will fail).
            wait([actor._barrier.remote()], timeout=grace_period_s)
            kill(actor, no_restart=True)


async def _stop(actor: Any, grace_period_s: float) -> None:
    await wait_async([actor._barrier.remote()], timeout=grace_period_s)
    kill(actor, no_restart=True)


def _rebuild(maxsize: int, actor: Any, qid: str) -> Queue:
    q = Queue.__new__(Queue)
    q.maxsize = maxsize
    q.actor = actor
    q._qid = qid
    q._queues = registry.current().queues
    return q
