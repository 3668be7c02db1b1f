"""Placement groups in the engine: gang-reserve bundles of resources, then schedule tasks and actors into them.

``placement_group(bundles)`` reserves the **sum** of all bundles from the node's resource pool
in one acquire, so a group is either fully reserved or not at all (no partial reservation
holds resources while the rest waits). Once reserved, every bundle is its own
:class:`~aioray._engine.scheduling.resources.ResourcePool`; a task or actor with
``scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)``
acquires its resources from bundle ``i``. Index ``-1`` ("any bundle") takes the first bundle,
in index order, that can grant the request right now; if none can, it waits on every bundle
that could ever fit it and takes the first that frees up.

Choices where a single node differs from a cluster:

* **Infeasible groups** (more than the node has in total, or ``STRICT_SPREAD`` with more than
  one bundle — it needs one node per bundle) warn at creation, ``pg.ready()`` resolves to
  :class:`PlacementGroupInfeasibleError` and ``pg.wait()`` returns False at once (Ray would
  stay pending forever, waiting for an autoscaler). Tasks scheduled into such a group fail
  with the same error.
* ``PACK``, ``SPREAD`` and ``STRICT_PACK`` behave alike: every bundle is on the one node.
* ``remove_placement_group(pg)`` takes effect before it returns: the group's actors are
  killed (``ActorDiedError`` caused by :class:`~aioray.exceptions.ActorPlacementGroupRemoved`),
  its queued and running tasks fail with ``TaskPlacementGroupRemoved`` (running ones are
  stopped, as ``cancel(force=True)`` would), and its resources go back to the node.
* Bundle resources named ``memory`` / ``object_store_memory`` are accepted and not reserved
  (aioray does not account memory).
* Tasks and actors that request no resources (async tasks default to ``num_cpus=0``) do not
  wait for the group to be reserved; give them a resource to gang-schedule them.
* ``placement_group_capture_child_tasks=True`` puts the tasks a *task* submits (with no
  strategy of their own) into the same group, any bundle; tasks submitted by actor methods
  are not captured.
* From worker processes every function here works through the driver.
"""

from __future__ import annotations

import asyncio
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aioray._backend.base import PlacementGroups
from aioray._engine.context import current_actor, current_task
from aioray._engine.scheduling.resources import Grant, ResourcePool
from aioray._engine.states import ActorStatus, GroupScheduling, GroupState
from aioray._handles.placement_group import (
    PlacementGroup,
    PlacementGroupID,
    PlacementGroupInfeasibleError,
)
from aioray._handles.ref import ObjectRef
from aioray._handles.strategies import PlacementGroupSchedulingStrategy
from aioray._objects.ids import new_task_id, object_id
from aioray._objects.serialization import ErrorValue, serialize
from aioray._objects.store import PENDING, ObjectEntry
from aioray.exceptions import (
    ActorDiedError,
    ActorPlacementGroupRemoved,
    PlacementGroupRemovedError,
    TaskPlacementGroupRemoved,
    TaskUnschedulableError,
)

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime

_NOT_RESERVED = frozenset({"memory", "object_store_memory"})
_KEEP_REMOVED = 1000  # removed groups kept for placement_group_table(), per runtime


def pool_for(rt: Runtime, pg: PlacementGroup, index: int) -> ResourcePool:
    """The pool a task or actor in bundle ``index`` (-1: any) of ``pg`` acquires from."""
    st = _state(rt, pg)
    if st is None:
        raise _gone(rt, pg)
    if index == -1:
        return st.any_pool
    if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(st.pools)):
        raise ValueError(f"placement group bundle index {index!r} is invalid. Valid "
                         f"indexes: 0-{len(st.pools) - 1} (or -1 for any bundle).")
    return st.pools[index]


