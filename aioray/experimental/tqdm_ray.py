"""``aioray.experimental.tqdm_ray``: Ray's distributed progress bar.

``tqdm`` works in the driver, in tasks and in actors (in their worker processes): each bar
sends its state to the driver (at most every ``flush_interval_s``, and when it closes), and
the driver draws every bar in one place, so bars from many workers don't overwrite each other.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from aioray._backend import registry
from aioray._backend.progress import BarState

T = TypeVar("T")


class tqdm(Generic[T]):
    """Ray's ``tqdm_ray.tqdm``: a subset of tqdm's arguments, drawn by the driver."""

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(self, iterable: Iterable[T] | None = None, desc: str | None = None,
                 total: int | None = None, unit: str | None = None,
                 position: int | None = None, flush_interval_s: float | None = None) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (self.DEFAULT_FLUSH_INTERVAL_SECONDS
                                  if flush_interval_s is None else flush_interval_s)
        self._last_flush = 0.0

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._dump_state()

    def update(self, n: int = 1) -> None:
        self._x += n
        self._dump_state()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dump_state(force_flush=True)

    def refresh(self) -> None:
        self._dump_state(force_flush=True)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int) -> None:
        self._x = n

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise ValueError("No iterable provided: pass one, or call update() yourself.")
        for x in self._iterable:
            self.update(1)
            yield x
        self.close()

    def __enter__(self) -> tqdm[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump_state(self, force_flush: bool = False) -> None:
        now = time.monotonic()
        if not force_flush and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        registry.current().progress(BarState(
            uuid=self._uuid, desc=self._desc, x=self._x, total=self._total, unit=self._unit,
            pos=self._pos, pid=os.getpid(), closed=self._closed))


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that doesn't tear the bars (Ray's helper): the driver clears them, prints,
    and draws them again."""
    registry.current().progress_print(" ".join(str(a) for a in args), kwargs)


def instance() -> Any:
    return registry.current()


__all__ = ["safe_print", "tqdm"]
