"""Placement groups (``ray.util.placement_group``): gang-reserve bundles of resources, then
schedule tasks and actors into them with ``PlacementGroupSchedulingStrategy``.

Each function forwards to the backend's placement service; on aioray's own runtime the
single-node rules are described in ``aioray._engine.placement`` (infeasible groups fail at once
with :class:`PlacementGroupInfeasibleError` instead of pending forever; removal takes effect
before ``remove_placement_group`` returns). From worker processes every function works through
the driver.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from aioray._backend import registry
from aioray._handles.placement_group import (
    PlacementGroup,
    PlacementGroupID,
    PlacementGroupInfeasibleError,
)
from aioray.exceptions import RaySystemError

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "PlacementGroupInfeasibleError",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
    "validate_placement_group",
]

VALID_PLACEMENT_GROUP_STRATEGIES = frozenset({"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"})


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, _soft_target_node_id: str | None = None,
                    bundle_label_selector: list[dict[str, str]] | None = None
                    ) -> PlacementGroup:
    """Reserve ``bundles`` (a list of resource dicts) as one gang; returns at once.

    ``pg.ready()`` / ``pg.wait()`` tell when the reservation is made. ``strategy`` is one of
    ``PACK``, ``SPREAD``, ``STRICT_PACK``, ``STRICT_SPREAD`` (the last is infeasible with more
    than one bundle on aioray's single node: it warns and ``ready()`` raises).
    ``name`` makes it retrievable with :func:`get_placement_group`. ``lifetime`` (None or
    "detached") is recorded; ``_soft_target_node_id`` and ``bundle_label_selector`` are
    accepted and ignored (one node).
    """
    strategy = "PACK" if strategy is None else strategy
    validate_placement_group(bundles, strategy, lifetime, _soft_target_node_id,
                             bundle_label_selector)
    if not isinstance(name, str):
        raise TypeError(f"Placement group name must be a string, got {name!r}.")
    specs = [{k: float(v) for k, v in b.items()} for b in bundles]
    return registry.current().placement.create(specs, strategy, name, lifetime,
                                               bundle_label_selector)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove a group: its actors die, its tasks fail with ``PlacementGroupRemovedError``
    and its resources return to the node — all done when this returns."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() expects a PlacementGroup, got "
                        f"{type(placement_group).__name__}.")
    registry.current().placement.remove(placement_group)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group named ``placement_group_name`` in the current namespace
    (ValueError if there is none)."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    return registry.current().placement.get(placement_group_name)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[Any, Any]:
    """State of one group (a dict) or of all groups (id hex -> dict), live and removed —
    Ray's keys: placement_group_id, name, bundles, bundles_to_node_id, strategy, state
    (PENDING / CREATED / REMOVED), stats."""
    return registry.current().placement.table(placement_group)


def get_current_placement_group() -> PlacementGroup | None:
    """The group the calling task or actor was scheduled into; None in the driver or when
    it was not scheduled into one."""
    backend = registry.installed()
    return backend.placement.current() if backend is not None else None


def validate_placement_group(bundles: Any, strategy: str | None = None,
                             lifetime: str | None = None,
                             _soft_target_node_id: str | None = None,
                             bundle_label_selector: Any = None) -> bool:
    """Ray's checks of :func:`placement_group`'s arguments: ``ValueError`` naming what is
    wrong, else True."""
    if strategy is not None and strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}. Supported strategies "
                         f"are: {sorted(VALID_PLACEMENT_GROUP_STRATEGIES)}.")
    if _soft_target_node_id and (strategy or "PACK") != "STRICT_PACK":
        raise ValueError("_soft_target_node_id currently only works with STRICT_PACK but got "
                         f"{strategy or 'PACK'}")
    _validate_bundles(bundles)
    if bundle_label_selector is not None:
        if len(bundle_label_selector) != len(bundles):
            raise ValueError(
                f"Invalid bundle label selector {bundle_label_selector}. The length of "
                f"`bundle_label_selector` should equal the length of `bundles`.")
        _validate_bundle_label_selector(bundle_label_selector)
    if lifetime not in (None, "detached"):
        raise ValueError("Placement group `lifetime` argument must be either `None` or "
                         f"'detached'. Got {lifetime}.")
    return True


def _validate_bundles(bundles: Any) -> None:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError('Bundles must be a non-empty list of resource dictionaries. For '
                         'example: `[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    for b in bundles:
        if (not isinstance(b, dict) or not all(isinstance(k, str) for k in b)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in b.values())):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. For '
                             'example: `[{"CPU": 1.0}, {"GPU": 1.0}]`.')
        if not b or all(v == 0 for v in b.values()):
            raise ValueError("Bundles cannot be an empty dictionary or resources with only 0 "
                             f"values. Bundles: {bundles}")
        if any(v < 0 for v in b.values()):
            raise ValueError(f"Bundle resources must be non-negative. Bundles: {bundles}")
        if "bundle" in b:  # Ray's own resource name for placement-group bundles
            raise RaySystemError("System error: bundle is a system reserved resource, which is "
                                 "not allowed to be used in placement group. Rename it.")
        if "object_store_memory" in b:
            warnings.warn("Setting 'object_store_memory' for bundles is deprecated (as in Ray): "
                          "it reserves nothing; aioray's object store spills to disk when "
                          "full.", DeprecationWarning, stacklevel=4)


# Label syntax (Kubernetes'): an optional DNS-subdomain prefix and "/", then a name; values
# are names too; a selector value may start with "!" or be "in(a, b)" / "!in(a, b)".
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_SELECTOR_VALUE = (rf"!?{_LABEL_NAME}|!?in\(\s*{_LABEL_NAME}(?:\s*,\s*{_LABEL_NAME})*\s*\)")


def _label_selector_error(selector: dict[str, str]) -> str | None:
    for key, value in selector.items():
        prefix, _, name = key.rpartition("/")
        if "/" in key and (len(prefix) > 253 or not re.fullmatch(_LABEL_PREFIX, prefix)):
            return (f"Invalid label key prefix `{prefix}`: a series of DNS labels separated by "
                    "dots (.), at most 253 characters.")
        if not re.fullmatch(_LABEL_NAME, name):
            return (f"Invalid label key name `{name}`: at most 63 characters, beginning and "
                    "ending with an alphanumeric character, with dashes (-), underscores (_), "
                    "dots (.) and alphanumerics between.")
        if value and not re.fullmatch(_SELECTOR_VALUE, value):
            return (f"Invalid label selector value `{value}`: a label value (as a key name), "
                    "optionally with the operators !, in(...) or !in(...).")
    return None


def _validate_bundle_label_selector(bundle_label_selector: Any) -> None:
    if not isinstance(bundle_label_selector, list):
        raise ValueError("Placement group bundle_label_selector must be a list, got "
                         f"{type(bundle_label_selector)}.")
    for selector in bundle_label_selector:
        if (not isinstance(selector, dict) or not all(isinstance(k, str) for k in selector)
                or not all(isinstance(v, str) for v in selector.values())):
            raise ValueError('Bundle label selector must be a list of string dictionary label '
                             'selectors. For example: `[{"ray.io/market_type": "spot"}]`.')
        error = _label_selector_error(selector)
        if error:
            raise ValueError("Invalid label selector provided in bundle_label_selector list. "
                             f"Detailed error: '{error}'")
