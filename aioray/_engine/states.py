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
