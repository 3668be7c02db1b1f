"""Ray-import mode: ``import ray`` gives aioray, so code and test suites written for Ray run on
aioray without edits.

Opt-in and explicit; never on by default:

* ``pytest --aioray-as-ray`` (or ``AIORAY_AS_RAY=1 pytest``): the pytest plugin installs the hook
  before any conftest is imported and removes it when the session ends.
* ``python -m aioray.as_ray script.py args...`` (also ``-m module``, ``-c code``, ``-`` for stdin):
  installs the hook, then runs the script as ``__main__``.
* ``aioray.as_ray.install()`` at the top of a program, before anything imports ``ray``.
* ``AIORAY_AS_RAY=1`` alone cannot switch a plain ``python script.py``: something has to run
  before the script's ``import ray``, and without a ``.pth`` file only ``sitecustomize`` /
  ``usercustomize`` do. Whoever wants that puts ``import aioray.as_ray;
  aioray.as_ray.install_from_env()`` in their own ``sitecustomize.py``.

What maps:

* ``ray`` is the ``aioray`` module itself (``ray.get is aioray.get``); ``ray.X`` is ``aioray.X``
  when that public module exists (``ray.exceptions``, ``ray.actor``, ``ray.util``,
  ``ray.util.queue``, ``ray.util.placement_group``, ``ray.util.scheduling_strategies``...).
* A public Ray module aioray lacks (``ray.serve``, ``ray.data``, ``ray.train``...)
  raises ``ImportError`` naming it. So does every Ray internal (``ray._private.worker``,
  ``ray._raylet``, any ``ray._x``), except Ray's test helpers ``ray._private.test_utils`` and
  ``ray._common.test_utils``, which are :mod:`aioray.testing`. (A plain ``ImportError``, not
  ``ModuleNotFoundError``: ``from ray._private import worker`` would swallow the latter and say
  only "cannot import name". ``from ray.util import state`` looks in ``aioray.util`` itself and
  says "cannot import name 'state' from 'aioray.util'".)

A real Ray is never shadowed unless asked: :func:`install` refuses while ``ray`` is importable
from ``sys.path`` unless ``shadow=True`` (``--aioray-as-ray-shadow``, ``AIORAY_AS_RAY=shadow``,
``python -m aioray.as_ray --shadow``). It always refuses once a real ``ray`` is imported: modules
that already hold it would keep using it next to aioray (purging ``sys.modules`` cannot rebind
their references, nor stop Ray's threads), so install the hook first. The Ray backend
(``AIORAY_BACKEND=ray``) needs the real ``ray`` and cannot run in this mode.

aioray's worker processes (sync tasks) import the test modules whose functions they run, and so
``import ray`` too: :func:`install` puts a directory holding a one-line ``ray`` module on
``sys.path`` (workers start with the driver's ``sys.path``), which installs the hook in the
worker.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import aioray
from aioray.as_ray.standins import RayInternal, StandInModule

__all__ = ["ENV_VAR", "INTERNALS_ENV_VAR", "INTERNALS_MODES", "install", "install_from_env",
           "internals_from_env", "is_installed", "mode_from_env", "uninstall"]

ENV_VAR = "AIORAY_AS_RAY"
"""``1`` (on) or ``shadow`` (on, shadowing an installed Ray); read by :func:`install_from_env`
(the pytest plugin and ``python -m aioray.as_ray`` use it)."""

INTERNALS_ENV_VAR = "AIORAY_AS_RAY_INTERNALS"
"""``import-error`` (the default) or ``on-use``: see :func:`install`. :func:`install` sets it for
the processes the program starts (aioray's workers import the same test modules)."""
INTERNALS_MODES = ("import-error", "on-use")

# Ray internals aioray provides anyway: Ray's test helpers.
_INTERNAL_ALIASES = {
    "ray._private.test_utils": "aioray.testing",
    "ray._common.test_utils": "aioray.testing",
}
# The internal packages those live in: empty stand-ins (see _InternalPackage).
_INTERNAL_PACKAGES = ("ray._private", "ray._common")
# Ray's deprecated spellings of public modules aioray has.
_PUBLIC_ALIASES = {
    "ray.experimental.state": "aioray.util.state",
    "ray.experimental.state.api": "aioray.util.state",
}
# internals="on-use": what Ray's ``_raylet`` has that is public Ray API under another name.
_RAYLET_PUBLIC = ("ObjectRef", "ObjectRefGenerator", "StreamingObjectRefGenerator", "ObjectID")
# ...and the internal attributes of Ray's top-level module (``from ray import ray_constants``).
_TOP_LEVEL_INTERNALS = frozenset({"worker", "ray_constants", "serialization", "state", "_raylet",
                                  "internal", "cluster_utils"})
# aioray's own public modules that have no Ray counterpart: not reachable as ray.X.
_AIORAY_ONLY = frozenset({"as_ray", "testing", "pytest_plugin", "mypy_plugin"})

_SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")

_lock = threading.RLock()
_finder: _RayFinder | None = None
_internals = "import-error"


class _InternalPackage(types.ModuleType):
    """``ray._private`` / ``ray._common``: exist only so their ``test_utils`` can be imported.
    Any other attribute is an error naming the Ray internal."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if full in _INTERNAL_ALIASES:
            return importlib.import_module(full)
        raise AttributeError(_internal_message(full))


def _internal_message(name: str) -> str:
    return (f"{name} is Ray-internal and not provided by aioray: in ray-import mode "
            "(aioray.as_ray) only Ray's public API maps to aioray, and of Ray's internals only "
            "ray._private.test_utils and ray._common.test_utils (as aioray.testing).")


def _missing_message(name: str) -> str:
    return (f"{name} is not provided by aioray: ray-import mode (aioray.as_ray) maps ray.X to "
            f"aioray.X, and aioray has no {'aioray' + name[3:]} module.")


def _public_tail(tail: str) -> bool:
    """Whether ``aioray.<tail>`` may be reached as ``ray.<tail>``."""
    parts = tail.split(".")
    return parts[0] not in _AIORAY_ONLY and not any(p.startswith("_") for p in parts)


def _sync_aliases(but: str = "") -> None:
    """Register ``ray.X`` for every public ``aioray.X`` already imported (except ``but``).

    Importing ``ray.X`` through the finder makes the import system set ``X`` on the parent
    module, which would clobber a parent attribute of the same name that is not the module
    (``aioray.util.placement_group`` is the function, as in Ray). A module found in
    ``sys.modules`` is never set on its parent, so known modules are registered up front.
    Not the module being found: the import system would then load *its* spec (aioray's) again.
    """
    for name, module in list(sys.modules.items()):
        if module is not None and name.startswith("aioray.") and _public_tail(name[7:]):
            alias = "ray." + name[7:]
            if alias != but:
                sys.modules.setdefault(alias, module)


class _AliasLoader(importlib.abc.Loader):
    """Loads ``ray.X`` as the already existing module ``aioray.X`` (not a copy)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a throwaway module; exec_module replaces it in sys.modules

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system returns whatever sys.modules holds after exec_module, so `ray` *is*
        # aioray, with aioray's own __spec__ untouched.
        target = importlib.import_module(self.target)
        sys.modules[module.__name__] = target
        if module.__name__ == "ray":
            _register_internal_packages()
        _sync_aliases()


class _InternalPackageLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _new_internal_package(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _new_internal_package(name: str) -> types.ModuleType:
    if _internals == "on-use":
        return StandInModule(name, _internal_message,
                             known_submodules=frozenset(_KNOWN_INTERNALS))
    pkg = _InternalPackage(name, f"Stand-in for Ray's {name}: aioray provides only its "
                                 "test_utils (aioray.testing).")
    pkg.__path__ = []
    pkg.__package__ = name
    pkg.__spec__ = importlib.machinery.ModuleSpec(name, _InternalPackageLoader(),
                                                  is_package=True)
    return pkg


def _register_internal_packages() -> None:
    # In sys.modules before anything imports them, so the import system never sets them on
    # `ray` (= aioray); attached to aioray here only where aioray has no such attribute, so that
    # `import ray._private.test_utils` followed by attribute access works.
    for name in _INTERNAL_PACKAGES:
        pkg = sys.modules.get(name)
        if type(pkg) is not (StandInModule if _internals == "on-use" else _InternalPackage):
            pkg = sys.modules[name] = _new_internal_package(name)
        attr = name.split(".")[1]
        if not hasattr(aioray, attr):
            setattr(aioray, attr, pkg)


class _RayFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: resolves ``ray`` and ``ray.*`` (and only those)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        if fullname == "ray":
            return self._alias_spec(fullname, "aioray")
        if fullname in _PUBLIC_ALIASES:
            return self._alias_spec(fullname, _PUBLIC_ALIASES[fullname])
        on_use = _internals == "on-use"
        if fullname in _INTERNAL_ALIASES:
            if on_use:  # the helpers aioray.testing has, and placeholders for the rest
                return _stand_in_spec(fullname, _helpers_message, _testing_names())
            return self._alias_spec(fullname, _INTERNAL_ALIASES[fullname])
        tail = fullname[4:]
        internal = any(p.startswith("_") for p in tail.split("."))
        if internal and on_use:
            known = _KNOWN_INTERNALS.get(fullname)
            return _stand_in_spec(fullname, _internal_message, known() if known else None,
                                  frozenset(_KNOWN_INTERNALS))
        if fullname in _INTERNAL_PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _InternalPackageLoader(),
                                                  is_package=True)
        if internal:
            raise ImportError(_internal_message(fullname), name=fullname)
        if not _public_tail(tail):
            raise ImportError(
                f"{fullname} is not a Ray module (aioray.{tail} is aioray's own), so ray-import "
                "mode (aioray.as_ray) does not provide it.", name=fullname)
        _sync_aliases(but=fullname)
        try:
            spec = importlib.util.find_spec("aioray." + tail)
        except ImportError:
            spec = None
        if spec is None:
            if on_use:
                return _stand_in_spec(fullname, _missing_message)
            raise ImportError(_missing_message(fullname), name=fullname)
        return self._alias_spec(fullname, "aioray." + tail)

    @staticmethod
    def _alias_spec(fullname: str, target: str) -> importlib.machinery.ModuleSpec:
        # is_package: a `ray.X.Y` import looks up `__path__` on the module we hand out (the
        # real aioray module, which has its own), never on this spec.
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(target), is_package=True)


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, message: Callable[[str], str], forwards: dict[str, Any] | None,
                 known: frozenset[str]) -> None:
        self.message = message
        self.forwards = forwards
        self.known = known

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return StandInModule(spec.name, self.message, self.forwards, self.known)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _stand_in_spec(fullname: str, message: Callable[[str], str],
                   forwards: dict[str, Any] | None = None,
                   known: frozenset[str] = frozenset()) -> importlib.machinery.ModuleSpec:
    return importlib.machinery.ModuleSpec(fullname, _StandInLoader(message, forwards, known),
                                          is_package=True)


