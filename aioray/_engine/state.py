"""What ``aioray.util.state`` reads: rows built on demand from the engine's own structures.

Live tasks, actor calls, actors, objects, workers and placement groups are read where they
already are (nothing is recorded for them); only what would otherwise be forgotten is kept: the
last ``AIORAY_STATE_MAX_FINISHED`` (10,000) finished tasks and calls, and dead actors, as
small typed records. Loop thread (the backend's ``state_rows`` hops there).
"""

from __future__ import annotations

import gc
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from aioray._engine import tracing
from aioray._handles.options import resource_request
from aioray._objects.serialization import ErrorValue, SerializedObject
from aioray._objects.shm import SharedBuffer
from aioray._objects.store import PENDING, ObjectEntry

if TYPE_CHECKING:
    from aioray._engine.actor_state import ActorCall, ActorState
    from aioray._engine.runtime import Runtime
    from aioray._engine.tasks import TaskSpec


def _keep() -> int:
    try:
        return max(0, int(os.environ.get("AIORAY_STATE_MAX_FINISHED", "10000")))
    except ValueError:
        return 10_000


class Finished(NamedTuple):
    """A task or actor call that ended (kept for list_tasks after it is gone). Raw fields:
    recording happens once per task on the hot path; rows are formatted when read."""

    task_id: bytes
    name: str  # as given: "f", "test.<locals>.f"; an actor call's method: "incr"
    func: str  # the function's name; an actor call's class: "Counter"
    actor_id: bytes | None
    attempt: int
    error: tuple[str, str] | None  # (type, first line of the message) of a failure
    required_resources: tuple[tuple[str, float], ...]
    pid: int  # 0: not known (never started)
    parent: bytes | None
    created: float
    started: float | None
    ended: float
    lane: str  # "event loop", "threads", "tasks"; an actor call's class: the timeline's lanes


def _failure(returns: list[Any], sink: Any) -> tuple[str, str] | None:
    """The type and message of the error the outputs hold, if they hold one."""
    done = getattr(sink, "completed_entry", None)  # a streaming generator's end marker
    v = done.value if done is not None else returns[0].value if returns else None
    if type(v) is not ErrorValue:
        return None
    err = v.error
    cause = getattr(err, "cause", None)
    kind = type(cause if isinstance(cause, BaseException) else err).__name__
    text = str(err)
    return kind, text.splitlines()[0] if text else kind


_LANES = {"loop": "event loop", "thread": "threads", "process": "tasks"}
_PID = os.getpid()


def _short(name: str) -> str:
    """A function's name as users write it: ``f``, not ``test.<locals>.f``."""
    return name.rsplit("<locals>.", 1)[-1]


def _names(f: Finished) -> tuple[str, str, str]:
    """A record's name, function (or Class.method) and timeline lane, as shown."""
    if f.actor_id:
        name = f"{f.func}.{f.name}"
        return name, name, f"actor {f.func}"
    return _short(f.name), _short(f.func), f.lane


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


