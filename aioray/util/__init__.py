"""``aioray.util``: Ray's ``ray.util`` helpers — ActorPool, Queue, placement groups,
scheduling strategies, ``as_completed``/``map_unordered`` and ``inspect_serializability`` —
on aioray's runtime.

``aioray.util.placement_group`` is the function (as in Ray); the module of the same name is
importable as ``from aioray.util.placement_group import PlacementGroup``.
"""

from typing import Any

from aioray._backend import registry
from aioray.util import actor_pool, queue, scheduling_strategies
from aioray.util.actor_pool import ActorPool
from aioray.util.check_serialize import inspect_serializability
from aioray.util.helpers import as_completed, map_unordered
from aioray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """The live named actors (Ray's ``ray.util.list_named_actors``): their names in the
    current namespace, or with ``all_namespaces=True`` a ``{"name", "namespace"}`` dict each."""
    return registry.current().list_named_actors(all_namespaces)


def get_node_ip_address() -> str:
    """The IP address of this node (Ray's ``ray.util.get_node_ip_address``): aioray runs on
    one local node, which ``aioray.nodes()`` reports as 127.0.0.1."""
    return "127.0.0.1"


__all__ = [
    "ActorPool",
    "PlacementGroup",
    "actor_pool",
    "as_completed",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "map_unordered",
    "placement_group",
    "placement_group_table",
    "queue",
    "remove_placement_group",
    "scheduling_strategies",
]
