"""Placement groups (gang reservation, bundles as resource pools, removal, infeasible groups,
worker processes) and scheduling strategies on aioray's single node."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

import aioray
import aioray as ray
from aioray.exceptions import PlacementGroupRemovedError
from aioray.util import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from aioray.util.placement_group import PlacementGroup, PlacementGroupInfeasibleError
from aioray.util.scheduling_strategies import (
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

TIMEOUT = 30


def in_bundle(pg: PlacementGroup, index: int = -1) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)


@ray.remote
class Gate:
    """Async actor: ``wait(k)`` returns once ``open(k)`` was called; counts who is waiting."""

    def __init__(self) -> None:
        self.events: dict[Any, asyncio.Event] = {}
        self.waiting: list[Any] = []

    def _ev(self, key: Any) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    async def wait(self, key: Any) -> Any:
        self.waiting.append(key)
        await self._ev(key).wait()
        return key

    async def open(self, key: Any) -> None:
        self._ev(key).set()

    async def started(self) -> list[Any]:
        return list(self.waiting)


@ray.remote(num_cpus=1)
async def hold(gate: Any, key: Any) -> Any:
    """Holds one CPU of wherever it runs until ``gate.open(key)``. An async task does not lend
    its CPU while it awaits an actor call (only ``get``/``wait`` do), so it truly holds it."""
    fut = asyncio.get_running_loop().create_future()
    ref = gate.wait.remote(key)
    ref._entry.add_callback(lambda: fut.done() or fut.set_result(None))
    await fut
    return key


def wait_started(gate: Any, n: int) -> list[Any]:
    deadline = time.monotonic() + TIMEOUT
    while len(started := ray.get(gate.started.remote())) < n:
        assert time.monotonic() < deadline, started
        time.sleep(0.01)
    return started


# -- creation, ready, wait, table ---------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_create_ready_and_describe() -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 0.5, "memory": 100}], strategy="STRICT_PACK",
                         name="pg1")
    assert ray.get(pg.ready(), timeout=TIMEOUT) == pg
    assert pg.wait(TIMEOUT) is True
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 0.5, "memory": 100.0}]
    assert pg.bundle_count == 2
    assert isinstance(pg.id.hex(), str) and not pg.is_empty
    info = placement_group_table(pg)
    assert info["placement_group_id"] == pg.id.hex()
    assert info["name"] == "pg1"
    assert info["state"] == "CREATED"
    assert info["strategy"] == "STRICT_PACK"
    assert info["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 0.5, "memory": 100.0}}
    node = ray.get_runtime_context().get_node_id()
    assert set(info["bundles_to_node_id"].values()) == {node}
    assert pg.id.hex() in placement_group_table()
    # The reservation comes out of the node ("memory" is not accounted).
    assert ray.available_resources().get("CPU", 0) == pytest.approx(0.5)
    assert get_placement_group("pg1") == pg
    assert get_current_placement_group() is None  # the driver is in no group


async def test_ready_is_awaitable_and_wait_async(aray: Any) -> None:
    pg = placement_group([{"CPU": 1}])
    assert await pg.ready() == pg
    assert await pg.wait_async(TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_gang_reservation_is_all_or_nothing() -> None:
    small = placement_group([{"CPU": 1}])
    assert small.wait(TIMEOUT)
    big = placement_group([{"CPU": 1}, {"CPU": 1}])  # needs 2, only 1 is free
    assert big.wait(0.1) is False
    assert placement_group_table(big)["state"] == "PENDING"
    # No partial reservation: the free CPU is not held by the pending group...
    assert ray.available_resources().get("CPU", 0) == pytest.approx(1.0)

    @ray.remote(num_cpus=1)
    def f() -> int:
        return 1

    # ...but, as for a big task, requests made after the group queue behind it (the
    # scheduler's FIFO rule: a gang is not starved by a stream of small tasks).
    later = f.remote()
    ready, _ = ray.wait([later], timeout=0.1)
    assert not ready
    remove_placement_group(small)
    assert ray.get(big.ready(), timeout=TIMEOUT) == big
    assert ray.available_resources().get("CPU", 0) == pytest.approx(0.0)
    remove_placement_group(big)
    assert ray.get(later, timeout=TIMEOUT) == 1


# -- tasks and actors in bundles ---------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_tasks_use_the_bundle_resources() -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(TIMEOUT)
    gate = Gate.remote()
    a = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(gate, "a")
    b = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(gate, "b")  # bundle 0 full
    c = hold.options(scheduling_strategy=in_bundle(pg, 1)).remote(gate, "c")
    assert sorted(wait_started(gate, 2)) == ["a", "c"]
    ready, _ = ray.wait([b], timeout=0.1)
    assert not ready and sorted(ray.get(gate.started.remote())) == ["a", "c"]
    ray.get(gate.open.remote("a"))
    assert ray.get(a, timeout=TIMEOUT) == "a"
    assert "b" in wait_started(gate, 3)  # b got bundle 0 once a left it
    for k in ("b", "c"):
        ray.get(gate.open.remote(k))
    assert ray.get([b, c], timeout=TIMEOUT) == ["b", "c"]


@pytest.mark.usefixtures("ray")
def test_bundle_index_minus_one_takes_any_bundle_with_room() -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(TIMEOUT)
    gate = Gate.remote()
    refs = [hold.options(scheduling_strategy=in_bundle(pg)).remote(gate, k) for k in "xyz"]
    assert len(wait_started(gate, 2)) == 2  # one per bundle
    ready, _ = ray.wait(refs, timeout=0.1)
    assert not ready and len(ray.get(gate.started.remote())) == 2
    first = ray.get(gate.started.remote())
    ray.get(gate.open.remote(first[0]))
    assert len(wait_started(gate, 3)) == 3  # the third took the freed bundle
    for k in "xyz":
        ray.get(gate.open.remote(k))
    assert ray.get(refs, timeout=TIMEOUT) == ["x", "y", "z"]


@pytest.mark.usefixtures("ray")
def test_request_bigger_than_the_bundle_is_unschedulable() -> None:
    pg = placement_group([{"CPU": 1}])

    @ray.remote(num_cpus=2)
    def big() -> None:
        pass

    with pytest.warns(UserWarning, match="can never run"):
        ref = big.options(scheduling_strategy=in_bundle(pg, 0)).remote()
        with pytest.raises(ray.exceptions.TaskUnschedulableError):
            ray.get(ref, timeout=TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_actors_in_bundles_and_legacy_options() -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])

    @ray.remote(num_cpus=1)
    class A:
        def pg(self) -> Any:
            return get_current_placement_group()

    a = A.options(scheduling_strategy=in_bundle(pg, 0)).remote()
    b = A.options(placement_group=pg, placement_group_bundle_index=1).remote()
    assert ray.get([a.pg.remote(), b.pg.remote()], timeout=TIMEOUT) == [pg, pg]
    assert ray.available_resources().get("CPU", 0) == 0


@pytest.mark.usefixtures("ray")
def test_current_placement_group_in_tasks_of_every_kind() -> None:
    pg = placement_group([{"CPU": 1}])

    @ray.remote
    def in_worker() -> Any:
        return os.getpid(), get_current_placement_group()

    @ray.remote
    async def on_loop() -> Any:
        return get_current_placement_group()

    pid, got = ray.get(in_worker.options(scheduling_strategy=in_bundle(pg)).remote(),
                       timeout=TIMEOUT)
    assert pid != os.getpid() and got == pg
    assert ray.get(on_loop.options(scheduling_strategy=in_bundle(pg, 0)).remote()) == pg
    assert ray.get(in_worker.remote(), timeout=TIMEOUT)[1] is None


# -- removal ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_remove_kills_actors_and_fails_tasks() -> None:
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(TIMEOUT)
    gate = Gate.remote()

    @ray.remote
    class Member:
        def ping(self) -> str:
            return "pong"

    cpu_actor = Member.options(num_cpus=1, scheduling_strategy=in_bundle(pg, 0)).remote()
    free_actor = Member.options(scheduling_strategy=in_bundle(pg)).remote()  # 0 CPUs
    assert ray.get([cpu_actor.ping.remote(), free_actor.ping.remote()]) == ["pong", "pong"]
    outsider = Member.remote()
    waiting = Member.options(num_cpus=1, scheduling_strategy=in_bundle(pg, 0)).remote()
    running = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(gate, "r")  # queued
    ray.get(cpu_actor.ping.remote())

    remove_placement_group(pg)
    for actor in (cpu_actor, free_actor, waiting):
        with pytest.raises(ray.exceptions.ActorDiedError) as info:
            ray.get(actor.ping.remote(), timeout=TIMEOUT)
        assert "placement group" in str(info.value)
        assert isinstance(info.value.cause, ray.exceptions.ActorPlacementGroupRemoved)
    with pytest.raises(ray.exceptions.TaskPlacementGroupRemoved):  # Ray's name
        ray.get(running, timeout=TIMEOUT)
    assert ray.get(outsider.ping.remote()) == "pong"
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2.0)


@pytest.mark.usefixtures("ray")
def test_remove_stops_running_tasks() -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    gate = Gate.remote()

    @ray.remote
    def sleeper(gate: Any) -> str:
        ray.get(gate.wait.remote("never"))
        return "finished"

    on_loop = hold.options(scheduling_strategy=in_bundle(pg, 0)).remote(gate, "held")
    in_worker = sleeper.options(scheduling_strategy=in_bundle(pg, 1)).remote(gate)
    wait_started(gate, 2)
    remove_placement_group(pg)
    for ref in (on_loop, in_worker):
        with pytest.raises(PlacementGroupRemovedError):
            ray.get(ref, timeout=TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_after_removal() -> None:
    pg = placement_group([{"CPU": 1}], name="gone")
    assert pg.wait(TIMEOUT)
    remove_placement_group(pg)
    remove_placement_group(pg)  # twice is harmless
    assert pg.wait(1) is False
    with pytest.raises(PlacementGroupRemovedError):
        ray.get(pg.ready(), timeout=TIMEOUT)

    @ray.remote
    def f() -> int:
        return 1

    with pytest.raises(PlacementGroupRemovedError):
        ray.get(f.options(scheduling_strategy=in_bundle(pg, 0)).remote(), timeout=TIMEOUT)

    @ray.remote
    class A:
        def f(self) -> int:
            return 1

    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(A.options(scheduling_strategy=in_bundle(pg)).remote().f.remote(),
                timeout=TIMEOUT)
    with pytest.raises(ValueError, match="gone"):
        get_placement_group("gone")
    assert placement_group_table()[pg.id.hex()]["state"] == "REMOVED"
    again = placement_group([{"CPU": 1}], name="gone")  # the name is free again
    assert again.wait(TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_remove_a_pending_group() -> None:
    with pytest.warns(UserWarning, match="never be created"):
        too_big = placement_group([{"CPU": 5}])
    assert too_big.wait(0) is False
    blocker = placement_group([{"CPU": 2}])
    assert blocker.wait(TIMEOUT)
    waiting = placement_group([{"CPU": 1}])
    remove_placement_group(waiting)
    with pytest.raises(PlacementGroupRemovedError):
        ray.get(waiting.ready(), timeout=TIMEOUT)
    remove_placement_group(blocker)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2.0)


# -- infeasible groups --------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_strict_spread_needs_one_node_per_bundle() -> None:
    one = placement_group([{"CPU": 1}], strategy="STRICT_SPREAD")
    assert one.wait(TIMEOUT)
    with pytest.warns(UserWarning, match="STRICT_SPREAD"):
        pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    assert pg.wait(TIMEOUT) is False  # at once: it can never be created
    with pytest.raises(PlacementGroupInfeasibleError, match="one node"):
        ray.get(pg.ready(), timeout=TIMEOUT)
    info = placement_group_table(pg)
    assert info["state"] == "PENDING" and info["stats"]["scheduling_state"] == "INFEASIBLE"

    @ray.remote
    def f() -> int:
        return 1

    with pytest.raises(PlacementGroupInfeasibleError):
        ray.get(f.options(num_cpus=0.5, scheduling_strategy=in_bundle(pg, 0)).remote(),
                timeout=TIMEOUT)
    remove_placement_group(pg)


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="RANDOM")
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="must be a list"):
        placement_group({"CPU": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty dictionary"):
        placement_group([{}])
    with pytest.raises(ValueError, match="only 0"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(ValueError):
        get_placement_group("")
    with pytest.raises(ValueError, match="nope"):
        get_placement_group("nope")
    pg = placement_group([{"CPU": 1}], name="dup", lifetime="detached")
    with pytest.raises(ValueError, match="already exists"):
        placement_group([{"CPU": 1}], name="dup")
    with pytest.raises(ValueError, match="bundle index 1 is invalid"):
        PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
    with pytest.raises(TypeError):
        PlacementGroupSchedulingStrategy("pg")  # type: ignore[arg-type]
    assert placement_group_table(pg)["lifetime"] == "detached"


# -- worker processes -------------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_placement_groups_from_a_worker_process() -> None:
    @ray.remote(num_cpus=0.5)
    def child() -> Any:
        return get_current_placement_group()

    @ray.remote
    def manage() -> Any:
        pg = placement_group([{"CPU": 0.5}], name="from-worker")
        ok = pg.wait(TIMEOUT)
        ready = ray.get(pg.ready()) == pg
        found = get_placement_group("from-worker") == pg
        state = placement_group_table(pg)["state"]
        inner = ray.get(child.options(scheduling_strategy=in_bundle(pg, 0)).remote())
        remove_placement_group(pg)
        return os.getpid(), ok, ready, found, state, inner == pg, placement_group_table(
            pg)["state"]

    pid, *rest = ray.get(manage.options(num_cpus=0.5).remote(), timeout=TIMEOUT)
    assert pid != os.getpid()
    assert rest == [True, True, True, "CREATED", True, "REMOVED"]


@pytest.mark.usefixtures("ray")
def test_a_group_passed_to_a_worker_schedules_children_into_it() -> None:
    pg = placement_group([{"CPU": 1}])

    @ray.remote
    def child() -> Any:
        return get_current_placement_group()

    @ray.remote(num_cpus=0)
    def parent(pg: PlacementGroup) -> Any:
        return ray.get(child.options(scheduling_strategy=in_bundle(pg, 0)).remote())

    assert ray.get(parent.remote(pg), timeout=TIMEOUT) == pg


@pytest.mark.usefixtures("ray")
def test_gpu_bundles_get_distinct_devices() -> None:
    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2)
    pg = placement_group([{"GPU": 1}, {"GPU": 1}])

    @ray.remote(num_cpus=0, num_gpus=1, executor="thread")
    def gpus() -> list[int]:
        return ray.get_gpu_ids()

    ids = ray.get([gpus.options(scheduling_strategy=in_bundle(pg, i)).remote()
                   for i in (0, 1)], timeout=TIMEOUT)
    assert sorted(ids) == [[0], [1]]


# -- scheduling strategies ----------------------------------------------------------------------
@pytest.mark.usefixtures("ray")
def test_string_and_label_strategies() -> None:
    @ray.remote
    def f() -> int:
        return 1

    @ray.remote
    class A:
        def f(self) -> int:
            return 2

    labels = NodeLabelSchedulingStrategy({"region": In("us")})
    for s in ("DEFAULT", "SPREAD", None, labels):
        assert ray.get(f.options(scheduling_strategy=s).remote(), timeout=TIMEOUT) == 1
        assert ray.get(A.options(scheduling_strategy=s).remote().f.remote()) == 2
    with pytest.raises(ValueError, match="DEFAULT"):
        f.options(scheduling_strategy="PACK")
    with pytest.raises(TypeError, match="scheduling_strategy"):
        f.options(scheduling_strategy=42)
    with pytest.raises(ValueError):
        NodeLabelSchedulingStrategy({})
    with pytest.raises(ValueError):
        In()


@pytest.mark.usefixtures("ray")
def test_node_affinity() -> None:
    node = ray.get_runtime_context().get_node_id()
    other = "ab" * 16

    @ray.remote
    def f() -> int:
        return 1

    @ray.remote
    class A:
        def f(self) -> int:
            return 2

    here = NodeAffinitySchedulingStrategy(node, soft=False)
    assert ray.get(f.options(scheduling_strategy=here).remote(), timeout=TIMEOUT) == 1
    assert ray.get(A.options(scheduling_strategy=here).remote().f.remote()) == 2
    soft = NodeAffinitySchedulingStrategy(other, soft=True)
    assert ray.get(f.options(scheduling_strategy=soft).remote(), timeout=TIMEOUT) == 1
    hard = NodeAffinitySchedulingStrategy(other, soft=False)
    with pytest.raises(ValueError, match="one node"):
        f.options(scheduling_strategy=hard)
    with pytest.raises(ValueError, match="one node"):
        A.options(scheduling_strategy=hard)
    with pytest.raises(ValueError, match="hex"):
        NodeAffinitySchedulingStrategy("not-hex", soft=False)

    @ray.remote
    def from_worker(strategy: Any) -> Any:
        return ray.get(f.options(scheduling_strategy=strategy).remote())

    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="one node"):
        ray.get(from_worker.remote(hard), timeout=TIMEOUT)


@pytest.mark.usefixtures("ray")
def test_capture_child_tasks() -> None:
    pg = placement_group([{"CPU": 1}])  # the node keeps one CPU for uncaptured children

    @ray.remote(num_cpus=1)
    def child() -> Any:
        return get_current_placement_group()

    @ray.remote(num_cpus=0)
    def parent(default: bool) -> Any:
        c = child.options(scheduling_strategy="DEFAULT") if default else child
        return ray.get(c.remote())

    @ray.remote(num_cpus=0)
    async def async_parent() -> Any:
        return await child.remote()

    capture = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    plain = PlacementGroupSchedulingStrategy(pg)
    assert ray.get(parent.options(scheduling_strategy=capture).remote(False),
                   timeout=TIMEOUT) == pg
    assert ray.get(async_parent.options(scheduling_strategy=capture).remote(),
                   timeout=TIMEOUT) == pg
    assert ray.get(parent.options(scheduling_strategy=capture).remote(True),
                   timeout=TIMEOUT) is None  # "DEFAULT" opts out
    assert ray.get(parent.options(scheduling_strategy=plain).remote(False),
                   timeout=TIMEOUT) is None
    legacy = parent.options(placement_group=pg, placement_group_capture_child_tasks=True)
    assert ray.get(legacy.remote(False), timeout=TIMEOUT) == pg


def test_rays_placement_group_checks() -> None:
    """What Ray refuses or warns about at once: the reserved "bundle" resource, an actor with
    default options in a group without CPU (Ray schedules it with 1 CPU), and the deprecated
    placement_group= / object_store_memory options."""
    import warnings

    from aioray.exceptions import RaySystemError
    from aioray.util.placement_group import placement_group
    from aioray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    aioray.init(num_cpus=2, resources={"R": 2})
    with pytest.raises(RaySystemError, match="bundle is a system reserved resource"):
        placement_group([{"bundle": 1}])

    @aioray.remote
    class A:
        def ready(self) -> bool:
            return True

    no_cpu = placement_group([{"R": 1}])
    strategy = PlacementGroupSchedulingStrategy(placement_group=no_cpu)
    with pytest.raises(ValueError, match="requires 1 CPU for creation"):
        A.options(scheduling_strategy=strategy).remote()
    assert aioray.get(A.options(scheduling_strategy=strategy, num_cpus=0).remote()
                      .ready.remote(), timeout=30)
    with_cpu = placement_group([{"CPU": 1}])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        A.options(placement_group=with_cpu, placement_group_bundle_index=0)
        A.options(object_store_memory=100)
    messages = [str(w.message) for w in seen if w.category is DeprecationWarning]
    assert any(m.startswith("placement_group parameter is deprecated") for m in messages)
    assert any(m.startswith("placement_group_bundle_index parameter") for m in messages)
    assert any("'object_store_memory' for actors is deprecated" in m for m in messages)


def test_rays_phrases_in_actor_errors(ray: Any) -> None:
    """Ray's tests match on these phrases of its messages."""
    from aioray.exceptions import ActorDiedError

    @aioray.remote
    class B:
        def ping(self) -> int:
            return 1

        def bye(self) -> None:
            aioray.actor.exit_actor()

    a = B.remote()
    aioray.get(a.ping.remote())
    aioray.kill(a)
    with pytest.raises(ActorDiedError, match=r"it was killed by `ray\.kill"):
        aioray.get(a.ping.remote(), timeout=30)
    with pytest.raises(ActorDiedError, match="INTENDED_USER_EXIT"):
        aioray.get(B.remote().bye.remote(), timeout=30)
    with pytest.raises(aioray.exceptions.ActorClassInheritanceException,
                       match=r"Inheriting from actor classes is not currently supported\."):
        class C(B):  # type: ignore[misc,valid-type]
            pass


