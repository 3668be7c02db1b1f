"""``ray.runtime_context``: :class:`RuntimeContext` and ``get_runtime_context()``."""

from aioray._api import get_runtime_context
from aioray._handles.context import RuntimeContext

__all__ = ["RuntimeContext", "get_runtime_context"]
