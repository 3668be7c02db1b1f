"""Queue operations on an ``asyncio.Queue``, shared by ``aioray.util.queue`` (the handle, its
actor, its fast paths) and the engine, which applies non-waiting operations for worker
processes and driver threads without an actor call."""

from __future__ import annotations

import asyncio
from typing import Any


class Fail:
    """What the actor's internal methods return instead of raising (cheaper than an error
    travelling back as a task failure)."""

    __slots__ = ("full", "msg")

    def __init__(self, full: bool, msg: str = "") -> None:
        self.full = full
        self.msg = msg

    def __reduce__(self) -> Any:
        return (Fail, (self.full, self.msg))


def put_nowait(q: asyncio.Queue[Any], item: Any) -> Fail | None:
    if q.full():
        return Fail(True)
    q.put_nowait(item)
    return None


def get_nowait(q: asyncio.Queue[Any]) -> Any:
    if q.empty():
        return Fail(False)
    return q.get_nowait()


def put_batch(q: asyncio.Queue[Any], maxsize: int, items: list[Any]) -> Fail | None:
    if maxsize > 0 and len(items) + q.qsize() > maxsize:
        return Fail(True, f"Cannot add {len(items)} items to queue of size {q.qsize()} and "
                           f"maxsize {maxsize}.")
    for item in items:
        q.put_nowait(item)
    return None


def get_batch(q: asyncio.Queue[Any], num_items: int) -> Any:
    if num_items > q.qsize():
        return Fail(False, f"Cannot get {num_items} items from queue of size {q.qsize()}.")
    return [q.get_nowait() for _ in range(num_items)]


def apply(q: asyncio.Queue[Any], maxsize: int, op: str, arg: Any) -> Any:
    """A non-waiting operation on the queue itself (loop thread)."""
    if op == "put":
        return put_nowait(q, arg)
    if op == "put_batch":
        return put_batch(q, maxsize, arg)
    if op == "get":
        return get_nowait(q)
    if op == "get_batch":
        return get_batch(q, arg)
    if op == "qsize":
        return q.qsize()
    if op == "empty":
        return q.empty()
    if op == "full":
        return q.full()
    raise ValueError(f"unknown queue operation {op!r}")
