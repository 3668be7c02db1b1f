"""``aioray.util.state``: Ray's state API — what runs, waits, failed and lives, right now.

Ray's names and shapes (``list_tasks``, ``list_actors``, ``list_objects``, ``list_workers``,
``list_placement_groups``, ``get_task``/``get_actor``/…, ``summarize_*``; ``filters=[(key,
"=" or "!=", value)]``, ``limit``; records with Ray's fields and states, readable as
attributes or ``record["field"]``). Everything is in the driver's memory, so answers are exact
and need no dashboard; finished tasks are kept up to ``AIORAY_STATE_MAX_FINISHED`` (10,000).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from aioray._backend import registry
from aioray._handles.ref import ObjectRef

Filter = tuple[str, str, Any]
R = TypeVar("R", bound="_Record")


class _Record:
    """Ray's record behaviours: ``r.field``, ``r["field"]``, ``r.get(...)``, ``asdict()``."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def asdict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass
class TaskState(_Record):
    task_id: str
    attempt_number: int = 0
    name: str = ""
    state: str = "NIL"  # PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, ...
    job_id: str = ""
    actor_id: str | None = None
    type: str = "NORMAL_TASK"  # ACTOR_TASK, ACTOR_CREATION_TASK
    func_or_class_name: str = ""
    parent_task_id: str | None = None
    node_id: str = ""
    worker_id: str | None = None
    worker_pid: int | None = None
    error_type: str | None = None
    language: str = "PYTHON"
    required_resources: dict[str, float] = field(default_factory=dict)
    runtime_env_info: dict[str, Any] = field(default_factory=dict)
    placement_group_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    profiling_data: dict[str, Any] = field(default_factory=dict)
    creation_time_ms: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    task_log_info: dict[str, Any] | None = None
    error_message: str | None = None
    is_debugger_paused: bool = False


@dataclass
class ActorState(_Record):
    actor_id: str
    class_name: str = ""
    state: str = "PENDING_CREATION"  # ALIVE, RESTARTING, DEAD
    job_id: str = ""
    name: str = ""
    node_id: str = ""
    pid: int | None = None
    ray_namespace: str = ""
    serialized_runtime_env: str = ""
    required_resources: dict[str, float] = field(default_factory=dict)
    death_cause: dict[str, Any] | None = None
    is_detached: bool = False
    placement_group_id: str | None = None
    repr_name: str = ""
    num_restarts: int = 0


@dataclass
class ObjectState(_Record):
    object_id: str
    object_size: int = -1
    task_status: str = "NIL"
    attempt_number: int = 0
    reference_type: str = "LOCAL_REFERENCE"
    call_site: str = "disabled"
    type: str = "DRIVER"
    pid: int | None = None
    ip: str = "127.0.0.1"
    where: str = "memory"  # aioray's: "memory" (in the driver) or "shared memory"


@dataclass
class WorkerState(_Record):
    worker_id: str
    is_alive: bool = True
    worker_type: str = "WORKER"  # DRIVER
    exit_type: str | None = None
    node_id: str = ""
    ip: str = "127.0.0.1"
    pid: int = 0
    exit_detail: str | None = None
    worker_launch_time_ms: int | None = None
    worker_launched_time_ms: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    running: str | None = None  # aioray's: the task or actor it runs now


@dataclass
class PlacementGroupState(_Record):
    placement_group_id: str
    name: str = ""
    creator_job_id: str = ""
    state: str = "PENDING"  # CREATED, REMOVED
    bundles: list[dict[str, Any]] = field(default_factory=list)
    is_detached: bool = False
    stats: dict[str, Any] | None = None


_KINDS: dict[str, type[_Record]] = {
    "tasks": TaskState, "actors": ActorState, "objects": ObjectState, "workers": WorkerState,
    "placement_groups": PlacementGroupState}


def _rows(kind: str, cls: type[R]) -> list[R]:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return [cls(**{k: v for k, v in row.items() if k in names})
            for row in registry.current().state_rows(kind)]


def _matches(record: _Record, filters: list[Filter] | None) -> bool:
    for key, op, value in filters or ():
        if not hasattr(record, key):
            raise ValueError(f"Unknown filter key {key!r}; the columns are "
                             f"{sorted(f.name for f in fields(record))}.")  # type: ignore[arg-type]
        have = getattr(record, key)
        equal = str(have).lower() == str(value).lower() if isinstance(value, (str, bool)) \
            else have == value
        if op == "=":
            if not equal:
                return False
        elif op == "!=":
            if equal:
                return False
        else:
            raise ValueError(f"Unsupported filter predicate {op!r}: use '=' or '!='.")
    return True


def _list(kind: str, filters: list[Filter] | None, limit: int) -> list[Any]:
    cls = _KINDS[kind]
    out = [r for r in _rows(kind, cls) if _matches(r, filters)]
    return out[:limit] if limit is not None and limit >= 0 else out


