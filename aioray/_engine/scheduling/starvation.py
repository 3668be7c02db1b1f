"""The starvation watch: a request that cannot be scheduled *now* is never silent.

Two ``num_cpus=1`` actors on ``init(num_cpus=2)`` hold both CPUs for as long as they live; a
task asking for a CPU then waits — maybe forever. Ray's raylet notices that a request has been
pending with no progress being made and warns ("... cannot be scheduled right now ... This is
likely due to all cluster resources being claimed by actors ..."). This does the same for the
node's pool:

* when a request has to queue (``ResourcePool.on_wait``), a timer is set for its shape;
* after ``AIORAY_STARVATION_WARNING_S`` seconds (default 5; ``0``/``off`` turns it off) the
  oldest request of that shape still waiting is looked at. If running tasks hold some of what
  it needs, it is only queued behind them (progress is being made, as Ray's check): look again
  later. Otherwise — the resources are held by actors, placement groups or tasks blocked in
  ``get`` — log one warning (logger ``aioray``) naming the shape, what is free, and what holds
  the resources (actors by class name, how many tasks, placement groups);
* once per shape for the runtime's life.

Cost: nothing on the fast path (a request that is granted at once never reaches the hook); one
timer per waiting shape otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aioray._engine import env
from aioray._engine.scheduling.resources import REPORT_DECIMALS, Grant, ResourcePool, Shape
from aioray._handles.options import resource_request

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime

_log = logging.getLogger("aioray")

ENV = "AIORAY_STARVATION_WARNING_S"
DEFAULT_DELAY = 5.0


def delay_from_env() -> float | None:
    """Seconds a request waits before the warning, or None when the watch is off."""
    return env.seconds(ENV, DEFAULT_DELAY)


def _fmt(amounts: Mapping[str, float]) -> str:
    return repr({k: round(v, REPORT_DECIMALS) for k, v in amounts.items()})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Holders:
    """What holds the resources a waiting request needs, by kind."""

    def __init__(self) -> None:
        self.actors: Counter[str] = Counter()
        self.actor_amounts: dict[str, float] = {}
        self.running_tasks = 0  # tasks that will give them back when they finish
        self.blocked_tasks = 0  # tasks blocked in get()/wait() (they lent their CPU)
        self.task_amounts: dict[str, float] = {}
        self.groups: list[str] = []
        self.group_amounts: dict[str, float] = {}

    def describe(self) -> str:
        parts = []
        if self.actors:
            names = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in self.actors.most_common())
            parts.append(f"{_plural(sum(self.actors.values()), 'actor')} ({names}) holding "
                         f"{_fmt(self.actor_amounts)}")
        tasks = self.running_tasks + self.blocked_tasks
        if tasks:
            blocked = (f", {self.blocked_tasks} of them blocked in get()/wait()"
                       if self.blocked_tasks else "")
            parts.append(f"{_plural(tasks, 'task')}{blocked} holding {_fmt(self.task_amounts)}")
        if self.groups:
            parts.append(f"{_plural(len(self.groups), 'placement group')} "
                         f"({', '.join(self.groups)}) reserving {_fmt(self.group_amounts)}")
        return "; ".join(parts) if parts else "nothing aioray knows of"


def _add(into: dict[str, float], held: Mapping[str, float], need: Iterable[str]) -> bool:
    """Add the part of ``held`` that ``need`` asks for; True if there was any."""
    any_ = False
    for k in need:
        v = held.get(k, 0.0)
        if v > 0:
            into[k] = into.get(k, 0.0) + v
            any_ = True
    return any_


class StarvationWatch:
    """Watches the node's pool of one runtime (loop thread)."""

    def __init__(self, rt: Runtime, delay: float) -> None:
        self.rt = rt
        self.delay = delay
        self.warned: set[Shape] = set()
        self._timers: dict[tuple[int, Shape], asyncio.TimerHandle] = {}
        self.closed = False

    def watch(self, pool: ResourcePool) -> None:
        pool.on_wait = self.on_wait

    # -- the hook ------------------------------------------------------------------------
    def on_wait(self, pool: ResourcePool, key: Shape) -> None:
        if self.closed or key in self.warned or (id(pool), key) in self._timers:
            return
        self._schedule(pool, key, self.delay)

    def _schedule(self, pool: ResourcePool, key: Shape, after: float) -> None:
        self._timers[(id(pool), key)] = self.rt.loop.call_later(after, self._check, pool, key)

    def _check(self, pool: ResourcePool, key: Shape) -> None:
        self._timers.pop((id(pool), key), None)
        if self.closed or key in self.warned or pool.closed is not None:
            return
        head = pool.oldest_waiter(key)
        if head is None:
            return  # granted or given up meanwhile; the next wait sets a new timer
        waited = self.rt.loop.time() - head.since
        if waited < self.delay:
            self._schedule(pool, key, self.delay - waited)
            return
        holders = self.holders(pool, head.req)
        if holders.running_tasks:
            self._schedule(pool, key, self.delay)  # queued behind running tasks: progress
            return
        self.warned.add(key)
        _log.warning("%s", self.message(pool, key, head.req, head.who, waited, holders))

    # -- what holds what -----------------------------------------------------------------
    def holders(self, pool: ResourcePool, req: Mapping[str, float]) -> _Holders:
        need = [k for k, v in req.items() if v > 0]
        h = _Holders()
        for st in list(self.rt.actors.actors.values()):
            grant = st.grant
            if grant is not None and _holds(grant, pool) and _add(h.actor_amounts, grant.req,
                                                                   need):
                h.actors[st.ac.__name__] += 1
        for spec in list(self.rt.tasks.tasks.values()):
            grant = spec.grant
            if not _holds(grant, pool):
                continue
            assert grant is not None
            held = dict(grant.req)
            if grant.cpu_lent:
                held.pop("CPU", None)
            if _add(h.task_amounts, held, need):
                if grant.cpu_lent:
                    h.blocked_tasks += 1
                else:
                    h.running_tasks += 1
        for pg in list(self.rt.placement_groups.values()):
            grant = getattr(pg, "grant", None)
            if isinstance(grant, Grant) and _holds(grant, pool) and _add(
                    h.group_amounts, grant.req, need):
                h.groups.append(str(getattr(pg, "label", "?")))
        return h

    def _who(self, pool: ResourcePool, key: Shape, who: str | None) -> str:
        if who is not None:
            return who
        for st in list(self.rt.actors.actors.values()):  # an actor waiting to be created
            if st.grant is None and not st.ready.done() and tuple(
                    sorted(_actor_request(st.opts).items())) == key:
                return f"the actor {st.ac.__name__}"
        return "a task or actor"

    def message(self, pool: ResourcePool, key: Shape, req: Mapping[str, float],
                who: str | None, waited: float, holders: _Holders) -> str:
        n = pool.waiting(key)
        others = f" ({n} requests of this shape are waiting)" if n > 1 else ""
        likely = ("This is likely due to all cluster resources being claimed by actors. "
                  if holders.actors else "")
        free = {k: pool.available.get(k, 0.0) for k in req}
        total = {k: pool.total.get(k, 0.0) for k in req}
        return (
            f"aioray: {self._who(pool, key, who)} cannot be scheduled right now: it requires "
            f"{_fmt(req)} and has waited {waited:.1f} s{others}; the {pool.name} has "
            f"{_fmt(free)} free of {_fmt(total)}. The resources it needs are held by "
            f"{holders.describe()}. {likely}To resolve the issue, consider creating fewer "
            "actors or giving them fewer resources (an actor that mostly waits can use "
            "num_cpus=0), ending actors no longer needed (aioray.kill(handle), or dropping "
            "their handles), or increasing the resources (aioray.init(num_cpus=...)). "
            f"(Warned once per resource shape; {ENV} sets the delay, 0 turns it off.)")

    def close(self) -> None:
        self.closed = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


def _holds(grant: Grant | None, pool: ResourcePool) -> bool:
    return grant is not None and not grant.released and grant.pool is pool


def _actor_request(opts: Mapping[str, Any]) -> dict[str, float]:
    try:
        return resource_request(dict(opts), 0.0)
    except Exception:
        return {}
