"""Object, task and actor ids."""

from __future__ import annotations

import itertools
import os

# 28-byte ids like Ray's: 16 random bytes per process, an 8-byte counter, a 4-byte index.
_PREFIX = os.urandom(16)
ACTOR_ID_SIZE = 16  # actor ids (uuid4 bytes) travel in the same id lists as object ids
_counter = itertools.count(1)


def new_task_id() -> bytes:
    return _PREFIX + next(_counter).to_bytes(8, "little")


def reseed_ids() -> None:
    """Give a freshly started worker process its own id space."""
    global _PREFIX
    _PREFIX = os.urandom(16)


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "little")
