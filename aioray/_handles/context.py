"""``get_runtime_context()``: who and where the calling code is (driver, task, actor)."""

from __future__ import annotations

from typing import Any

from aioray import _runtime


def _worker() -> Any:
    return _runtime._worker_client


def current_gpu_ids() -> list[int]:
    w = _worker()
    if w is not None:
        return list(w.gpu_ids)
    from aioray._actor import current_actor
    from aioray._task_manager import current_task
    spec = current_task.get()
    if spec is not None and spec.grant is not None:
        return list(spec.grant.gpu_ids)
    actor = current_actor.get()
    if actor is not None and actor.grant is not None:
        return list(actor.grant.gpu_ids)
    return []


class RuntimeContext:
    """Ray's ``RuntimeContext``: ids of the job, task, actor and node, and the namespace."""

    def _rt(self) -> Any:
        return _runtime.current_backend()

    def get_job_id(self) -> str:
        w = _worker()
        return str(w.job_id if w is not None else self._rt().job_id)

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_task_id(self) -> str | None:
        w = _worker()
        if w is not None:
            return w.current_task.hex() if w.current_task else None
        from aioray._actor import current_call
        from aioray._task_manager import current_task
        call = current_call.get()
        if call is not None:
            return call.task_id.hex()
        spec = current_task.get()
        if spec is not None:
            return spec.task_id.hex()
        return None

    def is_canceled(self) -> bool:
        """Whether ``cancel()`` was called on the running task or actor call (a sync actor
        method is not interrupted by cancel; it can poll this to stop early)."""
        w = _worker()
        if w is not None:
            return w.current_task is not None and w._cancel_for == w.current_task
        from aioray._actor import current_call
        from aioray._task_manager import current_task
        call = current_call.get()
        if call is not None:
            return bool(call.cancelled)
        spec = current_task.get()
        if spec is not None:
            return bool(spec.cancelled)
        raise RuntimeError("is_canceled() is only meaningful inside a task or an actor method.")

    def get_actor_id(self) -> str | None:
        from aioray._actor import current_actor
        actor = current_actor.get()
        return actor.actor_id.hex() if actor is not None else None

    def get_actor_name(self) -> str | None:
        from aioray._actor import current_actor
        actor = current_actor.get()
        return actor.name if actor is not None else None

    @property
    def was_current_actor_reconstructed(self) -> bool:
        from aioray._actor import current_actor
        actor = current_actor.get()
        return bool(actor is not None and actor.restarts)

    def get_node_id(self) -> str:
        w = _worker()
        return str(w.node_id if w is not None else self._rt().node_id)

    def get_worker_id(self) -> str:
        import os
        return f"{os.getpid()}"

    def get_namespace(self) -> str:
        w = _worker()
        return str(w.namespace if w is not None else self._rt().namespace)

    @property
    def namespace(self) -> str:
        return self.get_namespace()

    def get_assigned_resources(self) -> dict[str, float]:
        from aioray._task_manager import current_task
        spec = current_task.get()
        return dict(spec.req) if spec is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in current_gpu_ids()]}

    def get(self) -> dict[str, Any]:
        return {"job_id": self.get_job_id(), "task_id": self.get_task_id(),
                "actor_id": self.get_actor_id(), "namespace": self.get_namespace(),
                "node_id": self.get_node_id()}


def get_runtime_context() -> RuntimeContext:
    rb = _runtime.ray_backend()
    if rb is not None:  # on the Ray backend, Ray's own context (same methods)
        return rb.runtime_context()  # type: ignore[no-any-return]
    return RuntimeContext()
