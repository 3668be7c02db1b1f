"""aioray: Ray Core's programming model as an asyncio-native runtime in one Python process.

``import aioray as ray`` runs Ray Core code unchanged. Everything below is re-exported from
private modules; the layering, bottom to top:

* ``_object_store`` / ``_object_ref`` / ``_serialization`` / ``_shared_memory`` — objects
* ``_scheduler`` (resources) · ``_worker_pool`` + ``_worker_main`` (processes) ·
  ``_task_manager`` (task lifecycle) · ``_actor`` · ``_generator`` — execution
* ``_runtime`` — the one loop and the object that owns all of the above
* ``_api`` — the public functions, thin forwards to the runtime
"""

# actor and util too: Ray code calls ray.actor.exit_actor() and ray.util.ActorPool without
# importing those modules.
from aioray import actor, exceptions, util
from aioray._actor import ActorClass, ActorHandle, method
from aioray._api import (
    RuntimeInfo,
    as_completed,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_async,
    get_gpu_ids,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    remote,
    shutdown,
    wait,
    wait_async,
)
from aioray._generator import DynamicObjectRefGenerator, ObjectRefGenerator
from aioray._object_ref import ObjectRef
from aioray._remote_function import RemoteFunction
from aioray._runtime_context import RuntimeContext, get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "RemoteFunction",
    "RuntimeContext",
    "RuntimeInfo",
    "__version__",
    "actor",
    "as_completed",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_async",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
    "wait_async",
]