def _testing_names() -> dict[str, Any]:
    testing = importlib.import_module("aioray.testing")
    return {name: getattr(testing, name) for name in testing.__all__}


def _no_client(*args: Any, **kwargs: Any) -> bool:
    return False


# internals="on-use": the Ray internals with names aioray can answer truthfully, and those names.
_KNOWN_INTERNALS: dict[str, Callable[[], dict[str, Any]]] = {
    # public Ray API under another name
    "ray._raylet": lambda: {name: getattr(aioray, name) for name in _RAYLET_PUBLIC
                            if hasattr(aioray, name)},
    # read in Ray's skipif decorators: there is no Ray client
    "ray._private.client_mode_hook": lambda: {"client_mode_should_convert": _no_client,
                                              "is_client_mode_enabled": False},
}


def _helpers_message(name: str) -> str:
    return (f"aioray.testing, which is {name} in ray-import mode, has Ray's public-API test "
            f"helpers only: {', '.join(_testing_names())}.")


def _top_level_internal(name: str) -> Any:
    """``aioray.__getattr__`` while internals fail on use: ``from ray import ray_constants``."""
    if name in _TOP_LEVEL_INTERNALS:
        full = f"ray.{name}"
        if full in _KNOWN_INTERNALS:
            return importlib.import_module(full)
        return RayInternal(full, f"{full} cannot be used: {_internal_message(full)}")
    raise AttributeError(f"module 'aioray' has no attribute {name!r}")


