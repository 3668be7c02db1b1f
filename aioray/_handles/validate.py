"""Argument checks every backend applies the same way (``get``, ``put``, ``wait``...)."""

from __future__ import annotations

from typing import Any

from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.ref import ObjectRef

NOT_ASYNCIO = (
    "aioray refs can only be awaited under asyncio (anyio's asyncio backend); trio is not "
    "supported. Run with anyio.run(..., backend='asyncio'), or from trio call the blocking "
    "aioray.get(ref) in a thread: await trio.to_thread.run_sync(aioray.get, ref).")


def check_put(value: Any) -> None:
    if isinstance(value, ObjectRef):
        raise TypeError("Calling put() on an ObjectRef is not allowed; it is already stored. "
                        "Put a container holding it instead, e.g. put([ref]).")
    if isinstance(value, ObjectRefGenerator):
        raise TypeError("An ObjectRefGenerator cannot be put in the object store.")


def as_ref_list(refs: Any, fn: str) -> tuple[bool, list[ObjectRef[Any]]]:
    if isinstance(refs, ObjectRef):
        return True, [refs]
    if isinstance(refs, ObjectRefGenerator):
        raise TypeError(
            f"aioray.{fn}() does not accept an ObjectRefGenerator. Use next(gen) / "
            "`async for ref in gen` to take its refs, or gen.completed() to wait for the task.")
    if isinstance(refs, (list, tuple)):
        lst = list(refs)
        for i, r in enumerate(lst):
            if not isinstance(r, ObjectRef):
                if isinstance(r, ObjectRefGenerator):
                    raise TypeError(
                        f"aioray.{fn}() got an ObjectRefGenerator at index {i}; take refs from "
                        "it with next(gen), or wait for gen.completed().")
                raise TypeError(
                    f"aioray.{fn}() expects ObjectRefs, but item {i} is a "
                    f"{type(r).__name__} ({r!r:.60}).")
        return False, lst
    raise TypeError(
        f"aioray.{fn}() expects an ObjectRef or a list of ObjectRefs, got "
        f"{type(refs).__name__} ({refs!r:.60}).")


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be None or a non-negative number of seconds, "
                         f"got {timeout!r}.")


def check_wait_args(refs: Any, num_returns: int, timeout: float | None) -> list[Any]:
    if isinstance(refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError("aioray.wait() expects a list of ObjectRefs (or generators), not a "
                        "single one; wrap it in a list: wait([ref]).")
    if not isinstance(refs, (list, tuple)):
        raise TypeError(f"aioray.wait() expects a list of ObjectRefs, got "
                        f"{type(refs).__name__}.")
    items = list(refs)
    for i, r in enumerate(items):
        if not isinstance(r, (ObjectRef, ObjectRefGenerator)):
            raise TypeError(f"aioray.wait() expects ObjectRefs, but item {i} is a "
                            f"{type(r).__name__}.")
    check_timeout(timeout)
    if not items:
        return items  # Ray's rule: wait([]) is ([], []) whatever num_returns says
    # (A worker's generator has no stream here, only the task id the driver knows it by.)
    ids = [r._stream.wait_key() if isinstance(r, ObjectRefGenerator) else r._id
           for r in items]
    if len(set(ids)) != len(ids):
        raise ValueError("aioray.wait() got the same ObjectRef more than once; pass each ref once.")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}.")
    if num_returns > len(items):
        raise ValueError(
            f"num_returns ({num_returns}) cannot be greater than the number of refs given "
            f"({len(items)}).")
    return items


def split_ready(items: list[Any], ready: set[int], num: int) -> tuple[list[Any], list[Any]]:
    take = sorted(ready)[:num]
    chosen = set(take)
    return [items[i] for i in take], [r for i, r in enumerate(items) if i not in chosen]
