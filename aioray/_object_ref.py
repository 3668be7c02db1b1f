"""Kept so pickles that name ``aioray._object_ref._rebuild_ref`` (the old module path) load."""

from aioray._handles.ref import _rebuild_ref

__all__ = ["_rebuild_ref"]
