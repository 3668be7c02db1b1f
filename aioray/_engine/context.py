"""Who is running: the task or actor call the current code belongs to (context variables).

Set by the engine around every task body and actor call; read by ``get_runtime_context()``,
``get_gpu_ids()``, nested submissions (placement-group capture, CPU lending) and
``exit_actor()``.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aioray._engine.actor_state import ActorCall, ActorState
    from aioray._engine.tasks import TaskSpec

current_task: contextvars.ContextVar[TaskSpec | None] = contextvars.ContextVar(
    "aioray_current_task", default=None)
current_actor: contextvars.ContextVar[ActorState | None] = contextvars.ContextVar(
    "aioray_current_actor", default=None)
current_call: contextvars.ContextVar[ActorCall | None] = contextvars.ContextVar(
    "aioray_current_call", default=None)