def _real_ray_location() -> str | None:
    """Where a real ``ray`` would be imported from (``sys.path``), or None."""
    paths = [p for p in sys.path if os.path.abspath(p or os.curdir) != _SHIM_DIR]
    spec = importlib.machinery.PathFinder.find_spec("ray", paths)
    # A directory named ray without __init__.py is no Ray: Ray's own session directory /tmp/ray
    # is one, seen as a namespace package by a program started in /tmp.
    if spec is None or not spec.origin or spec.origin == "namespace":
        return None
    return spec.origin


def is_installed() -> bool:
    """Whether ``import ray`` resolves to aioray in this process."""
    return _finder is not None


def install(*, shadow: bool = False, internals: str = "import-error") -> None:
    """Make ``import ray`` (and Ray's public submodules) resolve to aioray in this process.

    Call it before anything imports ``ray``. Idempotent. ``shadow=True`` is required when a real
    Ray is importable; without it a ``RuntimeError`` says where that Ray is. Also a
    ``RuntimeError``: a real ``ray`` already imported, or ``AIORAY_BACKEND=ray`` set.

    ``internals``: what an import of a Ray internal (or of a public Ray module aioray lacks)
    does. ``"import-error"``: it raises ``ImportError`` naming it. ``"on-use"``: it succeeds,
    and *using* what it gave raises that ``ImportError`` (:mod:`aioray.as_ray.standins`), so
    a test module importing an internal at its top still runs the tests that never use it.
    """
    global _finder, _internals
    if internals not in INTERNALS_MODES:
        raise ValueError(f"internals={internals!r}: use 'import-error' (an import of a Ray "
                         "internal fails) or 'on-use' (it fails when used).")
    with _lock:
        if _finder is not None:
            if internals != _internals:
                raise RuntimeError(
                    f"aioray.as_ray.install(): already installed with internals={_internals!r};"
                    f" uninstall() first to switch to {internals!r}.")
            _put_first()
            return
        current = sys.modules.get("ray")
        if current is not None and current is not aioray:
            where = getattr(current, "__file__", None) or repr(current)
            raise RuntimeError(
                f"aioray.as_ray.install(): a real `ray` is already imported (from {where}). "
                "Modules holding it would keep using it next to aioray, so the hook must be "
                "installed before anything imports ray: use `pytest --aioray-as-ray`, "
                "`python -m aioray.as_ray script.py`, or call install() first thing.")
        if os.environ.get("AIORAY_BACKEND", "").strip().lower() == "ray":
            raise RuntimeError(
                "aioray.as_ray.install(): AIORAY_BACKEND=ray selects aioray's Ray backend, which "
                "needs the real `ray`; ray-import mode would replace it with aioray. Unset "
                "AIORAY_BACKEND to run Ray code on aioray's embedded runtime.")
        if not shadow:
            real = _real_ray_location()
            if real is not None:
                raise RuntimeError(
                    f"aioray.as_ray.install(): a real Ray is installed ({real}) and ray-import "
                    "mode does not shadow it unless asked. Ask with install(shadow=True), "
                    "`pytest --aioray-as-ray-shadow`, `python -m aioray.as_ray --shadow`, or "
                    f"{ENV_VAR}=shadow; or run in an environment without Ray.")
        _finder = _RayFinder()
        _set_internals(internals)
        _put_first()


