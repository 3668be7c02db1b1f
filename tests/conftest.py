"""Shared fixtures. Each test gets a fresh runtime and leaves nothing behind.

Backends. A test runs on the embedded runtime unless it is marked ``@pytest.mark.all_backends``
(or its module sets ``pytestmark = pytest.mark.all_backends``): it holds on every backend, so it
is collected once per backend, ``test_x[embedded]`` and ``test_x[ray]``, as a parameter of the
``backend`` fixture (anyio's ``anyio_backend`` pattern). ``ray`` and ``aray`` depend on
``backend``; a marked test that uses neither still gets the parameter. A test that needs the
backend's name (to branch on a documented difference) asks for ``backend`` too. Leave a test
unmarked when it checks embedded-only behaviour (worker processes, shared memory, the loop
thread, local mode, shutdown), when its tasks close over driver-only objects (locks, events:
Ray runs tasks in other processes), or when it pins down one of the Ray differences the README
lists.

On ``[ray]`` the test runs on one local Ray for the whole session (``num_cpus=2``; starting Ray
takes seconds), attached to aioray for the test and detached after it, so the embedded tests
around it never see it. Without Ray installed the ``[ray]`` parameters are skipped with the
reason. Every test that runs on Ray (the ``[ray]`` parameters and the tests that use
``ray_session``) carries the ``ray_backend`` marker: ``make test-ray`` runs ``-m ray_backend``.
Tests marked ``ray_cluster`` (tests/test_ray_multinode.py) start a multi-node cluster with Ray's
CLI and connect to it: they carry ``ray_backend`` too and run after all others.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import aioray
from aioray._backend import registry

os.environ.setdefault("AIORAY_SILENCE_UNRETRIEVED_ERRORS", "1")

BACKENDS = ("embedded", "ray")
HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "Ray is not installed here: run `make test-ray` (a venv with pip install 'aioray[ray]')"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


# -- the backend parameter ---------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "all_backends: the test holds on every backend: run it once per backend "
        "(ids [embedded] and [ray]) as a parameter of the `backend` fixture")
    config.addinivalue_line(
        "markers", "ray_backend: set by tests/conftest.py on every test that runs on Ray "
        "(the [ray] parameters and the tests using ray_session); `make test-ray` selects it")
    config.addinivalue_line(
        "markers", "ray_cluster: the test starts a Ray cluster of its own and connects to it "
        "(tests/test_ray_multinode.py): it runs on Ray (ray_backend) and last, since the "
        "session's local Ray is stopped first")


def _all_backends(collector: pytest.Collector, obj: Any) -> bool:
    own = getattr(obj, "pytestmark", [])
    return (any(m.name == "all_backends" for m in own)
            or collector.get_closest_marker("all_backends") is not None)


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> None:
    # A marked test that uses no runtime fixture still needs `backend` in its closure to be
    # parametrized over it (and to run attached to Ray): add it, as anyio's plugin does.
    if (isinstance(collector, (pytest.Module, pytest.Class)) and collector.istestfunction(obj, name)
            and _all_backends(collector, obj)):
        pytest.mark.usefixtures("backend")(obj)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("all_backends") is None:
        return
    params = [pytest.param(b, marks=pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY))
              if b == "ray" else b for b in BACKENDS]
    metafunc.parametrize("backend", params, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_ray = callspec is not None and callspec.params.get("backend") == "ray"
        if (on_ray or "ray_session" in getattr(item, "fixturenames", ())
                or item.get_closest_marker("ray_cluster") is not None):
            item.add_marker(pytest.mark.ray_backend)
    # A process connects to one Ray at a time: the tests with a cluster of their own go last.
    items.sort(key=lambda item: item.get_closest_marker("ray_cluster") is not None)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray (``num_cpus=2``) for the session; yields its backend, detached from aioray
    (``backend`` attaches it for each ``[ray]`` test). Started on first use only."""
    if not HAVE_RAY:
        pytest.skip(NO_RAY)
    aioray.shutdown()
    # Ray workers import what tasks reference by module (the test modules and their classes).
    info = aioray.init(address="local-ray", num_cpus=2, include_dashboard=False,
                       log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": TESTS_DIR}})
    assert info["backend"] == "ray"
    rb = registry._ray
    registry._ray = None
    yield rb
    registry._ray = rb
    aioray.shutdown()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend the test runs on: ``"embedded"``, or each of BACKENDS for a test marked
    ``all_backends``. On ``"ray"`` the session's Ray serves aioray's API during the test."""
    name: str = getattr(request, "param", "embedded")
    if name != "ray":
        yield name
        return
    rb = request.getfixturevalue("ray_session")
    registry._ray = rb
    try:
        yield name
    finally:
        registry._ray = None  # detach; Ray keeps running for the next [ray] test
        if rb.is_stale():
            pytest.fail("the test shut down the session's Ray: a test marked all_backends must "
                        "not call aioray.shutdown() (or mark it for the embedded runtime only)")


# -- runtimes ------------------------------------------------------------------------------------
@pytest.fixture
def ray(backend: str) -> Iterator[object]:
    """A runtime on its own loop thread (the sync-script model), shut down after the test.
    On ``[ray]``: the session's Ray."""
    if backend == "ray":
        yield aioray
        return
    aioray.shutdown()
    aioray.init(address="local", num_cpus=2)  # "local": embedded even with AIORAY_BACKEND=ray
    yield aioray
    aioray.shutdown()


@pytest.fixture
async def aray(backend: str) -> AsyncIterator[object]:
    """A runtime that adopts the pytest-asyncio loop (the async-app model).
    On ``[ray]``: the session's Ray."""
    if backend == "ray":
        yield aioray
        return
    aioray.shutdown()
    aioray.init(address="local", num_cpus=2)
    yield aioray
    aioray.shutdown()


@pytest.fixture(autouse=True)
def _no_leftover_runtime() -> Iterator[None]:
    yield
    aioray.shutdown()  # the embedded runtime only: a [ray] test's Ray is detached by now
