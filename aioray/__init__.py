"""aioray: Ray Core's programming model as an asyncio-native runtime in one Python process.

``import aioray as ray`` runs Ray Core code unchanged. Everything below is re-exported from
private packages. The layering, bottom to top (imports only point down; ``make lint`` checks it
with import-linter, see ``.importlinter``):

* ``exceptions``, ``dag`` — leaves: they import nothing else of aioray.
* ``_objects`` — values: pickling, serialization, shared memory, the store's entries, ids.
* ``_backend`` — the seam: the ``Backend`` interface every implementation provides, and the
  registry that picks one and loads it *by module name* (so nothing below the implementations
  imports them).
* ``_handles`` — what users hold: refs, remote functions, actor classes and handles,
  generators, placement groups, strategies. They call only ``registry.current()``.
* implementations, side by side and independent: ``_engine`` (the embedded runtime: the loop,
  tasks, actors, streams, scheduling, worker pool), ``_worker`` (the worker process's side) and
  ``_ray`` (the same API on Ray). ``_wire`` (frames) is shared by the engine and the worker.
* faces: ``_api`` (the public functions), ``util``, ``actor``, this module — pure forwards.
"""

# actor and util too: Ray code calls ray.actor.exit_actor() and ray.util.ActorPool without
# importing those modules.
from aioray import actor, cloudpickle, dag, exceptions, job_config, runtime_context, util
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
    get_runtime_context,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    remote,
    shutdown,
    timeline,
    wait,
    wait_async,
)
from aioray._handles.actor import ActorClass, ActorHandle, method
from aioray._handles.context import RuntimeContext
from aioray._handles.function import RemoteFunction
from aioray._handles.generator import DynamicObjectRefGenerator, ObjectRefGenerator
from aioray._handles.ref import ObjectRef

__version__ = "0.1.0"
ObjectID = ObjectRef  # Ray's deprecated alias of ObjectRef

__all__ = [
    "ActorClass",
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectID",
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
    "cloudpickle",
    "cluster_resources",
    "dag",
    "exceptions",
    "get",
    "get_actor",
    "get_async",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "job_config",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "runtime_context",
    "shutdown",
    "timeline",
    "util",
    "wait",
    "wait_async",
]
