"""Scheduling strategies: Ray's ``scheduling_strategy=`` values, on aioray's single node.

* ``"DEFAULT"`` / ``"SPREAD"`` / ``None``: run on the node's resource pool (with one node,
  spreading has nowhere else to go).
* :class:`PlacementGroupSchedulingStrategy`: take resources from a placement group's bundle
  (see :mod:`aioray.util.placement_group`).
* :class:`NodeAffinitySchedulingStrategy`: the runtime's own node id, or any id with
  ``soft=True``; a hard affinity to another node can never be satisfied and is an error.
* :class:`NodeLabelSchedulingStrategy`: accepted and ignored (the one node matches any labels
  as far as aioray is concerned).
"""

from __future__ import annotations

from typing import Any

from aioray._backend import registry
from aioray._handles.placement_group import PlacementGroup
from aioray.exceptions import TaskUnschedulableError

__all__ = [
    "DoesNotExist",
    "Exists",
    "In",
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "NotIn",
    "PlacementGroupSchedulingStrategy",
    "SchedulingStrategyT",
]

STRING_STRATEGIES = ("DEFAULT", "SPREAD")


class PlacementGroupSchedulingStrategy:
    """Run a task or actor in a placement group's bundle.

    ``placement_group_bundle_index=-1`` means any bundle with room (aioray picks the first one,
    in index order, that can grant the request; see :mod:`aioray.util.placement_group`).
    ``placement_group_capture_child_tasks`` is accepted for compatibility.
    """

    def __init__(self, placement_group: PlacementGroup | None,
                 placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        if placement_group is not None and not isinstance(placement_group, PlacementGroup):
            raise TypeError(
                "PlacementGroupSchedulingStrategy expects a PlacementGroup (from "
                f"aioray.util.placement_group(...)), got {type(placement_group).__name__}.")
        index = placement_group_bundle_index
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}.")
        if placement_group is None or placement_group.is_empty:
            if index != -1:
                raise ValueError("If placement group is not set, the value of bundle index "
                                 "must be -1.")
        elif index < -1 or index >= placement_group.bundle_count:
            raise ValueError(
                f"placement group bundle index {index} is invalid. Valid placement group "
                f"indexes: 0-{placement_group.bundle_count - 1} (or -1 for any bundle).")
        self.placement_group = placement_group
        self.placement_group_bundle_index = index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")


class NodeAffinitySchedulingStrategy:
    """Run on a particular node. aioray has one node: its id is
    ``aioray.get_runtime_context().get_node_id()`` (also ``aioray.nodes()[0]["NodeID"]``).
    Any other id is an error unless ``soft=True`` (then the task runs here anyway)."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        if not isinstance(node_id, str):
            node_id = node_id.hex()
        try:
            valid = bool(node_id) and int(node_id, 16) != 0
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(
                f"Invalid node_id {node_id!r}. Node ID must be a valid hex string; "
                "aioray.get_runtime_context().get_node_id() gives this node's id.")
        if _spill_on_unavailable and not soft:
            raise ValueError("_spill_on_unavailable cannot be set when soft is False. Please "
                             "set soft to True to use _spill_on_unavailable.")
        if _fail_on_unavailable and soft:
            raise ValueError("_fail_on_unavailable cannot be set when soft is True. Please "
                             "set soft to False to use _fail_on_unavailable.")
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def check_single_node(self, node_id: str) -> None:
        """Raise if this affinity can never be satisfied on a runtime whose one node is
        ``node_id``."""
        if self.soft or self.node_id == node_id:
            return
        raise TaskUnschedulableError(
            f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft=False) can never "
            f"be satisfied: aioray runs on one node, whose id is {node_id!r} "
            "(aioray.get_runtime_context().get_node_id()). Use that id, or soft=True.")

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


def _check_values(values: tuple[Any, ...], operator: str) -> None:
    if not values:
        raise ValueError(f"The variadic parameter of the {operator} operator must be a "
                         f'non-empty tuple: e.g. {operator}("value1", "value2").')
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"Type of value in position {i} for the {operator} operator must "
                             f"be str but got {v!r} of type {type(v).__name__}.")


class In:
    """Label value is one of ``values``."""

    def __init__(self, *values: str) -> None:
        _check_values(values, "In")
        self.values = list(values)


class NotIn:
    """Label value is none of ``values``."""

    def __init__(self, *values: str) -> None:
        _check_values(values, "NotIn")
        self.values = list(values)


class Exists:
    """Label is present."""


class DoesNotExist:
    """Label is absent."""


_OPERATORS = (In, NotIn, Exists, DoesNotExist)


def _expressions(exprs: Any, param: str) -> dict[str, Any]:
    if exprs is None:
        return {}
    if not isinstance(exprs, dict):
        raise ValueError(f'The {param} parameter must be a map (e.g. {{"key1": In("value1")}}) '
                         f"but got type {type(exprs).__name__}.")
    for k, v in exprs.items():
        if not isinstance(k, str):
            raise ValueError(f"The map key of the {param} parameter must be of type str but got "
                             f"{k!r}.")
        if not isinstance(v, _OPERATORS):
            raise ValueError(f"The map value for key {k} of the {param} parameter must be one of "
                             f"the In, NotIn, Exists or DoesNotExist operators, got {v!r}.")
    return dict(exprs)


class NodeLabelSchedulingStrategy:
    """Label-based node selection. Validated like Ray, then ignored: aioray has one node."""

    def __init__(self, hard: dict[str, Any], *, soft: dict[str, Any] | None = None) -> None:
        self.hard = _expressions(hard, "hard")
        self.soft = _expressions(soft, "soft")
        if not (self.hard or self.soft):
            raise ValueError("The `hard` and `soft` parameter of NodeLabelSchedulingStrategy "
                             "cannot both be empty.")


SchedulingStrategyT = (
    "None | str | PlacementGroupSchedulingStrategy | NodeAffinitySchedulingStrategy | "
    "NodeLabelSchedulingStrategy"
)

_CLASSES = (PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy,
            NodeLabelSchedulingStrategy)


def check_strategy(strategy: Any) -> None:
    """Validate a ``scheduling_strategy`` option value (called from option validation).

    In the driver, a hard node affinity to another node fails here, at ``.options()`` time;
    elsewhere (worker processes) it fails when the task is scheduled."""
    if strategy is None:
        return
    if isinstance(strategy, str):
        if strategy not in STRING_STRATEGIES:
            raise ValueError(
                f"Invalid scheduling_strategy {strategy!r}: strings must be one of "
                f"{', '.join(map(repr, STRING_STRATEGIES))}; or pass a "
                "PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy or "
                "NodeLabelSchedulingStrategy from aioray.util.scheduling_strategies.")
        return
    if not isinstance(strategy, _CLASSES):
        raise TypeError(
            f"Invalid scheduling_strategy of type {type(strategy).__name__}: use None, "
            "'DEFAULT', 'SPREAD', or a PlacementGroupSchedulingStrategy, "
            "NodeAffinitySchedulingStrategy or NodeLabelSchedulingStrategy from "
            "aioray.util.scheduling_strategies.")
    backend = registry.installed()
    if backend is not None:
        try:
            backend.check_strategy(strategy)
        except TaskUnschedulableError as e:
            raise ValueError(str(e)) from None