class StateBook:
    """The finished tasks and dead actors to remember, and the rows of each kind."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        keep = _keep()
        self.finished: deque[tuple[Any, ...]] = deque(maxlen=keep)  # Finished's fields
        self.dead: deque[dict[str, Any]] = deque(maxlen=keep)
        self.on = keep > 0

    # -- recording (loop thread) ----------------------------------------------------------
    # Once per task and call, on the hot path: a plain tuple of atomic values (the cyclic GC
    # untracks such tuples, so 10,000 kept records cost it nothing; a NamedTuple or a dict in
    # it would be tracked), made a Finished record when read.
    def task_done(self, spec: TaskSpec) -> None:
        pid = spec.pid
        req = spec.req
        self.finished.append((
            spec.task_id, spec.name, spec.rf._name, None, spec.attempt,
            _failure(spec.returns, spec.sink), tuple(req.items()) if req else (),
            pid or (_PID if spec.started is not None else 0), spec.parent, spec.created,
            spec.started, time.time(), "tasks" if pid else _LANES[spec.executor.value]))

    def call_done(self, call: ActorCall, actor: ActorState | None) -> None:
        if actor is None:
            cls, pid = "actor", 0
        else:
            cls = actor.ac.__name__
            host = actor.host
            pid = host.worker.pid if host is not None and host.worker is not None else _PID
        self.finished.append((
            call.task_id, call.meta.name, cls, call.actor_id, call.attempt,
            _failure(call.returns, call.sink), (), pid, None, call.created, call.started,
            time.time(), cls))

    def _records(self) -> list[Finished]:
        return [Finished._make(t) for t in list(self.finished)]

    def actor_dead(self, actor: ActorState) -> None:
        row = self._actor_row(actor)
        row["state"] = "DEAD"
        cause = actor.death_cause
        row["death_cause"] = None if cause is None else {
            "error_type": type(cause).__name__, "error_message": str(cause)}
        self.dead.append(row)

    # -- reading --------------------------------------------------------------------------
    def rows(self, kind: str) -> list[dict[str, Any]]:
        return getattr(self, f"_{kind}")()  # type: ignore[no-any-return]

    def _tasks(self) -> list[dict[str, Any]]:
        rt = self.rt
        out = [self._live_task(s) for s in list(rt.tasks.tasks.values())]
        for call in list(rt.actors.calls.values()):
            out.append(self._live_call(call))
        for f in self._records():
            out.append(self._finished_row(f))
        return out

    def _base(self) -> dict[str, Any]:
        return {"job_id": self.rt.job_id, "node_id": self.rt.node_id}

    def _live_task(self, spec: TaskSpec) -> dict[str, Any]:
        deps_pending = any(d._entry.value is PENDING for d in spec.deps)
        if spec.started is not None:
            state = "RUNNING"
        elif deps_pending:
            state = "PENDING_ARGS_AVAIL"
        else:
            state = "PENDING_NODE_ASSIGNMENT"  # waiting for resources (or a worker)
        worker = spec.worker
        return {**self._base(), "task_id": spec.task_id.hex(), "attempt_number": spec.attempt,
                "name": _short(spec.name), "state": state, "type": "NORMAL_TASK",
                "func_or_class_name": _short(spec.rf._name),
                "parent_task_id": spec.parent.hex() if spec.parent else None,
                "worker_pid": worker.pid if worker is not None else (
                    os.getpid() if spec.started is not None else None),
                "required_resources": dict(spec.req),
                "creation_time_ms": _ms(spec.created), "start_time_ms": _ms(spec.started)}

    def _live_call(self, call: ActorCall) -> dict[str, Any]:
        actor = self.rt.actors.actors.get(call.actor_id)
        cls = actor.ac.__name__ if actor is not None else "actor"
        if call.started is not None:
            state = "RUNNING"
        elif call.deps and any(d._entry.value is PENDING for d in call.deps):
            state = "PENDING_ARGS_AVAIL"
        else:
            state = "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
        return {**self._base(), "task_id": call.task_id.hex(), "attempt_number": call.attempt,
                "name": f"{cls}.{call.meta.name}", "state": state, "type": "ACTOR_TASK",
                "func_or_class_name": f"{cls}.{call.meta.name}",
                "actor_id": call.actor_id.hex(),
                "creation_time_ms": _ms(call.created), "start_time_ms": _ms(call.started)}

    def _finished_row(self, f: Finished) -> dict[str, Any]:
        err = f.error
        return {**self._base(), "task_id": f.task_id.hex(), "attempt_number": f.attempt,
                "name": _names(f)[0], "state": "FAILED" if err else "FINISHED",
                "type": "ACTOR_TASK" if f.actor_id else "NORMAL_TASK",
                "func_or_class_name": _names(f)[1],
                "actor_id": f.actor_id.hex() if f.actor_id else None,
                "error_type": err[0] if err else None, "error_message": err[1] if err else None,
                "required_resources": dict(f.required_resources), "worker_pid": f.pid or None,
                "parent_task_id": f.parent.hex() if f.parent else None,
                "creation_time_ms": _ms(f.created), "start_time_ms": _ms(f.started),
                "end_time_ms": _ms(f.ended)}

    def _actor_row(self, a: ActorState) -> dict[str, Any]:
        host = a.host
        pid = (host.worker.pid if host is not None and host.worker is not None
               else None if a.placement.value == "process" else os.getpid())
        return {**self._base(), "actor_id": a.actor_id.hex(), "class_name": a.ac.__name__,
                "state": {"PENDING": "PENDING_CREATION"}.get(a.status.value, a.status.value),
                "name": a.name or "", "pid": pid, "ray_namespace": a.namespace,
                "required_resources": resource_request(a.opts, 0.0),
                "is_detached": a.detached, "repr_name": a.ac.__name__,
                "num_restarts": a.restarts, "placement": a.placement.value}

    def _actors(self) -> list[dict[str, Any]]:
        return [self._actor_row(a) for a in list(self.rt.actors.actors.values())] + list(
            self.dead)

    def _objects(self) -> list[dict[str, Any]]:
        """Every live object of this process: found by a walk of the heap, on demand, so
        that no put or result pays for being listable."""
        out = []
        for entry in [o for o in gc.get_objects() if type(o) is ObjectEntry]:
            id, v = entry.id, entry.value
            size, where = -1, "memory"
            if type(v) is SerializedObject:
                size = len(v.data) + sum(b.size if isinstance(b, SharedBuffer) else len(b)
                                         for b in v.buffers)
                if any(isinstance(b, SharedBuffer) for b in v.buffers):
                    where = "shared memory"
            out.append({"object_id": id.hex(), "object_size": size, "where": where,
                        "task_status": "PENDING" if v is PENDING else (
                            "FAILED" if type(v) is ErrorValue else "FINISHED"),
                        "pid": os.getpid()})
        return out

    def _workers(self) -> list[dict[str, Any]]:
        rt = self.rt
        out: list[dict[str, Any]] = [{"worker_id": f"driver-{os.getpid()}", "pid": os.getpid(),
                                      "worker_type": "DRIVER", "node_id": rt.node_id,
                                      "is_alive": True}]
        for w in list(rt.workers.workers):
            run = w.run
            host = w.host
            running = (f"actor {host.state.ac.__name__}" if host is not None
                       else self._task_name(run.task_id) if run is not None else None)
            out.append({"worker_id": str(w.pid), "pid": w.pid, "worker_type": "WORKER",
                        "node_id": rt.node_id, "is_alive": not w.dead, "running": running})
        return out

    def _task_name(self, task_id: bytes) -> str | None:
        spec = self.rt.tasks.tasks.get(task_id)
        return f"task {_short(spec.name)}" if spec is not None else None

    def _placement_groups(self) -> list[dict[str, Any]]:
        out = []
        for info in self.rt.placement.table(None).values():
            out.append({"placement_group_id": info["placement_group_id"],
                        "name": info.get("name") or "", "creator_job_id": self.rt.job_id,
                        "state": info.get("state", "PENDING"),
                        "bundles": [{"bundle_id": i, "unit_resources": dict(b)}
                                    for i, b in dict(info.get("bundles") or {}).items()],
                        "is_detached": info.get("lifetime") == "detached",
                        "stats": info.get("stats")})
        return out


# -- the timeline (aioray.timeline) -----------------------------------------------------------
def timeline_events(book: StateBook) -> list[dict[str, Any]]:
    """Chrome trace events (Perfetto, chrome://tracing) of the tasks and actor calls the book
    knows: per task a "queued" span (async, on the driver's scheduler track: they overlap)
    from submission to start, then its run on the lane of the process it ran in — the event
    loop, the driver's threads, a worker process, an actor's process."""
    driver = os.getpid()
    now = time.time()
    events: list[dict[str, Any]] = []
    lanes: dict[tuple[int, str], int] = {}

    def lane(pid: int, name: str) -> int:
        tid = lanes.get((pid, name))
        if tid is None:
            tid = lanes[(pid, name)] = len(lanes) + 1
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                           "args": {"name": name}})
        return tid

    procs: dict[int, str] = {driver: "driver"}
    for w in list(book.rt.workers.workers):
        procs[w.pid] = (f"actor {w.host.state.ac.__name__}" if w.host is not None
                        else "worker")
    rows = book._records()
    for f in rows:
        if f.pid and f.pid not in procs:
            lane_name = _names(f)[2]
            procs[f.pid] = lane_name if f.actor_id else "worker"
    for pid, name in procs.items():
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
    sched = lane(driver, "scheduler (queued)")
    live = [(s.task_id.hex(), _short(s.name), s.created, s.started, s.pid or driver)
            for s in list(book.rt.tasks.tasks.values())]
    for n, f in enumerate(rows):
        name, _, lane_name = _names(f)
        args = {"task_id": f.task_id.hex(), "state": "FAILED" if f.error else "FINISHED",
                "attempt": f.attempt}
        if f.error:
            args["error_type"] = f.error[0]
        start = f.started if f.started is not None else f.ended
        events.append({"name": name, "cat": "queued", "ph": "b", "id": n, "pid": driver,
                       "tid": sched, "ts": f.created * 1e6})
        events.append({"name": name, "cat": "queued", "ph": "e", "id": n, "pid": driver,
                       "tid": sched, "ts": start * 1e6})
        if f.started is not None:
            pid = f.pid or driver
            kind = "actor_task" if f.actor_id else "normal_task"
            events.append({"name": name, "cat": kind, "ph": "X", "pid": pid,
                           "tid": lane(pid, lane_name), "ts": f.started * 1e6,
                           "dur": max(0.0, (f.ended - f.started) * 1e6), "args": args})
    trace = tracing.ACTIVE
    if trace is not None:  # generator items and large transfers (detailed tracing on)
        runs = {e["args"]["task_id"]: (e["pid"], e["tid"]) for e in events
                if e.get("ph") == "X"}
        for it in list(trace.items):
            pid, tid = runs.get(it.task_id.hex(), (driver, sched))
            events.append({"name": "item", "cat": "generator_item", "ph": "i", "s": "t",
                           "pid": pid, "tid": tid, "ts": it.t * 1e6,
                           "args": {"task_id": it.task_id.hex()}})
        moves = lane(driver, "object transfers")
        for tr in list(trace.transfers):
            events.append({"name": f"{tr.nbytes / 1e6:.1f} MB from pid {tr.pid}",
                           "cat": "transfer", "ph": "i", "s": "t", "pid": driver,
                           "tid": moves, "ts": tr.t * 1e6,
                           "args": {"task_id": tr.task_id.hex(), "bytes": tr.nbytes}})
    for task_id, name, _created, started, pid in live:
        if started is not None:
            events.append({"name": name, "cat": "normal_task", "ph": "X", "pid": pid,
                           "tid": lane(pid, "tasks" if pid != driver else "event loop"),
                           "ts": started * 1e6, "dur": (now - started) * 1e6,
                           "args": {"task_id": task_id, "state": "RUNNING"}})
    return events
