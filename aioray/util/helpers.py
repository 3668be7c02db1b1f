"""``ray.util.as_completed`` and ``ray.util.map_unordered``: results as they come, built on
:func:`aioray.wait` and :func:`aioray.get` (so they behave the same on every backend).

aioray's own :class:`aioray.as_completed` yields *refs* one at a time and also works with
``async for``; these two keep Ray's shape: values (or refs with ``yield_obj_refs=True``) in
batches of up to ``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aioray import _api
from aioray._handles.ref import ObjectRef

__all__ = ["as_completed", "map_unordered"]

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _check(chunk_size: int, wait_kwargs: dict[str, Any]) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an int >= 1, got {chunk_size!r}.")
    if "num_returns" in wait_kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")


def _batch(refs: list[ObjectRef[Any]], chunk_size: int, yield_obj_refs: bool,
           wait_kwargs: dict[str, Any]) -> tuple[list[Any], list[ObjectRef[Any]]]:
    ready, rest = _api.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    return (list(ready) if yield_obj_refs else _api.get(list(ready))), list(rest)


def as_completed(refs: Sequence[ObjectRef[Any]], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 yield_obj_refs: bool = False, **wait_kwargs: Any) -> Iterator[Any]:
    """Yield the results of ``refs`` as they become ready, in batches of up to ``chunk_size``
    (Ray's ``ray.util.as_completed``). ``yield_obj_refs=True`` yields the refs instead;
    ``wait_kwargs`` (``timeout``, ``fetch_local``) go to each :func:`aioray.wait`. A failed
    task's error is raised when its batch is read."""
    _check(chunk_size, wait_kwargs)
    pending = list(refs)
    while pending:
        results, pending = _batch(pending, chunk_size, yield_obj_refs, wait_kwargs)
        yield from results


def map_unordered(fn: Any, items: Iterable[Any], *,
                  backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                  **wait_kwargs: Any) -> Iterator[Any]:
    """``fn.remote(item)`` for each item, yielding results as they complete (Ray's
    ``ray.util.map_unordered``). At most ``backpressure_size`` tasks are in flight (None: no
    limit); past it, the next ``chunk_size`` results are collected before more are submitted.
    Items are read lazily."""
    if backpressure_size is not None and (
            isinstance(backpressure_size, bool) or not isinstance(backpressure_size, int)
            or backpressure_size <= 0):
        raise ValueError(f"backpressure_size must be a positive int or None, got "
                         f"{backpressure_size!r}.")
    _check(chunk_size, wait_kwargs)
    if not hasattr(fn, "remote"):
        raise TypeError(f"map_unordered() needs a remote function (@aioray.remote), got {fn!r}.")
    limit = float("inf") if backpressure_size is None else backpressure_size
    pending: list[ObjectRef[Any]] = []
    for item in items:
        pending.append(fn.remote(item))
        if len(pending) >= limit:
            results, pending = _batch(pending, chunk_size, yield_obj_refs, wait_kwargs)
            yield from results
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_kwargs)