def list_tasks(address: str | None = None, filters: list[Filter] | None = None,
               limit: int = 100, timeout: int = 30, detail: bool = False,
               raise_on_missing_output: bool = True, _explain: bool = False) -> list[TaskState]:
    """Tasks and actor calls: the running and waiting ones, then the finished ones newest
    last (Ray's ``list_tasks``)."""
    return _list("tasks", filters, limit)


def list_actors(address: str | None = None, filters: list[Filter] | None = None,
                limit: int = 100, timeout: int = 30, detail: bool = False,
                raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[ActorState]:
    return _list("actors", filters, limit)


def list_objects(address: str | None = None, filters: list[Filter] | None = None,
                 limit: int = 100, timeout: int = 30, detail: bool = False,
                 raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[ObjectState]:
    return _list("objects", filters, limit)


def list_workers(address: str | None = None, filters: list[Filter] | None = None,
                 limit: int = 100, timeout: int = 30, detail: bool = False,
                 raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[WorkerState]:
    return _list("workers", filters, limit)


def list_placement_groups(address: str | None = None, filters: list[Filter] | None = None,
                          limit: int = 100, timeout: int = 30, detail: bool = False,
                          raise_on_missing_output: bool = True,
                          _explain: bool = False) -> list[PlacementGroupState]:
    return _list("placement_groups", filters, limit)


def _hex(id: str | ObjectRef[Any] | Any) -> str:
    if isinstance(id, ObjectRef):
        return id.hex()[:48]  # a ref's id is its task's id and its index
    return str(id)


def get_task(id: str | ObjectRef[Any], address: str | None = None,
             timeout: int = 30, _explain: bool = False) -> TaskState | None:
    """The task (latest attempt) by its hex id or one of its refs."""
    want = _hex(id)
    found = [t for t in _rows("tasks", TaskState) if t.task_id == want]
    return found[-1] if found else None


def get_actor(id: str, address: str | None = None, timeout: int = 30,
              _explain: bool = False) -> ActorState | None:
    return next((a for a in _rows("actors", ActorState) if a.actor_id == id), None)


def get_worker(id: str, address: str | None = None, timeout: int = 30,
               _explain: bool = False) -> WorkerState | None:
    return next((w for w in _rows("workers", WorkerState) if w.worker_id == id), None)


def get_placement_group(id: str, address: str | None = None, timeout: int = 30,
                        _explain: bool = False) -> PlacementGroupState | None:
    return next((p for p in _rows("placement_groups", PlacementGroupState)
                 if p.placement_group_id == id), None)


def get_objects(id: str, address: str | None = None, timeout: int = 30,
                _explain: bool = False) -> list[ObjectState]:
    return [o for o in _rows("objects", ObjectState) if o.object_id == id]


def summarize_tasks(address: str | None = None, timeout: int = 30,
                    raise_on_missing_output: bool = True,
                    _explain: bool = False) -> dict[str, Any]:
    """Counts of tasks per function (or actor method) and state, in Ray's shape."""
    summary: dict[str, dict[str, Any]] = {}
    tasks = _rows("tasks", TaskState)
    for t in tasks:
        s = summary.setdefault(t.func_or_class_name, {
            "func_or_class_name": t.func_or_class_name, "type": t.type, "state_counts": {}})
        s["state_counts"][t.state] = s["state_counts"].get(t.state, 0) + 1
    return {"cluster": {
        "summary": summary, "total_tasks": sum(t.type == "NORMAL_TASK" for t in tasks),
        "total_actor_tasks": sum(t.type == "ACTOR_TASK" for t in tasks),
        "total_actor_scheduled": sum(t.type == "ACTOR_CREATION_TASK" for t in tasks),
        "summary_by": "func_name"}}


def summarize_actors(address: str | None = None, timeout: int = 30,
                     raise_on_missing_output: bool = True,
                     _explain: bool = False) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    actors = _rows("actors", ActorState)
    for a in actors:
        s = summary.setdefault(a.class_name, {"class_name": a.class_name, "state_counts": {}})
        s["state_counts"][a.state] = s["state_counts"].get(a.state, 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(actors),
                        "summary_by": "class"}}


def summarize_objects(address: str | None = None, timeout: int = 30,
                      raise_on_missing_output: bool = True,
                      _explain: bool = False) -> dict[str, Any]:
    objects = _rows("objects", ObjectState)
    by_where: dict[str, dict[str, Any]] = {}
    for o in objects:
        s = by_where.setdefault(o.where, {"total_objects": 0, "total_size_mb": 0.0})
        s["total_objects"] += 1
        s["total_size_mb"] += max(o.object_size, 0) / 2**20
    return {"cluster": {"summary": by_where, "total_objects": len(objects),
                        "total_size_mb": sum(max(o.object_size, 0) for o in objects) / 2**20,
                        "summary_by": "where"}}


__all__ = [
    "ActorState", "ObjectState", "PlacementGroupState", "TaskState", "WorkerState",
    "get_actor", "get_objects", "get_placement_group", "get_task", "get_worker",
    "list_actors", "list_objects", "list_placement_groups", "list_tasks", "list_workers",
    "summarize_actors", "summarize_objects", "summarize_tasks",
]
