"""What users hold for placement groups: :class:`PlacementGroup` and its id.

Operations forward to the backend's ``placement`` service (``aioray._backend.base``); the
engine's single-node semantics are described in ``aioray._engine.placement``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aioray._backend import registry
from aioray._handles.ref import ObjectRef
from aioray.exceptions import RaySystemError


class PlacementGroupInfeasibleError(RaySystemError):
    """The placement group can never be reserved on this node."""


class PlacementGroupID:
    """A placement group's id (``.hex()``, ``.binary()``)."""

    __slots__ = ("_id",)

    def __init__(self, id: bytes) -> None:
        self._id = id

    @classmethod
    def nil(cls) -> PlacementGroupID:
        return cls(b"\0" * 18)

    @classmethod
    def from_random(cls) -> PlacementGroupID:
        return cls(uuid.uuid4().bytes + b"\0\1")

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return not any(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"

    def __reduce__(self) -> Any:
        return (PlacementGroupID, (self._id,))


class PlacementGroup:
    """A handle to a placement group (picklable: pass it to tasks and actors)."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict[str, float]] | None = None
                 ) -> None:
        self.id = id
        self.bundle_cache = bundle_cache

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup(PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles, as given at creation (values as floats)."""
        if self.bundle_cache is None:
            info = registry.current().placement.table(self)
            self.bundle_cache = list(info.get("bundles", {}).values())
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef[PlacementGroup]:
        """A ref that resolves to this placement group once every bundle is reserved
        (``aioray.get(pg.ready())`` or ``await pg.ready()``). It raises
        ``PlacementGroupRemovedError`` if the group is removed first, and
        :class:`PlacementGroupInfeasibleError` if it can never be reserved."""
        backend = registry.current()
        if self.is_empty:
            return backend.put(self)
        return backend.placement.ready(self)

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Block up to ``timeout_seconds`` for the group to be reserved; True if it is.
        False at once if it was removed or can never be reserved."""
        return registry.current().placement.wait(self, timeout_seconds)

    async def wait_async(self, timeout_seconds: float = 30) -> bool:
        """:meth:`wait` for async code."""
        backend = registry.current()
        ref = self.ready()
        done, _ = await backend.wait_async([ref], 1, timeout_seconds, True)
        if not done:
            return False
        try:
            await backend.get_async(ref, None)
            return True
        except Exception:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()})"

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self.bundle_cache))
