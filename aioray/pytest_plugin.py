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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import aioray


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aioray(**init_kwargs): aioray.init() options for the aioray_runtime and "
        "aioray_async_runtime fixtures")


def _init_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("aioray")
    kwargs: dict[str, Any] = {"num_cpus": 2}
    if marker is not None:
        if marker.args:
            raise TypeError("@pytest.mark.aioray takes keyword arguments only (aioray.init "
                            f"options), got positional {marker.args!r}.")
        kwargs.update(marker.kwargs)
    return kwargs


@pytest.fixture
def aioray_runtime(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh aioray runtime on its own loop thread; yields the ``aioray`` module."""
    aioray.shutdown()
    aioray.init(**_init_kwargs(request))
    try:
        yield aioray
    finally:
        aioray.shutdown()


async def _async_runtime(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh aioray runtime on the test's event loop; yields the ``aioray`` module."""
    aioray.shutdown()
    aioray.init(**_init_kwargs(request))
    try:
        yield aioray
    finally:
        aioray.shutdown()


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
    return pytest_asyncio.fixture(_async_runtime)  # type: ignore[no-any-return]


aioray_async_runtime = _async_fixture()
