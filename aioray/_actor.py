"""Kept so pickles that name ``aioray._actor._rebuild_handle`` (the old module path) load."""

from aioray._handles.actor import _rebuild_handle

__all__ = ["_rebuild_handle"]