def test_validators_raise_rays_errors() -> None:
    """``validate_placement_group`` and the bundle checks Ray keeps beside it (its tests import
    them): the same errors ``placement_group()`` raises, without creating anything."""
    from aioray.util.placement_group import (
        VALID_PLACEMENT_GROUP_STRATEGIES,
        _validate_bundle_label_selector,
        _validate_bundles,
        validate_placement_group,
    )
    for strategy in VALID_PLACEMENT_GROUP_STRATEGIES:
        assert validate_placement_group([{"CPU": 1}], strategy=strategy) is True
    bad: list[tuple[Any, str]] = [
        (lambda: validate_placement_group([{"CPU": 1}], strategy="ANY"),
         "Invalid placement group strategy"),
        (lambda: validate_placement_group([{"CPU": 1}], lifetime="forever"), "lifetime"),
        (lambda: validate_placement_group([{"CPU": 1}], _soft_target_node_id="ab" * 28),
         "only works with STRICT_PACK"),
        (lambda: validate_placement_group([{"CPU": 1}], bundle_label_selector=[{}, {}]),
         "should equal the length of `bundles`"),
        (lambda: _validate_bundles("not a list"), "must be a list"),
        (lambda: _validate_bundles([]), "must be a non-empty list"),
        (lambda: _validate_bundles([{"CPU": 1}, "x"]), "resource dictionaries"),
        (lambda: _validate_bundles([{8: 7}]), "resource dictionaries"),
        (lambda: _validate_bundles([{"CPU": "6"}]), "resource dictionaries"),
        (lambda: _validate_bundles([{"CPU": 0, "GPU": 0}]), "only 0 values"),
        (lambda: _validate_bundle_label_selector("x"), "must be a list"),
        (lambda: _validate_bundle_label_selector(["x"]), "list of string dictionary"),
        (lambda: _validate_bundle_label_selector([{"k": 1}]), "list of string dictionary"),
        (lambda: _validate_bundle_label_selector([{"INVALID key!": "v"}]),
         "Invalid label selector provided.*key name `INVALID key!`"),
        (lambda: _validate_bundle_label_selector([{"Bad_Prefix/k": "v"}]), "key prefix"),
        (lambda: _validate_bundle_label_selector([{"k": "in(a,,b)"}]), "selector value"),
    ]
    for call, match in bad:
        with pytest.raises(ValueError, match=match):
            call()
    _validate_bundles([{"CPU": 1, "custom-resource": 2.2}, {"GPU": 0.75}])
    _validate_bundle_label_selector([])
    _validate_bundle_label_selector([{"ray.io/market_type": "spot", "zone": "!us-east1",
                                      "acc": "in(A100, H100)", "x": "!in(a)", "y": ""}])
