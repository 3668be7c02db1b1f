"""``aioray.util.as_completed`` / ``map_unordered`` (Ray's ``ray.util`` helpers): results as
they complete, in batches, with backpressure."""

from __future__ import annotations

from typing import Any

import pytest

import aioray
from aioray.testing import SignalActor
from aioray.util import as_completed, map_unordered

TIMEOUT = 60


@aioray.remote
def gated(x: int, signal: Any) -> int:
    if signal is not None:
        aioray.get(signal.wait.remote())
    return x


@aioray.remote
def square(x: int) -> int:
    return x * x


@aioray.remote
def boom(x: int) -> int:
    raise KeyError(x)


@pytest.mark.all_backends
def test_as_completed_yields_ready_results_first(ray: Any) -> None:
    signal = SignalActor.remote()
    slow = gated.remote(0, signal)
    fast = [gated.remote(i, None) for i in (1, 2, 3)]
    results = as_completed([slow, *fast], chunk_size=1)
    first_three = sorted(next(results) for _ in range(3))
    assert first_three == [1, 2, 3]  # the gated one is still running
    ray.get(signal.send.remote(), timeout=TIMEOUT)
    assert list(results) == [0]
    refs = list(as_completed([square.remote(2)], yield_obj_refs=True))
    assert isinstance(refs[0], aioray.ObjectRef) and ray.get(refs[0]) == 4


@pytest.mark.all_backends
def test_map_unordered_with_backpressure(ray: Any) -> None:
    consumed: list[int] = []

    def items() -> Any:
        for i in range(25):
            consumed.append(i)
            yield i

    it = map_unordered(square, items(), backpressure_size=5, chunk_size=2)
    first = next(it)
    assert first in {i * i for i in range(5)}
    assert len(consumed) <= 6  # read lazily: no more than the limit (+1) before a result
    assert sorted([first, *it]) == [i * i for i in range(25)]
    assert sorted(map_unordered(square, range(5), backpressure_size=None)) == [0, 1, 4, 9, 16]


@pytest.mark.all_backends
def test_errors_and_bad_arguments(ray: Any) -> None:
    with pytest.raises(KeyError):
        list(map_unordered(boom, [1]))
    with pytest.raises(ValueError, match="chunk_size"):
        list(as_completed([], chunk_size=0))
    with pytest.raises(ValueError, match="num_returns"):
        list(as_completed([], num_returns=2))
    with pytest.raises(ValueError, match="backpressure_size"):
        list(map_unordered(square, [1], backpressure_size=0))
    with pytest.raises(TypeError, match="remote function"):
        list(map_unordered(len, [1]))
