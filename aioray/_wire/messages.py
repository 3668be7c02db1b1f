"""The messages between the driver and a worker process, one typed record each.

Receivers dispatch on ``type(msg)`` and read fields by name. On the wire a message is its
position in :data:`MESSAGES` and its fields as a plain tuple (``framing``): pickling a
NamedTuple by class costs three times a tuple's, per frame, on the hottest path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from aioray.exceptions import RayTaskError


# -- driver -> worker ----------------------------------------------------------------------
class Init(NamedTuple):
    driver_pid: int
    sys_path: list[str]
    namespace: str
    job_id: str
    node_id: str
    log_to_driver: bool  # False: the worker's output is dropped (init(log_to_driver=False))
    logging: tuple[int, str | None] | None  # the driver's root level and format, if set up


class Fn(NamedTuple):
    """A remote function's pickle, sent once per worker before its first task."""

    fn_id: bytes
    blob: bytes


class Task(NamedTuple):
    task_id: bytes
    fn_id: bytes
    payload: Any  # the packed (args, kwargs)
    dep_values: list[Any]  # stored values of the top-level ref arguments
    nret: int
    name: str
    gpu_ids: list[int] | None
    streaming: bool  # a generator whose items are sent as they are yielded
    backpressure: int  # unconsumed items at which the generator pauses (0: never)
    # The merged runtime_env (job's and task's): env_vars, working_dir, py_modules. Applied
    # around this task only: the worker runs other tasks after it.
    runtime_env: dict[str, Any] | None
    resources: dict[str, float]  # what the task holds: get_assigned_resources()


class ActorStart(NamedTuple):
    """Make this worker an actor's process for the rest of its life: build the instance.

    Answered like a task with ``task_id`` (Done, Failed, or Exited for exit_actor())."""

    task_id: bytes
    actor_id: bytes
    cls_blob: bytes  # the class, pickled by our pickler
    payload: Any  # the packed (args, kwargs) of __init__
    dep_values: list[Any]
    class_name: str
    name: str | None
    namespace: str
    restarts: int  # how many times the actor was re-created before this one
    is_async: bool  # run the methods as coroutines on an event loop in the worker
    groups: dict[str, int]  # concurrency group -> limit (the default group included)
    gpu_ids: list[int] | None
    resources: dict[str, float]
    runtime_env: dict[str, Any] | None


class ActorRun(NamedTuple):
    """One method call on the actor this worker hosts; answered like a task."""

    task_id: bytes
    method: str
    payload: Any
    dep_values: list[Any]
    nret: int
    group: str
    streaming: bool
    backpressure: int


class ActorStop(NamedTuple):
    """End the actor's process once no call runs (after ``__ray_shutdown__`` if asked)."""

    shutdown_hook: bool


class Cancel(NamedTuple):
    task_id: bytes


class Credit(NamedTuple):
    """How many of a streaming task's items the consumer has taken (backpressure)."""

    task_id: bytes
    consumed: int


class Reply(NamedTuple):
    rid: int
    ok: bool
    value: Any


class Exit(NamedTuple):
    pass


# -- worker -> driver ----------------------------------------------------------------------
class Ready(NamedTuple):
    pid: int


class Req(NamedTuple):
    """A back-channel request: the worker blocks until the driver's :class:`Reply`."""

    rid: int
    op: str
    args: tuple[Any, ...]


class Call(NamedTuple):
    """A back-channel call: fire and forget (``.remote()``, ``put``, ``cancel``...)."""

    op: str
    args: tuple[Any, ...]


class Release(NamedTuple):
    """Borrowed ids the worker dropped, each with the frame count when it last saw it."""

    items: list[tuple[bytes, int]]


class Yield(NamedTuple):
    task_id: bytes
    stored: Any


class Done(NamedTuple):
    task_id: bytes
    stored: Any  # one stored value, or a list of them (num_returns > 1)


class Failed(NamedTuple):
    task_id: bytes
    error: RayTaskError


class Exited(NamedTuple):
    """An actor call (or __init__) called exit_actor(): the actor ends on purpose."""

    task_id: bytes


MESSAGES: tuple[type[tuple[Any, ...]], ...] = (
    Init, Fn, Task, Cancel, Credit, Reply, Exit,
    Ready, Req, Call, Release, Yield, Done, Failed,
    ActorStart, ActorRun, ActorStop, Exited,
)
TAGS: dict[type[tuple[Any, ...]], int] = {cls: i for i, cls in enumerate(MESSAGES)}