class _AnyBundlePool(ResourcePool):
    """Bundle index -1: acquire from whichever bundle can grant the request first."""

    def __init__(self, group: _GroupState) -> None:
        super().__init__({}, [], name=f"placement group {group.label}")
        self.group = group

    def feasible(self, req: Mapping[str, float]) -> bool:
        return any(p.feasible(req) for p in self.group.pools)

    def describe_infeasible(self, req: Mapping[str, float]) -> str:
        return (f"it requires {dict(req)} but no bundle of placement group "
                f"{self.group.label} is that big (bundles: {self.group.specs})")

    async def acquire(self, req: Mapping[str, float], _reclaim: bool = False) -> Grant:
        if self.closed is not None:
            raise self.closed
        candidates = [p for p in self.group.pools if p.feasible(req)]
        if not candidates:
            raise TaskUnschedulableError(self.describe_infeasible(req))
        for p in candidates:
            if not p._queues and p.closed is None:  # keep each bundle's FIFO order
                grant = p.try_acquire(req)
                if grant is not None:
                    return grant
        waits = [asyncio.ensure_future(p.acquire(req)) for p in candidates]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            _settle(waits, keep=False)
            raise
        return _settle(waits, keep=True)  # type: ignore[return-value]  # keep: never None

    def close(self, error: BaseException) -> None:
        self.closed = error


def _settle(waits: Sequence[asyncio.Future[Grant]], keep: bool) -> Grant | None:
    """Take the first grant (if ``keep``), give back any other, stop the rest waiting."""
    winner: Grant | None = None
    error: BaseException | None = None
    for w in waits:
        if not w.done():
            w.cancel()  # a grant that races this cancel is given back inside acquire()
        elif not w.cancelled():
            exc = w.exception()
            if exc is not None:
                error = error or exc
            elif keep and winner is None:
                winner = w.result()
            else:
                w.result().release()
    if keep and winner is None:
        raise error or RuntimeError("placement group bundle wait ended without a grant")
    return winner


