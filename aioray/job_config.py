"""``ray.job_config``: :class:`JobConfig`, what ``init(job_config=...)`` takes.

aioray runs one job in one process: a ``JobConfig`` is accepted and kept; its
``runtime_env`` is applied as ``init(runtime_env=...)`` would be (when ``init`` gets none of
its own), the rest describes a cluster job and has no effect here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JobConfig"]


class JobConfig:
    """Ray's job configuration (``ray.job_config.JobConfig``)."""

    def __init__(self, jvm_options: list[str] | None = None,
                 code_search_path: list[str] | None = None,
                 runtime_env: dict[str, Any] | None = None,
                 metadata: dict[str, str] | None = None,
                 ray_namespace: str | None = None,
                 default_actor_lifetime: str = "non_detached",
                 _py_driver_sys_path: list[str] | None = None) -> None:
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.runtime_env = dict(runtime_env or {})
        self.metadata = dict(metadata or {})
        self.ray_namespace = ray_namespace
        self.default_actor_lifetime = default_actor_lifetime
        self._py_driver_sys_path = list(_py_driver_sys_path or [])

    def set_runtime_env(self, runtime_env: dict[str, Any] | None) -> None:
        self.runtime_env = dict(runtime_env or {})

    def set_ray_namespace(self, ray_namespace: str) -> None:
        self.ray_namespace = ray_namespace

    def set_metadata(self, key: str, value: str) -> None:
        self.metadata[key] = value

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        self.default_actor_lifetime = default_actor_lifetime

    def __repr__(self) -> str:
        return (f"JobConfig(runtime_env={self.runtime_env!r}, metadata={self.metadata!r}, "
                f"ray_namespace={self.ray_namespace!r})")
