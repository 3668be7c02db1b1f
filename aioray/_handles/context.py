"""``get_runtime_context()``: who and where the calling code is (driver, task, actor)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from aioray._backend import registry
from aioray._backend.base import ContextInfo


class RuntimeContext:
    """Ray's ``RuntimeContext``: ids of the job, task, actor and node, and the namespace.

    Each call asks the backend afresh (``info``), so a context kept in a variable follows the
    code that uses it, as Ray's does.
    """

    def __init__(self, info: Callable[[], ContextInfo]) -> None:
        self._info = info

    def get_job_id(self) -> str:
        return self._info().job_id

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_task_id(self) -> str | None:
        return self._info().task_id

    def is_canceled(self) -> bool:
        """Whether ``cancel()`` was called on the running task or actor call (a sync actor
        method is not interrupted by cancel; it can poll this to stop early)."""
        canceled = self._info().canceled
        if canceled is None:
            raise RuntimeError(
                "is_canceled() is only meaningful inside a task or an actor method.")
        return canceled

    def get_actor_id(self) -> str | None:
        return self._info().actor_id

    def get_actor_name(self) -> str | None:
        return self._info().actor_name

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return self._info().restarted

    def get_node_id(self) -> str:
        return self._info().node_id

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group the calling task or actor runs in, else None."""
        pg = registry.current().placement.current()
        return pg.id.hex() if pg is not None else None

    def get_runtime_env_string(self) -> str:
        """The calling code's runtime_env (the job's merged with its task's), as JSON."""
        return json.dumps(self._info().runtime_env)

    @property
    def runtime_env(self) -> dict[str, Any]:
        return dict(self._info().runtime_env)

    def get_worker_id(self) -> str:
        return f"{os.getpid()}"

    def get_namespace(self) -> str:
        return self._info().namespace

    @property
    def namespace(self) -> str:
        return self.get_namespace()

    def get_assigned_resources(self) -> dict[str, float]:
        return dict(self._info().assigned_resources)

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in self._info().gpu_ids]}

    def get(self) -> dict[str, Any]:
        info = self._info()
        return {"job_id": info.job_id, "task_id": info.task_id, "actor_id": info.actor_id,
                "namespace": info.namespace, "node_id": info.node_id}
