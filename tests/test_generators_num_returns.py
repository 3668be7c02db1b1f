"""Generators with a fixed num_returns=k, and num_returns="dynamic" (Ray's deprecated mode)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray import DynamicObjectRefGenerator


@aioray.remote(max_retries=0)
def gen_then_raise(n: int) -> Iterator[int]:
    yield from range(n)
    raise Exception("error")


@aioray.remote
def count(n: int) -> Iterator[int]:
    yield from range(n)


@aioray.remote
async def acount(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


EXECUTORS = {"process": count, "thread": count.options(executor="thread"), "loop": acount}


# -- static num_returns=k -------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_static_exactly_k(ray: Any, kind: str) -> None:
    refs = EXECUTORS[kind].options(num_returns=3).remote(3)
    assert isinstance(refs, list) and len(refs) == 3
    assert aioray.get(refs) == [0, 1, 2]


def test_static_one_is_a_single_ref(ray: Any) -> None:
    ref = count.options(num_returns=1).remote(1)
    assert isinstance(ref, aioray.ObjectRef)
    assert aioray.get(ref) == 0


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_static_fewer_fills_the_rest_with_an_error(ray: Any, kind: str) -> None:
    r0, r1, r2 = EXECUTORS[kind].options(num_returns=3).remote(1)
    assert aioray.get(r0) == 0
    for r in (r1, r2):
        with pytest.raises(ValueError, match="yielded 1 values but num_returns=3"):
            aioray.get(r)


def test_static_exception_fills_remaining_refs(ray: Any) -> None:
    ref1, ref2, ref3, ref4 = gen_then_raise.options(num_returns=4).remote(2)
    assert aioray.get([ref1, ref2]) == [0, 1]
    for r in (ref3, ref4):
        with pytest.raises(Exception, match="error"):
            aioray.get(r)


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_static_more_than_k_is_an_error(ray: Any, kind: str) -> None:
    """Ray only logs this (ray#28689); aioray raises it in the last ref."""
    r0, r1 = EXECUTORS[kind].options(num_returns=2).remote(3)
    assert aioray.get(r0) == 0
    with pytest.raises(ValueError, match="more values than num_returns=2"):
        aioray.get(r1)


def test_static_exception_after_k_values_is_logged(ray: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The seed's case: all k values were yielded, then the generator raised — values stand."""
    with caplog.at_level(logging.ERROR, logger="aioray"):
        ref1, ref2 = gen_then_raise.options(num_returns=2).remote(2)
        assert aioray.get([ref1, ref2]) == [0, 1]
        # Both refs resolve as the values are yielded; the task logs its late error a moment
        # later (after the worker reports the raise), so wait for it with a deadline.
        deadline = time.monotonic() + 30
        while ("raised after yielding all num_returns=2 values" not in caplog.text
               and time.monotonic() < deadline):
            time.sleep(0.01)
    assert "raised after yielding all num_returns=2 values" in caplog.text


def test_static_refs_filled_as_yielded(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    @aioray.remote(num_returns=3)
    def gated(gate: str) -> Iterator[int]:
        import time
        yield 0
        yield 1
        while not os.path.exists(gate):
            time.sleep(0.005)
        yield 2

    r0, r1, r2 = gated.remote(str(gate))
    assert aioray.get([r0, r1], timeout=60) == [0, 1]  # while the task is blocked
    assert aioray.wait([r2], timeout=0)[0] == []
    gate.touch()
    assert aioray.get(r2, timeout=60) == 2


def test_static_crash_retry_does_not_duplicate(ray: Any, tmp_path: Path) -> None:
    @aioray.remote(num_returns=4, max_retries=1)
    def flaky(marker: str) -> Iterator[int]:
        for i in range(4):
            if i == 2 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            yield i * 10

    assert aioray.get(flaky.remote(str(tmp_path / "m")), timeout=60) == [0, 10, 20, 30]


async def test_static_async_model(aray: Any) -> None:
    refs = acount.options(num_returns=2).remote(2)
    assert await asyncio.gather(*refs) == [0, 1]


# -- num_returns="dynamic" -------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_dynamic_returns_one_ref_to_a_ref_generator(ray: Any, kind: str) -> None:
    dynamic_ref = EXECUTORS[kind].options(num_returns="dynamic").remote(4)
    assert isinstance(dynamic_ref, aioray.ObjectRef)
    ref_gen = aioray.get(dynamic_ref)
    assert isinstance(ref_gen, DynamicObjectRefGenerator)
    assert len(ref_gen) == 4
    assert [aioray.get(r) for r in ref_gen] == [0, 1, 2, 3]
    assert [aioray.get(r) for r in ref_gen] == [0, 1, 2, 3]  # iterable again


def test_dynamic_exception_is_an_extra_final_ref(ray: Any) -> None:
    ref1, ref2, ref3 = aioray.get(gen_then_raise.options(num_returns="dynamic").remote(2))
    assert aioray.get([ref1, ref2]) == [0, 1]
    with pytest.raises(Exception, match="error"):
        aioray.get(ref3)


def test_dynamic_empty(ray: Any) -> None:
    assert list(aioray.get(count.options(num_returns="dynamic").remote(0))) == []


@aioray.remote
def total(ref_generator: DynamicObjectRefGenerator[int]) -> int:
    assert isinstance(ref_generator, DynamicObjectRefGenerator)
    return sum(aioray.get(r) for r in ref_generator)


def test_dynamic_passed_to_another_task(ray: Any) -> None:
    dynamic_ref = count.options(num_returns="dynamic").remote(5)
    assert aioray.get(total.remote(dynamic_ref), timeout=60) == 10  # resolved as an argument
    ref_gen = aioray.get(dynamic_ref)
    assert aioray.get(total.remote(ref_gen), timeout=60) == 10  # the value itself, pickled
    assert aioray.get(total.options(executor="thread").remote(dynamic_ref)) == 10


def test_dynamic_and_static_submitted_from_worker_process(ray: Any) -> None:
    @aioray.remote
    def inner() -> list[Any]:
        dyn = aioray.get(count.options(num_returns="dynamic").remote(3))
        static = count.options(num_returns=2).remote(2)
        return [[aioray.get(r) for r in dyn], aioray.get(static)]

    assert aioray.get(inner.remote(), timeout=60) == [[0, 1, 2], [0, 1]]


async def test_dynamic_async_model(aray: Any) -> None:
    ref_gen = await acount.options(num_returns="dynamic").remote(3)
    assert [await r for r in ref_gen] == [0, 1, 2]
    assert await total.remote(acount.options(num_returns="dynamic").remote(3)) == 3


@pytest.mark.all_backends
def test_non_generator_rejects_streaming_and_dynamic(ray: Any) -> None:
    """As Ray 2.60: a ValueError where the function is known (the decorator, .options(),
    @method); num_returns=None is the default (one return value)."""
    def plain() -> int:
        return 1

    for mode in ("streaming", "dynamic"):
        with pytest.raises(ValueError, match="can only be used with generator functions"):
            aioray.remote(num_returns=mode)(plain)
        with pytest.raises(ValueError, match="plain is not a generator function"):
            aioray.remote(plain).options(num_returns=mode)
        with pytest.raises(ValueError, match="plain is not a generator function"):
            aioray.remote(plain).options(num_cpus=1).options(num_returns=mode)
        with pytest.raises(ValueError, match="can only be used with generator functions"):
            aioray.method(num_returns=mode)(lambda self: 1)
        with pytest.raises(ValueError, match="method ping is not a generator function"):
            _Plain.remote().ping.options(num_returns=mode)
    assert ray.get(aioray.remote(num_returns=None)(plain).remote(), timeout=60) == 1


@aioray.remote
class _Plain:
    def ping(self) -> int:
        return 1
