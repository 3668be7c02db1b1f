"""What Ray's internals are in ray-import mode when they fail on use (``internals="on-use"``).

Many test modules import a Ray internal at their top (``from ray._private.utils import
DeferSigint``) that only one of their tests uses. With ``internals="on-use"`` such an import
succeeds and hands out a :class:`RayInternal`: any use of it (a call, an attribute, iteration,
truth, subclassing...) raises the ``ImportError`` the import would have raised, naming it. So a
test that never touches the internal runs, and one that does fails where it does.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

__all__ = ["RayInternal", "StandInModule"]


class RayInternal:
    """A name of Ray's that aioray does not provide. Using it raises ``ImportError``."""

    __slots__ = ("_message", "_name")

    def __init__(self, name: str, message: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_message", message)

    def _fail(self) -> NoReturn:
        raise ImportError(self._message, name=self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):  # protocol probes (copy, inspect...)
            raise AttributeError(attr)
        self._fail()

    def __setattr__(self, attr: str, value: Any) -> None:
        self._fail()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._fail()

    def __iter__(self) -> Iterator[Any]:
        self._fail()

    def __getitem__(self, key: Any) -> Any:
        self._fail()

    def __bool__(self) -> bool:
        self._fail()

    def __enter__(self) -> Any:
        self._fail()

    def __exit__(self, *exc: Any) -> None:
        self._fail()

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        self._fail()

    def __repr__(self) -> str:
        return f"<{self._name}: a Ray internal aioray does not provide (fails on use)>"


class StandInModule(types.ModuleType):
    """A Ray module aioray does not provide, as a package: its attributes are ``forwards``
    (names aioray does provide) or :class:`RayInternal` placeholders."""

    def __init__(self, name: str, message: Callable[[str], str],
                 forwards: dict[str, Any] | None = None,
                 known_submodules: frozenset[str] = frozenset()) -> None:
        super().__init__(name, f"Stand-in for Ray's {name} (ray-import mode, internals on use).")
        self.__path__: list[str] = []
        self.__package__ = name
        self._aioray_message = message
        self._aioray_forwards = forwards or {}
        # Submodules that have stand-ins with answers of their own: reached as attributes too
        # (``ray._private.client_mode_hook.is_client_mode_enabled`` in a skipif).
        self._aioray_known = known_submodules

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name in self._aioray_forwards:
            return self._aioray_forwards[name]
        full = f"{self.__name__}.{name}"
        if full in sys.modules:  # a submodule imported already (ray._private.test_utils)
            return sys.modules[full]
        if full in self._aioray_known:
            return importlib.import_module(full)
        return RayInternal(full, f"{full} cannot be used: {self._aioray_message(self.__name__)}")
