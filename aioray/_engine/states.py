"""The states the engine's records move through, as enums (``str`` enums: they compare equal
to Ray's state names where those are shown to users, e.g. in ``placement_group_table()``)."""

from __future__ import annotations

from enum import Enum


class ActorStatus(str, Enum):
    """An actor's life: PENDING -> ALIVE -> (RESTARTING -> ALIVE ...) -> DEAD."""

    PENDING = "PENDING"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


class CallState(str, Enum):
    """An actor call: queued in its concurrency group, handed to a lane thread (sync actors),
    started (its body entered), running (an async body's task exists)."""

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    STARTED = "started"
    RUNNING = "running"


class Executor(str, Enum):
    """Where a task's body runs."""

    LOOP = "loop"  # a coroutine on the runtime loop (async def)
    THREAD = "thread"  # a thread of the driver (executor="thread", local mode)
    PROCESS = "process"  # a worker process (sync def, the default)


class GroupState(str, Enum):
    """A placement group (Ray's names)."""

    PENDING = "PENDING"
    CREATED = "CREATED"
    REMOVED = "REMOVED"


class GroupScheduling(str, Enum):
    """``placement_group_table()['stats']['scheduling_state']`` (Ray's names)."""

    QUEUED = "QUEUED"
    FINISHED = "FINISHED"
    INFEASIBLE = "INFEASIBLE"
    REMOVED = "REMOVED"


class Placement(str, Enum):
    """Where an actor's code runs."""

    LOOP = "loop"  # async actors: coroutines on the runtime's loop
    THREADS = "threads"  # executor="thread" (and local mode): threads of the driver
    PROCESS = "process"  # the default for sync actors: its own worker process


def placement_of(is_async: bool, executor: str | None, local_mode: bool) -> Placement:
    """Sync actors get a process of their own unless told ``executor="thread"``; async actors
    stay on the loop unless told ``executor="process"``; local mode keeps all in-process."""
    if local_mode:
        return Placement.LOOP if is_async else Placement.THREADS
    if executor == "process":
        return Placement.PROCESS
    if is_async:
        return Placement.LOOP
    return Placement.THREADS if executor == "thread" else Placement.PROCESS