def _set_internals(internals: str) -> None:
    global _internals
    _internals = internals
    os.environ[INTERNALS_ENV_VAR] = internals
    if internals == "on-use" and "__getattr__" not in vars(aioray):
        aioray.__dict__["__getattr__"] = _top_level_internal  # PEP 562 reads it from here


def _put_first() -> None:
    assert _finder is not None
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RayFinder)]
    sys.meta_path.insert(0, _finder)
    if _SHIM_DIR not in sys.path:
        sys.path.insert(0, _SHIM_DIR)


def _adopt_in_worker() -> None:
    """Run by the shim ``ray`` module in an aioray worker process of a driver in ray-import
    mode: the driver already decided (and checked), so no checks here."""
    global _finder
    with _lock:
        if _finder is None:
            _finder = _RayFinder()
            _set_internals(internals_from_env())
        _put_first()
        sys.modules["ray"] = aioray
        _register_internal_packages()
        _sync_aliases()


def _is_ours(module: object) -> bool:
    if isinstance(module, (_InternalPackage, StandInModule)):
        return True
    name = getattr(module, "__name__", None)
    return isinstance(name, str) and (name == "aioray" or name.startswith("aioray."))


def uninstall() -> None:
    """Undo :func:`install`: ``import ray`` behaves as without aioray again (tests restore
    with it). Refs, handles and modules that already hold ``ray`` keep aioray."""
    global _finder, _internals
    with _lock:
        _finder = None
        _internals = "import-error"
        os.environ.pop(INTERNALS_ENV_VAR, None)
        if vars(aioray).get("__getattr__") is _top_level_internal:
            del aioray.__dict__["__getattr__"]
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RayFinder)]
        sys.path[:] = [p for p in sys.path if p != _SHIM_DIR]
        for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
            if _is_ours(sys.modules[name]):
                del sys.modules[name]
        # Stand-ins the import system (or _register_internal_packages) set on aioray's modules
        # as attributes of their `ray.X` parents: ray._raylet, ray.cluster_utils...
        for mod_name, module in list(sys.modules.items()):
            if module is None or not (mod_name == "aioray" or mod_name.startswith("aioray.")):
                continue
            for attr, value in list(vars(module).items()):
                if isinstance(value, (_InternalPackage, StandInModule)):
                    delattr(module, attr)


