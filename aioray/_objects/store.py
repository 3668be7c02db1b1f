"""The object store: one entry per object, pending until its task resolves it.

Reference counting is Python's own: every ``ObjectRef`` (and every task, value or generator that
holds one) keeps a strong reference to the :class:`ObjectEntry`; the store indexes entries
weakly. When the last holder goes, the entry and its value (and any shared memory behind it) are
freed — so a loop of ``put``/``get`` holds flat memory with no bookkeeping of ours.

Entries are resolved only on the runtime's loop thread. Readers on other threads may look at
``value`` (one attribute read) and otherwise wait through the loop.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from aioray._objects.serialization import ErrorValue
from aioray.exceptions import RayError, RayTaskError, RuntimeShutdownError


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()


class EntryWatcher:
    """A waiter that is told *which* entry resolved: one object can watch many entries (an
    ``add_callback`` per entry, no closure per entry)."""

    __slots__ = ()

    def entry_resolved(self, entry: ObjectEntry) -> None:
        raise NotImplementedError


class ObjectEntry:
    """One object: ``value`` is ``PENDING`` or its stored form (raw, serialized or error)."""

    __slots__ = ("__weakref__", "id", "retrieved", "value", "waiters")

    def __init__(self, id: bytes, value: Any = PENDING) -> None:
        self.id = id
        self.value = value
        self.waiters: list[Callable[[], None] | EntryWatcher] | None = None
        self.retrieved = False

    @property
    def ready(self) -> bool:
        return self.value is not PENDING

    def resolve(self, value: Any) -> bool:
        """Set the value (loop thread only). Later resolutions are ignored: first one wins."""
        if self.value is not PENDING:
            return False
        self.value = value
        waiters = self.waiters
        if waiters is not None:
            self.waiters = None
            for cb in waiters:
                if isinstance(cb, EntryWatcher):
                    cb.entry_resolved(self)
                else:
                    cb()
        return True

    def add_callback(self, cb: Callable[[], None] | EntryWatcher) -> None:
        """Call ``cb()`` (``cb.entry_resolved(self)`` for an :class:`EntryWatcher`) once
        resolved (loop thread only; at once if already resolved)."""
        if self.value is not PENDING:
            if isinstance(cb, EntryWatcher):
                cb.entry_resolved(self)
            else:
                cb()
        elif self.waiters is None:
            self.waiters = [cb]
        else:
            self.waiters.append(cb)

    def remove_callback(self, cb: Callable[[], None] | EntryWatcher) -> None:
        if self.waiters is not None:
            try:
                self.waiters.remove(cb)
            except ValueError:
                pass

    def __del__(self) -> None:
        # Ray prints errors nobody looked at when their ref goes away; so do we.
        value = self.value
        if type(value) is ErrorValue and not self.retrieved and not sys.is_finalizing():
            _report_unretrieved(self.id, value.error)


def _report_unretrieved(id: bytes, error: BaseException) -> None:
    if os.environ.get("AIORAY_SILENCE_UNRETRIEVED_ERRORS"):
        return
    try:
        if isinstance(error, RuntimeShutdownError):
            return
        text = str(error) if isinstance(error, RayTaskError) else repr(error)
        kind = "RayTaskError" if isinstance(error, RayTaskError) else type(error).__name__
        if not isinstance(error, RayError):
            kind = type(error).__name__
        print(f"aioray: unhandled error in object {id.hex()} (never retrieved with get/await): "
              f"{kind}: {text}", file=sys.stderr)
    except Exception:
        pass


class ObjectStore:
    """Weak index from object id to entry, for refs rebuilt from their ids (pickles, workers)."""

    def __init__(self) -> None:
        self._index: weakref.WeakValueDictionary[bytes, ObjectEntry] = (
            weakref.WeakValueDictionary()
        )

    def register(self, entry: ObjectEntry) -> None:
        self._index[entry.id] = entry

    def lookup(self, id: bytes) -> ObjectEntry | None:
        return self._index.get(id)

    def __len__(self) -> int:
        return len(self._index)

    def entries(self) -> Iterable[ObjectEntry]:
        return list(self._index.values())


# One process, one index: refs rebuilt from ids find their entry here whichever runtime made it.
STORE = ObjectStore()
