"""pytest plugin (entry point ``pytest11``): aioray fixtures for users' own test suites.

* ``aioray_runtime`` — a fresh runtime on its own loop thread (sync tests).
* ``aioray_async_runtime`` — a fresh runtime that adopts the pytest-asyncio event loop, so
  ``await ref`` never crosses a thread (needs pytest-asyncio; works in its strict and auto modes).

Options come from a marker: ``@pytest.mark.aioray(num_cpus=4, resources={"X": 1})`` (any
``aioray.init`` keyword, e.g. ``local_mode=True``); the default is ``num_cpus=2`` so results do not
depend on the machine. Each fixture shuts the runtime down afterwards: named (also detached)
actors, queued tasks and worker processes end with the test, so nothing leaks into the next one.

pytest-xdist: every xdist worker is a process of its own with its own runtime, worker processes
and shared-memory files (named after the owning pid), so ``-n auto`` needs nothing special.

Running a Ray project's test suite unchanged:

* ``--aioray-as-ray`` (or ``AIORAY_AS_RAY=1``): ray-import mode (:mod:`aioray.as_ray`), installed
  before any conftest is imported and removed when the session ends: ``import ray`` gives
  aioray, ``ray._private.test_utils`` / ``ray._common.test_utils`` give :mod:`aioray.testing`.
  ``--aioray-as-ray-shadow`` (or ``AIORAY_AS_RAY=shadow``) does so also when a real Ray is
  installed, which plain ``--aioray-as-ray`` refuses to shadow.
  ``--aioray-as-ray-internals=on-use`` (or ``AIORAY_AS_RAY_INTERNALS=on-use``): an import of
  another Ray internal succeeds and fails where what it gave is used, not at the import.
* Ray's fixtures, by Ray's names and with Ray's defaults (``num_cpus=1``), each a fresh aioray
  runtime that is shut down before and after: ``ray_start_regular`` (yields what ``init``
  returns), ``ray_start_2_cpus``, ``ray_start_10_cpus``, ``ray_start_no_cpu``,
  ``ray_start_regular_shared`` and ``ray_start_regular_shared_2_cpus`` (module-scoped),
  ``ray_start_shared_local_modes`` (module-scoped, ``local_mode`` True then False) and
  ``shutdown_only`` (yields None). ``init`` options come from ``request.param`` as in Ray:
  ``@pytest.mark.parametrize("ray_start_regular", [{"num_cpus": 2}], indirect=True)``. A
  conftest that defines the same names wins, as always in pytest. Multi-node fixtures
  (``ray_start_cluster``...) are not provided.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

import aioray
from aioray import as_ray

_INSTALLED_AS_RAY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aioray")
    group.addoption(
        "--aioray-as-ray", action="store_true", default=False,
        help="ray-import mode: `import ray` gives aioray, so a Ray project's tests run on aioray "
             "unchanged (also: AIORAY_AS_RAY=1). Refuses to shadow an installed Ray.")
    group.addoption(
        "--aioray-as-ray-shadow", action="store_true", default=False,
        help="--aioray-as-ray even when a real Ray is installed (also: AIORAY_AS_RAY=shadow).")
    group.addoption(
        "--aioray-as-ray-internals", choices=as_ray.INTERNALS_MODES, default=None,
        help="ray-import mode (implies --aioray-as-ray): what an import of a Ray internal does: "
             "import-error (the default) fails the import, on-use lets it succeed and fails "
             "where what it gave is used, so tests that never use it run "
             "(also: AIORAY_AS_RAY_INTERNALS).")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    # Before any conftest is imported: a Ray project's conftest.py imports ray at its top.
    ns = early_config.known_args_namespace
    try:
        env_mode = as_ray.mode_from_env()
        internals = getattr(ns, "aioray_as_ray_internals", None)
        asked = internals is not None
        internals = internals or as_ray.internals_from_env()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    shadow = bool(getattr(ns, "aioray_as_ray_shadow", False)) or env_mode == "shadow"
    if not (shadow or asked or getattr(ns, "aioray_as_ray", False) or env_mode):
        return
    if as_ray.is_installed():  # installed by whoever started pytest: not ours to remove
        return
    try:
        as_ray.install(shadow=shadow, internals=internals)
    except RuntimeError as e:
        raise pytest.UsageError(str(e)) from None
    early_config.stash[_INSTALLED_AS_RAY] = True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aioray(**init_kwargs): aioray.init() options for the aioray_runtime and "
        "aioray_async_runtime fixtures")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_INSTALLED_AS_RAY, False):
        as_ray.uninstall()


def _init_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("aioray")
    kwargs: dict[str, Any] = {"num_cpus": 2}
    if marker is not None:
        if marker.args:
            raise TypeError("@pytest.mark.aioray takes keyword arguments only (aioray.init "
                            f"options), got positional {marker.args!r}.")
        kwargs.update(marker.kwargs)
    return kwargs


@contextmanager
def _fresh_runtime(init_kwargs: Mapping[str, Any]) -> Iterator[Any]:
    """A runtime of its own: shut down whatever ran before, ``init``, and shut down after."""
    aioray.shutdown()
    info = aioray.init(**init_kwargs)
    try:
        yield info
    finally:
        aioray.shutdown()


@pytest.fixture
def aioray_runtime(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh aioray runtime on its own loop thread; yields the ``aioray`` module."""
    with _fresh_runtime(_init_kwargs(request)):
        yield aioray