def mode_from_env() -> str | None:
    """``AIORAY_AS_RAY``: None (unset, empty, ``0``, ``false``, ``no``, ``off``), ``"on"``
    (``1``, ``true``, ``yes``, ``on``) or ``"shadow"``; anything else is a ``ValueError``."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return None
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value == "shadow":
        return "shadow"
    raise ValueError(f"{ENV_VAR}={value!r}: use 1 (on), shadow (on, shadowing an installed "
                     "Ray) or 0 (off).")


def internals_from_env() -> str:
    """``AIORAY_AS_RAY_INTERNALS``: ``import-error`` (unset or empty) or ``on-use``; anything
    else is a ``ValueError``."""
    value = os.environ.get(INTERNALS_ENV_VAR, "").strip().lower() or "import-error"
    if value not in INTERNALS_MODES:
        raise ValueError(f"{INTERNALS_ENV_VAR}={value!r}: use import-error (an import of a Ray "
                         "internal fails, the default) or on-use (it fails when used).")
    return value


def install_from_env() -> bool:
    """:func:`install` if ``AIORAY_AS_RAY`` asks for it (``shadow`` shadows an installed Ray),
    with ``AIORAY_AS_RAY_INTERNALS``; returns whether the hook is installed. For a
    ``sitecustomize.py`` of your own."""
    mode = mode_from_env()
    if mode is not None:
        install(shadow=mode == "shadow", internals=internals_from_env())
    return is_installed()
