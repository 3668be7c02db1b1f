"""Shared fixtures. Each test gets a fresh runtime and leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

import aioray

os.environ.setdefault("AIORAY_SILENCE_UNRETRIEVED_ERRORS", "1")


@pytest.fixture
def ray() -> Iterator[object]:
    """A runtime on its own loop thread (the sync-script model), shut down after the test."""
    aioray.shutdown()
    aioray.init(num_cpus=2)
    yield aioray
    aioray.shutdown()


@pytest.fixture
async def aray() -> AsyncIterator[object]:
    """A runtime that adopts the pytest-asyncio loop (the async-app model)."""
    aioray.shutdown()
    aioray.init(num_cpus=2)
    yield aioray
    aioray.shutdown()


@pytest.fixture(autouse=True)
def _no_leftover_runtime() -> Iterator[None]:
    yield
    aioray.shutdown()