class _GroupState:
    """One placement group in the driver: its bundle pools and its reservation."""

    def __init__(self, rt: Runtime, handle: PlacementGroup, specs: list[dict[str, float]],
                 strategy: str, name: str, lifetime: str | None, namespace: str) -> None:
        self.rt = rt
        self.handle = handle
        self.hex = handle.id.hex()
        self.specs = specs
        self.strategy = strategy
        self.name = name
        self.lifetime = lifetime
        self.namespace = namespace
        self.label = repr(name) if name else self.hex[:12]
        self.requests = [{k: v for k, v in b.items() if v and k not in _NOT_RESERVED}
                         for b in specs]
        self.total: dict[str, float] = {}
        for r in self.requests:
            for k, v in r.items():
                self.total[k] = self.total.get(k, 0.0) + v
        self.pools: list[ResourcePool] = []
        for i, r in enumerate(self.requests):
            pool = ResourcePool(r, [], name=f"bundle {i} of placement group {self.label}")
            pool.available = {k: 0.0 for k in pool.total}  # nothing until reserved
            self.pools.append(pool)
        self.any_pool = _AnyBundlePool(self)
        self.state = GroupState.PENDING
        self.scheduling_state = GroupScheduling.QUEUED
        self.infeasible: str | None = None
        self.grant: Grant | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready_entry = ObjectEntry(object_id(new_task_id(), 0))
        self.created_at = time.monotonic()
        self.latency_ms = 0.0

    # -- loop thread --------------------------------------------------------------------
    def start(self) -> None:
        if self.state is not GroupState.PENDING:
            return
        if self.infeasible is not None:
            err = PlacementGroupInfeasibleError(self.infeasible)
            self.scheduling_state = GroupScheduling.INFEASIBLE
            self._fail_pools(err)
            self.ready_entry.retrieved = True  # reported by the warning already
            self.ready_entry.resolve(ErrorValue(err))
            return
        grant = self.rt.node_pool.try_acquire(self.total) if not self.rt.node_pool._queues \
            else None
        if grant is not None:
            self._reserved(grant)
        else:
            self.task = self.rt.loop.create_task(self._reserve())

    async def _reserve(self) -> None:
        try:
            grant = await self.rt.node_pool.acquire(self.total)
        except asyncio.CancelledError:
            return
        except BaseException as e:  # the node pool closed (shutdown)
            self._fail_pools(e)
            self.ready_entry.resolve(ErrorValue(e))
            return
        if self.state is not GroupState.PENDING:
            grant.release()
            return
        self._reserved(grant)

    def _reserved(self, grant: Grant) -> None:
        self.grant = grant
        self.state = GroupState.CREATED
        self.scheduling_state = GroupScheduling.FINISHED
        self.latency_ms = (time.monotonic() - self.created_at) * 1000.0
        for pool, gpu_ids in zip(self.pools, _split_gpus(grant, self.requests), strict=True):
            pool._gpu_free = gpu_ids
            pool.available = dict(pool.total)
        self.ready_entry.resolve(serialize(self.handle, self.rt.driver_pid))
        for pool in self.pools:
            pool._dispatch()

    def _fail_pools(self, err: BaseException) -> None:
        for pool in self.pools:
            pool.close(err)
        self.any_pool.close(err)

    def remove(self) -> None:
        """``remove_placement_group``: kill what runs in the group, free its resources."""
        if self.state is GroupState.REMOVED:
            return
        err = TaskPlacementGroupRemoved(
            f"Placement group {self.label} was removed (remove_placement_group).")
        self._close(err)
        rt = self.rt
        for actor in list(rt.actors.actors.values()):
            if _group_of(actor.opts) == self.handle:
                task = getattr(actor, "create_task", None)
                if actor.status is ActorStatus.PENDING and task is not None and not task.done():
                    task.cancel()
                actor._die(ActorDiedError(
                    f"The actor was killed because its placement group {self.label} was "
                    "removed.", actor_id=actor.actor_id.hex(),
                    cause=ActorPlacementGroupRemoved(
                        f"Placement group {self.label} was removed (remove_placement_group).")))
        mine = {id(p) for p in self.pools} | {id(self.any_pool)}
        for spec in list(rt.tasks.tasks.values()):
            if id(spec.pool) in mine or _group_of(spec.opts) == self.handle:
                spec.fail(err)
                rt.tasks.cancel(spec.task_id, True, True)
        _forget(rt, self)

    def _close(self, error: BaseException) -> None:
        """Fail waiters and give the reservation back (removal, runtime shutdown)."""
        if self.state is GroupState.REMOVED:
            return
        self.state = GroupState.REMOVED
        self.scheduling_state = GroupScheduling.REMOVED
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._fail_pools(error)
        self.ready_entry.retrieved = True
        self.ready_entry.resolve(ErrorValue(error))
        if self.grant is not None:
            self.grant.release()
            self.grant = None

    # -- any thread -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        created = self.state is GroupState.CREATED
        return {
            "placement_group_id": self.hex,
            "name": self.name,
            "bundles": {i: dict(b) for i, b in enumerate(self.specs)},
            "bundles_to_node_id": {i: self.rt.node_id if created else ""
                                   for i in range(len(self.specs))},
            "strategy": self.strategy,
            "state": self.state.value,
            "lifetime": self.lifetime,
            "stats": {
                "end_to_end_creation_latency_ms": self.latency_ms,
                "scheduling_latency_ms": self.latency_ms,
                "scheduling_attempt": 1,
                "highest_retry_delay_ms": 0,
                "scheduling_state": self.scheduling_state.value,
            },
        }


def _split_gpus(grant: Grant, requests: list[dict[str, float]]) -> list[dict[int, float]]:
    """Hand the GPU devices the node granted to the bundles (whole devices first come,
    fractions share a device while it has room)."""
    ids = list(grant.gpu_ids)
    out: list[dict[int, float]] = []
    cursor, left = 0, 1.0
    for req in requests:
        g = req.get("GPU", 0.0)
        mine: dict[int, float] = {}
        if g >= 1:
            if left < 1.0:
                cursor, left = cursor + 1, 1.0
            for _ in range(round(g)):
                if cursor < len(ids):
                    mine[ids[cursor]] = 1.0
                cursor += 1
        elif g > 0:
            if left + 1e-9 < g:
                cursor, left = cursor + 1, 1.0
            if cursor < len(ids):
                mine[ids[cursor]] = g
            left -= g
        out.append(mine)
    return out


class _Registry:
    """Per-runtime bookkeeping beside ``rt.placement_groups`` (live groups, by id hex)."""

    def __init__(self) -> None:
        # id hex -> placement_group_table() entry, kept after removal (bounded)
        self.removed: OrderedDict[str, dict[str, Any]] = OrderedDict()


_REGISTRIES: weakref.WeakKeyDictionary[Any, _Registry] = weakref.WeakKeyDictionary()


def _registry(rt: Runtime) -> _Registry:
    reg = _REGISTRIES.get(rt)
    if reg is None:
        reg = _REGISTRIES[rt] = _Registry()
    return reg


