"""Detailed tracing for the timeline: generator items and large-object transfers.

Off by default (nothing is recorded and the hot paths pay one ``is None`` check); on with
``init(_tracing=True)``, ``AIORAY_TRACING=1``, or from the first ``aioray.timeline()`` call.
Task and actor-call spans need no tracing: the state API's records give them.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, NamedTuple

from aioray._objects.serialization import SerializedObject
from aioray._objects.shm import SharedBuffer

LIMIT = 100_000  # events kept (the newest)


class Item(NamedTuple):
    task_id: bytes
    t: float


class Transfer(NamedTuple):
    task_id: bytes
    nbytes: int
    pid: int  # the worker it came from
    t: float


class Trace:
    def __init__(self) -> None:
        self.items: deque[Item] = deque(maxlen=LIMIT)
        self.transfers: deque[Transfer] = deque(maxlen=LIMIT)

    def item(self, task_id: bytes) -> None:
        self.items.append(Item(task_id, time.time()))

    def transfer(self, task_id: bytes, stored: Any, pid: int) -> None:
        """A result or item that came from worker ``pid`` through shared memory."""
        for s in stored if isinstance(stored, list) else (stored,):
            if type(s) is SerializedObject:
                n = sum(b.size for b in s.buffers if isinstance(b, SharedBuffer))
                if n:
                    self.transfers.append(Transfer(task_id, n, pid, time.time()))


# The process's one trace while tracing is on (one embedded runtime per process).
ACTIVE: Trace | None = None


def start() -> Trace:
    global ACTIVE
    if ACTIVE is None:
        ACTIVE = Trace()
    return ACTIVE


def stop() -> None:
    global ACTIVE
    ACTIVE = None


def wanted() -> bool:
    return os.environ.get("AIORAY_TRACING", "") not in ("", "0")