async def _async_runtime(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh aioray runtime on the test's event loop; yields the ``aioray`` module."""
    with _fresh_runtime(_init_kwargs(request)):
        yield aioray


def _async_fixture() -> Callable[..., Any]:
    # pytest_asyncio.fixture, not pytest.fixture: in pytest-asyncio's strict mode (its default)
    # a plain async fixture would never run on the loop.
    try:
        import pytest_asyncio
    except ImportError:
        def aioray_async_runtime() -> None:
            pytest.fail("The aioray_async_runtime fixture needs pytest-asyncio "
                        "(pip install pytest-asyncio); use aioray_runtime in sync tests.")
        aioray_async_runtime.__doc__ = _async_runtime.__doc__
        return pytest.fixture(aioray_async_runtime)
    _async_runtime.__name__ = "aioray_async_runtime"
    # Annotated, not ignored: older pytest-asyncio versions return Any here, newer ones a type.
    fixture: Callable[..., Any] = pytest_asyncio.fixture(_async_runtime)
    return fixture


aioray_async_runtime = _async_fixture()


# -- Ray's fixture names (python/ray/tests/conftest.py) -----------------------------------------
def _ray_init_kwargs(request: pytest.FixtureRequest, **defaults: Any) -> dict[str, Any]:
    """Ray's fixture defaults (``num_cpus=1``), the fixture's own, then ``request.param``."""
    real = sys.modules.get("ray")
    if real is not None and real is not aioray:
        pytest.fail(f"{request.fixturename} is aioray's fixture, but this session imported the "
                    f"real Ray ({getattr(real, '__file__', real)!r}). Run with --aioray-as-ray "
                    "to run the suite on aioray, or define the fixture in a conftest.py.",
                    pytrace=False)
    param = getattr(request, "param", None)
    if param is None:
        param = {}
    if not isinstance(param, Mapping):
        raise TypeError(f"{request.fixturename}: request.param must be a dict of init() options "
                        f"(as in Ray's fixtures), got {param!r}.")
    return {"num_cpus": 1, **defaults, **param}


def _ray_fixture(name: str, doc: str, scope: str = "function",
                 params: list[Any] | None = None, **defaults: Any) -> Any:
    def fixture(request: pytest.FixtureRequest) -> Iterator[Any]:
        with _fresh_runtime(_ray_init_kwargs(request, **defaults)) as info:
            yield info
    fixture.__name__ = fixture.__qualname__ = name
    fixture.__doc__ = doc
    return pytest.fixture(scope=scope, params=params, name=name)(fixture)  # type: ignore[call-overload]


_YIELDS = "Yields what ``aioray.init`` returns; ``init`` options from ``request.param``."
ray_start_regular = _ray_fixture(
    "ray_start_regular", f"Ray's fixture: a fresh runtime with 1 CPU. {_YIELDS}")
ray_start_2_cpus = _ray_fixture(
    "ray_start_2_cpus", f"Ray's fixture: a fresh runtime with 2 CPUs. {_YIELDS}", num_cpus=2)
ray_start_10_cpus = _ray_fixture(
    "ray_start_10_cpus", f"Ray's fixture: a fresh runtime with 10 CPUs. {_YIELDS}", num_cpus=10)
ray_start_no_cpu = _ray_fixture(
    "ray_start_no_cpu", f"Ray's fixture: a fresh runtime with no CPU. {_YIELDS}", num_cpus=0)
ray_start_regular_shared = _ray_fixture(
    "ray_start_regular_shared",
    f"Ray's fixture: one runtime (1 CPU) for the whole module. {_YIELDS}", scope="module")
ray_start_regular_shared_2_cpus = _ray_fixture(
    "ray_start_regular_shared_2_cpus",
    f"Ray's fixture: one runtime (2 CPUs) for the whole module. {_YIELDS}", scope="module",
    num_cpus=2)
ray_start_shared_local_modes = _ray_fixture(
    "ray_start_shared_local_modes",
    "Ray's fixture: one runtime per module, with local_mode=True, then with local_mode=False; "
    "yields what ``aioray.init`` returns.", scope="module",
    params=[{"local_mode": True}, {"local_mode": False}])


@pytest.fixture
def shutdown_only() -> Iterator[None]:
    """Ray's fixture: the test calls ``init`` itself; shut down before and after. Yields None."""
    aioray.shutdown()
    try:
        yield None
    finally:
        aioray.shutdown()