def _forget(rt: Runtime, st: _GroupState) -> None:
    rt.placement_groups.pop(st.hex, None)
    removed = _registry(rt).removed
    removed[st.hex] = st.info()
    while len(removed) > _KEEP_REMOVED:
        removed.popitem(last=False)


def _state(rt: Runtime, pg: PlacementGroup) -> _GroupState | None:
    return rt.placement_groups.get(pg.id.hex())


def _gone(rt: Any, pg: PlacementGroup) -> BaseException:
    if rt is not None and pg.id.hex() in _registry(rt).removed:
        return PlacementGroupRemovedError(f"Placement group {pg.id.hex()[:12]} was removed.")
    return ValueError(f"Unknown placement group {pg.id.hex()}: it was not created by this "
                      "aioray runtime (was aioray shut down and started again?).")


def _group_of(opts: Mapping[str, Any]) -> PlacementGroup | None:
    pg = opts.get("placement_group")
    if not isinstance(pg, PlacementGroup):
        pg = getattr(opts.get("scheduling_strategy"), "placement_group", None)
    return pg if isinstance(pg, PlacementGroup) else None


def captured_opts(parent_opts: Mapping[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """A child task's options: in its parent's group (any bundle) when the parent was
    scheduled with ``placement_group_capture_child_tasks=True`` and the child chose no
    strategy of its own (``"DEFAULT"`` opts out, as in Ray)."""
    if opts.get("placement_group") is not None or opts.get("scheduling_strategy") is not None:
        return opts
    strategy = parent_opts.get("scheduling_strategy")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg, capture = strategy.placement_group, strategy.placement_group_capture_child_tasks
    else:
        pg = parent_opts.get("placement_group")
        capture = parent_opts.get("placement_group_capture_child_tasks")
    if not capture or not isinstance(pg, PlacementGroup) or pg.is_empty:
        return opts
    return {**opts, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=-1, placement_group_capture_child_tasks=True)}


def _create(rt: Runtime, specs: list[dict[str, float]], strategy: str, name: str,
            lifetime: str | None, namespace: str | None) -> tuple[PlacementGroup, str | None]:
    """Register a group and start reserving it (any thread). Returns (handle, infeasible)."""
    rt._check_open()
    ns = namespace or rt.namespace
    if name:
        for other in list(rt.placement_groups.values()):
            if other.name == name and other.namespace == ns:
                raise ValueError(f"A placement group named {name!r} already exists in "
                                 f"namespace {ns!r}; remove it first or pick another name.")
    handle = PlacementGroup(PlacementGroupID.from_random(), [dict(b) for b in specs])
    st = _GroupState(rt, handle, specs, strategy, name, lifetime, ns)
    if strategy == "STRICT_SPREAD" and len(specs) > 1:
        st.infeasible = (
            f"Placement group {st.label} with strategy STRICT_SPREAD needs each of its "
            f"{len(specs)} bundles on a different node, but aioray runs on one node: it can "
            "never be created. Use PACK or SPREAD (all bundles share the node).")
    elif not rt.node_pool.feasible(st.total):
        st.infeasible = (f"Placement group {st.label} can never be created: "
                         f"{rt.node_pool.describe_infeasible(st.total)}.")
    rt.placement_groups[st.hex] = st
    rt.call_soon(st.start)
    return handle, st.infeasible


def _remove_on(rt: Runtime, pg: PlacementGroup) -> None:
    st = _state(rt, pg)
    if st is None:
        if pg.id.hex() in _registry(rt).removed:
            return  # removing twice is harmless
        raise _gone(rt, pg)
    if rt.in_loop_thread():
        st.remove()
        return

    async def on_loop() -> None:
        st.remove()
    rt.run_sync(on_loop(), None, "remove_placement_group()", "remove_placement_group(pg)")


def _get_on(rt: Runtime, name: str, namespace: str | None) -> PlacementGroup:
    ns = namespace or rt.namespace
    groups: list[_GroupState] = list(rt.placement_groups.values())
    for st in groups:
        if st.name == name and st.namespace == ns:
            return st.handle
    names = sorted(st.name for st in groups if st.name and st.namespace == ns)
    raise ValueError(f"Failed to look up placement group with name: {name} (named groups in "
                     f"namespace {ns!r}: {names or 'none'}).")


def _table_on(rt: Runtime, pg: PlacementGroup | None) -> dict[Any, Any]:
    removed = _registry(rt).removed
    live = dict(rt.placement_groups)
    if pg is not None:
        st = live.get(pg.id.hex())
        return st.info() if st is not None else dict(removed.get(pg.id.hex(), {}))
    return {**{h: dict(i) for h, i in removed.items()}, **{h: st.info() for h, st in live.items()}}


class EmbeddedPlacement(PlacementGroups):
    """The engine's placement groups (``Runtime.placement``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        for op, handler in (("pg_create", self._pg_create), ("pg_ready", self._pg_ready),
                            ("pg_remove", self._pg_remove), ("pg_get", self._pg_get),
                            ("pg_table", self._pg_table), ("pg_current", self._pg_current)):
            rt.backchannel.handle(op, handler)

    def create(self, bundles: list[dict[str, float]], strategy: str, name: str,
               lifetime: str | None, bundle_label_selector: Any,
               namespace: str | None = None) -> PlacementGroup:
        handle, infeasible = _create(self.rt, bundles, strategy, name, lifetime, namespace)
        if infeasible is not None:
            warnings.warn(infeasible, stacklevel=3)
        return handle

    def remove(self, pg: PlacementGroup) -> None:
        _remove_on(self.rt, pg)

    def get(self, name: str, namespace: str | None = None) -> PlacementGroup:
        return _get_on(self.rt, name, namespace)

    def table(self, pg: PlacementGroup | None) -> dict[Any, Any]:
        return _table_on(self.rt, pg)

    def current(self) -> PlacementGroup | None:
        spec = current_task.get()
        if spec is not None:
            return _group_of(spec.opts)
        actor = current_actor.get()
        if actor is not None:
            return _group_of(actor.opts)
        return None

    def of_task(self, task_id: bytes) -> PlacementGroup | None:
        spec = self.rt.tasks.tasks.get(task_id)
        return _group_of(spec.opts) if spec is not None else None

    def ready(self, pg: PlacementGroup) -> ObjectRef[Any]:
        st = _state(self.rt, pg)
        if st is None:
            entry = ObjectEntry(object_id(new_task_id(), 0), ErrorValue(_gone(self.rt, pg)))
            entry.retrieved = True
            return ObjectRef(entry.id, entry)
        return ObjectRef(st.ready_entry.id, st.ready_entry)

    def wait(self, pg: PlacementGroup, timeout_seconds: float) -> bool:
        st = _state(self.rt, pg)
        if st is None or st.infeasible is not None:
            return False
        entry = st.ready_entry
        if entry.value is PENDING:
            self.rt.run_sync(self.rt.wait_entries([entry], timeout=timeout_seconds), None,
                             "PlacementGroup.wait()", "await pg.wait_async(timeout_seconds)")
        return st.state is GroupState.CREATED

    def infeasible_reason(self, pg: PlacementGroup) -> str | None:
        st = _state(self.rt, pg)
        return st.infeasible if st is not None else None

    # -- the same operations for worker processes (back-channel requests) ----------------
    async def _pg_create(self, worker: Any, specs: list[dict[str, float]], strategy: str,
                         name: str, lifetime: str | None,
                         namespace: str) -> tuple[PlacementGroup, str | None]:
        return _create(self.rt, specs, strategy, name, lifetime, namespace)

    async def _pg_ready(self, worker: Any, pg: PlacementGroup) -> bytes:
        ref = self.ready(pg)
        return self.rt.backchannel.lend(worker, ref)

    async def _pg_remove(self, worker: Any, pg: PlacementGroup) -> None:
        _remove_on(self.rt, pg)

    async def _pg_get(self, worker: Any, name: str, namespace: str) -> PlacementGroup:
        return _get_on(self.rt, name, namespace)

    async def _pg_table(self, worker: Any, pg: PlacementGroup | None) -> dict[Any, Any]:
        return _table_on(self.rt, pg)

    async def _pg_current(self, worker: Any, task_id: bytes) -> PlacementGroup | None:
        if worker.host is not None:  # the worker hosts an actor: the actor's group
            return _group_of(worker.host.state.opts)
        return self.of_task(task_id)
