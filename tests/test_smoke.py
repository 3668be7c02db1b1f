"""The fastest end-to-end check: one task of each kind, from sync code and from async code."""

from __future__ import annotations

import asyncio

import aioray


@aioray.remote
def add(a: int, b: int) -> int:
    return a + b


@aioray.remote
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def test_sync_script_model(ray: object) -> None:
    assert aioray.get(add.remote(1, 2)) == 3
    assert aioray.get(async_add.remote(add.remote(1, 1), 3)) == 5


async def test_async_app_model(aray: object) -> None:
    assert await add.remote(2, 3) == 5
    assert await asyncio.gather(async_add.remote(1, 1), add.remote(2, 2)) == [2, 4]
