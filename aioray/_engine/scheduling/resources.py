"""Resource accounting and queueing: who may run now, who waits.

A :class:`ResourcePool` holds amounts of named resources (``CPU``, ``GPU``, custom). A task or
actor acquires its request before it runs and gives it back after. Waiters queue per request
*shape*, first come first served within a shape; on every release the oldest head that fits goes
next. That keeps a big task from being starved while small ones slip past it, at O(shapes) cost per
release instead of O(queue).

The node is one pool; a placement group's bundle is a pool carved out of the node's (see
``aioray.util.placement_group``), so "schedule into bundle 2" is just "acquire from that pool".

A pool may have an ``on_wait`` hook, called (loop thread) when a request has to queue: the
starvation watch (``starvation.py``) uses it to warn about requests that wait on resources held
by actors. Each waiter records when it started waiting and, when the code that asked set
:data:`requester`, who asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

_EPS = 1e-9

# Ray keeps resource amounts in fixed point with this many decimals (FixedPoint, 1/10000):
# what ``available_resources()`` reports is rounded to it, so seven 0.1-CPU tasks running on
# 2 CPUs leave 1.3, not 1.2999999999999994.
REPORT_DECIMALS = 4

# A request's shape: its sorted (resource, amount) pairs. Waiters queue per shape.
Shape = tuple[tuple[str, float], ...]

# Who is acquiring (e.g. "task f"), for messages about a waiter; set by the code that asks.
requester: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aioray_resource_requester", default=None)


class Grant:
    """Resources held by one running task or actor; give them back with ``pool.release``."""

    __slots__ = ("cpu_lent", "gpu_ids", "gpu_share", "pool", "released", "req")

    def __init__(self, pool: ResourcePool, req: Mapping[str, float],
                 gpu_ids: list[int], gpu_share: float) -> None:
        self.pool = pool
        self.req = req
        self.gpu_ids = gpu_ids
        self.gpu_share = gpu_share
        self.released = False
        self.cpu_lent = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.release(self)

    def lend_cpu(self) -> None:
        """Give back the CPU while the holder blocks in ``get``/``wait`` (as Ray does)."""
        cpu = self.req.get("CPU", 0.0)
        if cpu and not self.cpu_lent and not self.released:
            self.cpu_lent = True
            self.pool._give({"CPU": cpu})

    async def reclaim_cpu(self) -> None:
        """Take the CPU back after blocking; may wait behind tasks that took it meanwhile."""
        if self.cpu_lent and not self.released:
            self.cpu_lent = False
            await self.pool.acquire({"CPU": self.req["CPU"]}, _reclaim=True)


@contextlib.asynccontextmanager
async def lending_cpu(grant: Grant | None) -> AsyncIterator[None]:
    """While blocked (``get``/``wait`` inside a task) the task's CPU goes back to the pool,
    and is taken back afterwards — so nested tasks never deadlock on CPUs (as in Ray)."""
    if grant is not None:
        grant.lend_cpu()
    try:
        yield
    finally:
        if grant is not None:
            await grant.reclaim_cpu()


class _Waiter:
    __slots__ = ("fut", "req", "seq", "since", "who")

    def __init__(self, req: Mapping[str, float], fut: asyncio.Future[Grant], seq: int,
                 since: float, who: str | None) -> None:
        self.req = req
        self.fut = fut
        self.seq = seq
        self.since = since  # loop time it started waiting
        self.who = who


class ResourcePool:
    """Amounts of resources with FIFO-per-shape waiting."""

    def __init__(self, total: Mapping[str, float], gpu_ids: list[int] | None = None,
                 name: str = "node") -> None:
        self.name = name
        self.total = {k: float(v) for k, v in total.items() if v}
        self.available = dict(self.total)
        ids = gpu_ids if gpu_ids is not None else list(range(int(self.total.get("GPU", 0))))
        self._gpu_free = {i: 1.0 for i in ids}
        self._queues: dict[Shape, deque[_Waiter]] = {}
        self._seq = itertools.count()
        self.closed: BaseException | None = None
        # Called (pool, shape) when a request has to wait (see starvation.py).
        self.on_wait: Callable[[ResourcePool, Shape], None] | None = None

    # -- queries -------------------------------------------------------------------------
    def feasible(self, req: Mapping[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + _EPS >= v for k, v in req.items())

    def describe_infeasible(self, req: Mapping[str, float]) -> str:
        return (f"it requires {dict(req)} but the {self.name} only has {self.total} in total "
                "(aioray.init(num_cpus=..., num_gpus=..., resources=...) sets these)")

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def oldest_waiter(self, key: Shape) -> _Waiter | None:
        """The longest-waiting live request of shape ``key``, if any."""
        q = self._queues.get(key)
        for w in q or ():
            if not w.fut.done():
                return w
        return None

    def waiting(self, key: Shape) -> int:
        """How many live requests of shape ``key`` wait."""
        return sum(not w.fut.done() for w in self._queues.get(key) or ())

    # -- acquire / release ---------------------------------------------------------------
    def try_acquire(self, req: Mapping[str, float]) -> Grant | None:
        avail = self.available
        for k, v in req.items():
            if avail.get(k, 0.0) + _EPS < v:
                return None
        gpus = req.get("GPU", 0.0)
        gpu_ids: list[int] = []
        share = 0.0
        if gpus:
            picked = self._pick_gpus(gpus)
            if picked is None:
                return None
            gpu_ids, share = picked
        for k, v in req.items():
            avail[k] = avail.get(k, 0.0) - v
        return Grant(self, req, gpu_ids, share)

    def _pick_gpus(self, gpus: float) -> tuple[list[int], float] | None:
        if not self._gpu_free:
            return ([], 0.0)
        if gpus >= 1:
            whole = [i for i, f in self._gpu_free.items() if f >= 1.0 - _EPS]
            n = round(gpus)
            if len(whole) < n:
                return None
            ids = whole[:n]
            for i in ids:
                self._gpu_free[i] = 0.0
            return (ids, 1.0)
        for i, f in self._gpu_free.items():
            if f + _EPS >= gpus:
                self._gpu_free[i] = f - gpus
                return ([i], gpus)
        return None

    async def acquire(self, req: Mapping[str, float], _reclaim: bool = False) -> Grant:
        if self.closed is not None:
            raise self.closed
        if not self._queues or _reclaim or not self._contended(req):
            grant = self.try_acquire(req)
            if grant is not None:
                return grant
        key = tuple(sorted(req.items()))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Grant] = loop.create_future()
        waiter = _Waiter(req, fut, next(self._seq), loop.time(), requester.get())
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = deque()
        if _reclaim:
            q.appendleft(waiter)
        else:
            q.append(waiter)
        if self.on_wait is not None and not fut.done():
            self.on_wait(self, key)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                fut.result().release()  # granted just as we were cancelled: give it back
            else:
                self._forget(key, waiter)
            raise

    def _contended(self, req: Mapping[str, float]) -> bool:
        """An older request waits for some resource ``req`` needs: a newcomer must not jump
        ahead of it. One that needs none of theirs (a custom resource while CPU tasks queue)
        need not wait for the next release — which may never come."""
        for q in self._queues.values():
            for w in q:
                if not w.fut.done():
                    if any(v > 0 and w.req.get(k, 0.0) > 0 for k, v in req.items()):
                        return True
                    break  # one live head per shape: the rest want the same
        return False

    def _forget(self, key: Shape, waiter: _Waiter) -> None:
        """A cancelled acquire leaves the queue at once: a dead waiter must not hold back the
        requests behind it (nor make ``acquire`` queue while everything is free)."""
        q = self._queues.get(key)
        if q is None:
            return
        try:
            q.remove(waiter)
        except ValueError:
            return  # already dispatched or dropped
        if not q:
            del self._queues[key]
        self._dispatch()  # the next of its shape (or an older head it blocked) may fit now

    def release(self, grant: Grant) -> None:
        self._give(grant.req, grant.gpu_ids, grant.gpu_share)

    def _give(self, req: Mapping[str, float], gpu_ids: list[int] | None = None,
              share: float = 0.0) -> None:
        avail = self.available
        for k, v in req.items():
            avail[k] = avail.get(k, 0.0) + v
        for i in gpu_ids or ():
            self._gpu_free[i] = min(1.0, self._gpu_free[i] + share)
        self._dispatch()

    def _dispatch(self) -> None:
        queues = self._queues
        while queues:
            best: deque[_Waiter] | None = None
            best_key = None
            for key, q in list(queues.items()):
                while q and q[0].fut.done():  # cancelled waiters
                    q.popleft()
                if not q:
                    del queues[key]
                    continue
                if best is None or q[0].seq < best[0].seq:
                    # only consider heads that fit now
                    if all(self.available.get(k, 0.0) + _EPS >= v for k, v in q[0].req.items()):
                        best, best_key = q, key
            if best is None:
                return
            waiter = best[0]
            grant = self.try_acquire(waiter.req)
            if grant is None:  # GPU fragmentation: the amounts fit but no device does
                return
            best.popleft()
            if not best:
                del queues[best_key]  # type: ignore[arg-type]
            waiter.fut.set_result(grant)

    def close(self, error: BaseException) -> None:
        """Fail every waiter (shutdown, placement group removed)."""
        self.closed = error
        for q in self._queues.values():
            for w in q:
                if not w.fut.done():
                    w.fut.set_exception(error)
        self._queues.clear()

    def snapshot(self) -> dict[str, Any]:
        return {k: v for k, v in self.available.items()}

    def free(self) -> dict[str, float]:
        """What is free now, as Ray reports it: amounts rounded to Ray's fixed point, and
        resources with nothing free left out (any thread: one atomic copy of the dict)."""
        return {k: r for k, v in dict(self.available).items()
                if (r := round(v, REPORT_DECIMALS)) > 0}
