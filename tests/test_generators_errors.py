"""Generator errors: application exceptions in order, worker crashes, retries without duplicates."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray.exceptions import RayTaskError, WorkerCrashedError


@aioray.remote(max_retries=0)
def fails_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError(f"failed after {n}")


@aioray.remote(max_retries=0)
async def afails_after(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i
    raise ValueError(f"failed after {n}")


EXECUTORS = {
    "process": fails_after,
    "thread": fails_after.options(executor="thread"),
    "loop": afails_after,
}


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_application_error_is_next_ref_in_order(ray: Any, kind: str) -> None:
    gen = EXECUTORS[kind].remote(2)
    r0, r1, r_err = next(gen), next(gen), next(gen)
    with pytest.raises(StopIteration):
        next(gen)
    assert aioray.get([r0, r1]) == [0, 1]  # earlier refs stay valid
    with pytest.raises(ValueError, match="failed after 2") as info:
        aioray.get(r_err)
    assert isinstance(info.value, RayTaskError)  # Ray's dual class: both catchable
    # completed() carries the failure too.
    with pytest.raises(ValueError, match="failed after 2"):
        aioray.get(gen.completed())


@pytest.mark.all_backends
@pytest.mark.parametrize("kind", list(EXECUTORS))
async def test_application_error_async_iteration(aray: Any, kind: str) -> None:
    out: list[Any] = []
    async for ref in EXECUTORS[kind].remote(1):
        try:
            out.append(await ref)
        except ValueError:
            out.append("ValueError")
    assert out == [0, "ValueError"]


@pytest.mark.all_backends
def test_error_before_first_yield(ray: Any) -> None:
    gen = fails_after.remote(0)
    refs = list(gen)
    assert len(refs) == 1
    with pytest.raises(ValueError):
        aioray.get(refs[0])


@pytest.mark.all_backends
def test_failed_dependency_ends_stream_with_its_error(ray: Any) -> None:
    @aioray.remote(max_retries=0)
    def bad() -> int:
        raise KeyError("dep")

    @aioray.remote
    def uses(x: int) -> Iterator[int]:
        yield x

    refs = list(uses.remote(bad.remote()))
    assert len(refs) == 1
    with pytest.raises(KeyError):
        aioray.get(refs[0])


# -- system failures --------------------------------------------------------------------------
@aioray.remote
def crashes_after(n: int) -> Iterator[int]:
    yield from range(n)
    os._exit(3)


def test_worker_crash_is_a_worker_crashed_error_ref(ray: Any) -> None:
    gen = crashes_after.options(max_retries=0).remote(2)
    refs = list(gen)  # ends: never hangs
    assert len(refs) == 3
    assert aioray.get(refs[:2]) == [0, 1]
    with pytest.raises(WorkerCrashedError, match="exit code 3"):
        aioray.get(refs[2])


def test_worker_crash_after_retries_exhausted(ray: Any) -> None:
    gen = crashes_after.options(max_retries=1).remote(2)
    refs = list(gen)
    # Two attempts, each yielding 0 and 1: the second attempt's copies are not duplicated.
    assert len(refs) == 3
    assert aioray.get(refs[:2]) == [0, 1]
    with pytest.raises(WorkerCrashedError, match="ran 2 times"):
        aioray.get(refs[2])


# -- retries ------------------------------------------------------------------------------------
@aioray.remote
def flaky(marker: str, n: int, crash: bool) -> Iterator[int]:
    """Yields 0..n-1; on the first attempt it fails after two items."""
    for i in range(n):
        if i == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            if crash:
                os._exit(1)
            raise ConnectionError("transient")
        yield i


@pytest.mark.all_backends
def test_crash_retry_reruns_without_duplicating_refs(ray: Any, tmp_path: Path) -> None:
    gen = flaky.options(max_retries=2).remote(str(tmp_path / "m"), 5, True)
    assert aioray.get(list(gen)) == [0, 1, 2, 3, 4]


@pytest.mark.all_backends
@pytest.mark.parametrize("executor", ["process", "thread"])
def test_retry_exceptions_reruns_without_duplicating_refs(ray: Any, tmp_path: Path,
                                                          executor: str) -> None:
    opts: dict[str, Any] = {"max_retries": 1, "retry_exceptions": [ConnectionError]}
    if executor == "thread":
        opts["executor"] = "thread"
    gen = flaky.options(**opts).remote(str(tmp_path / "m"), 4, False)
    assert aioray.get(list(gen)) == [0, 1, 2, 3]
    assert aioray.get(gen.completed()) is None


@pytest.mark.all_backends
def test_refs_taken_before_the_failure_stay_valid_across_retry(ray: Any,
                                                               tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    @aioray.remote(max_retries=1, retry_exceptions=True)
    def gated_flaky(marker: str, gate: str) -> Iterator[str]:
        import time
        attempt = 2 if os.path.exists(marker) else 1
        yield f"a{attempt}"
        while not os.path.exists(gate):
            time.sleep(0.005)
        if attempt == 1:
            open(marker, "w").close()
            raise ConnectionError("transient")
        yield f"b{attempt}"

    gen = gated_flaky.remote(str(tmp_path / "m"), str(gate))
    first = next(gen)
    assert aioray.get(first) == "a1"
    gate.touch()
    rest = list(gen)
    # The retry's own first item is dropped: ref 1 stays "a1", never replaced or repeated.
    assert aioray.get(rest) == ["b2"]
    assert aioray.get(first) == "a1"


@pytest.mark.all_backends
def test_no_retry_for_application_error_by_default(ray: Any, tmp_path: Path) -> None:
    marker = tmp_path / "m"
    gen = flaky.options(max_retries=3).remote(str(marker), 4, False)
    refs = list(gen)
    assert aioray.get(refs[:2]) == [0, 1]
    with pytest.raises(ConnectionError):
        aioray.get(refs[2])
    assert len(refs) == 3
