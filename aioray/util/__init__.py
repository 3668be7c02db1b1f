"""``aioray.util``: Ray's ``ray.util`` helpers — ActorPool, Queue, placement groups and
scheduling strategies — on aioray's runtime.

``aioray.util.placement_group`` is the function (as in Ray); the module of the same name is
importable as ``from aioray.util.placement_group import PlacementGroup``.
"""

from aioray.util import actor_pool, queue, scheduling_strategies
from aioray.util.actor_pool import ActorPool
from aioray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "actor_pool",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "queue",
    "remove_placement_group",
    "scheduling_strategies",
]
