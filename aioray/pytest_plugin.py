"""pytest plugin (entry point ``pytest11``): aioray fixtures for users' own test suites.

* ``aioray_runtime`` — a fresh runtime on its own loop thread (sync tests).
* ``aioray_async_runtime`` — a fresh runtime that adopts the pytest-asyncio event loop, so
  ``await ref`` never crosses a thread.

Options come from a marker: ``@pytest.mark.aioray(num_cpus=4, resources={"X": 1})``.
Each fixture shuts the runtime down afterwards, so no actor, name or object leaks into the next
test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import aioray


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aioray(**init_kwargs): options for the aioray_runtime fixtures")


def _init_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("aioray")
    kwargs: dict[str, Any] = {"num_cpus": 2}
    if marker is not None:
        kwargs.update(marker.kwargs)
    return kwargs


@pytest.fixture
def aioray_runtime(request: pytest.FixtureRequest) -> Iterator[Any]:
    aioray.shutdown()
    aioray.init(**_init_kwargs(request))
    try:
        yield aioray
    finally:
        aioray.shutdown()


@pytest.fixture
async def aioray_async_runtime(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    aioray.shutdown()
    aioray.init(**_init_kwargs(request))
    try:
        yield aioray
    finally:
        aioray.shutdown()
