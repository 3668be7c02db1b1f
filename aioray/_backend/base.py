"""The one interface every backend implements: the embedded engine (``aioray._engine``), the
worker-process side (``aioray._worker``) and the Ray adapter (``aioray._ray``).

Public faces (``aioray._api``, ``aioray.util``, the handles) call only what is declared here, on
``registry.current()``; they never ask which backend is active. Modelled on anyio's
``AsyncBackend``: an abstract class, so an implementation missing a method fails at creation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

from aioray._backend.metrics import MetricRecord
from aioray._backend.progress import BarState

if TYPE_CHECKING:
    from aioray._handles.actor import ActorClass, ActorHandle, MethodMeta
    from aioray._handles.function import RemoteFunction
    from aioray._handles.placement_group import PlacementGroup
    from aioray._handles.ref import ObjectRef
    from aioray._objects.store import ObjectEntry

ReduceValue = tuple[Callable[..., Any], tuple[Any, ...]]


class Entry(Protocol):
    """Where a ref that is not in this process's store gets its value (a worker's borrowed ref,
    a Ray ref): only its pickling is asked of it directly; values come through the backend."""

    def reduce_ref(self, ref: ObjectRef[Any]) -> ReduceValue: ...


class Stream(Protocol):
    """What an ``ObjectRefGenerator`` reads: its backend's view of a generator task's refs."""

    def next_ref(self) -> ObjectRef[Any]:
        """The next ref, blocking the calling thread; StopIteration at the end."""

    def anext_ref(self) -> Awaitable[ObjectRef[Any]]:
        """The next ref, awaited; StopAsyncIteration at the end (``__anext__`` returns this
        awaitable as it is: no coroutine layer per item)."""

    def completed(self) -> ObjectRef[None]: ...

    def is_finished(self) -> bool: ...

    def next_ready(self) -> bool: ...

    def task_id_hex(self) -> str: ...

    def wait_key(self) -> object:
        """Identifies the stream in one ``wait()`` call (duplicates are refused)."""

    def drop(self) -> None:
        """The generator object is gone (any thread): free what nobody can take any more."""


@dataclass(frozen=True)
class ContextInfo:
    """Who and where the calling code is: what ``get_runtime_context()`` reports."""

    job_id: str
    node_id: str
    namespace: str
    task_id: str | None = None
    actor_id: str | None = None
    actor_name: str | None = None
    restarted: bool = False
    canceled: bool | None = None  # None: not inside a task or actor call
    assigned_resources: dict[str, float] = field(default_factory=dict)
    gpu_ids: list[int] = field(default_factory=list)
    runtime_env: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeInfo:
    """What ``init`` reports about the backend it started or attached to."""

    node_id: str
    job_id: str
    namespace: str
    resources: dict[str, float]
    loop: str
    extra: dict[str, Any] = field(default_factory=dict)


class PlacementGroups(ABC):
    """Placement groups, as each backend keeps them."""

    @abstractmethod
    def create(self, bundles: list[dict[str, float]], strategy: str, name: str, lifetime: str | None,
               bundle_label_selector: Any) -> PlacementGroup: ...

    @abstractmethod
    def remove(self, pg: PlacementGroup) -> None: ...

    @abstractmethod
    def get(self, name: str) -> PlacementGroup: ...

    @abstractmethod
    def table(self, pg: PlacementGroup | None) -> dict[Any, Any]: ...

    @abstractmethod
    def current(self) -> PlacementGroup | None: ...

    @abstractmethod
    def ready(self, pg: PlacementGroup) -> ObjectRef[Any]: ...

    @abstractmethod
    def wait(self, pg: PlacementGroup, timeout_seconds: float) -> bool: ...

    @abstractmethod
    def infeasible_reason(self, pg: PlacementGroup) -> str | None:
        """Why ``pg`` can never be placed (None: it can, or it is unknown here)."""


class _UseActor:
    __slots__ = ()

    def __repr__(self) -> str:
        return "USE_ACTOR"


USE_ACTOR: Any = _UseActor()  # Queues.direct(): "go through the queue's actor"


class Queues(ABC):
    """How ``aioray.util.queue.Queue`` reaches its queue without an actor call, where the
    backend can: the engine shares the actor's ``asyncio.Queue`` with the driver and serves
    worker processes' non-waiting operations; elsewhere every operation is an actor call."""

    @abstractmethod
    def open(self, qid: str, maxsize: int) -> bool:
        """A queue is being created here; True if its actor will share it with this process."""

    @abstractmethod
    def actor_started(self, qid: str, maxsize: int) -> asyncio.Queue[Any]:
        """The queue the actor (its ``__init__`` runs now) should hold."""

    @abstractmethod
    def fast(self, qid: str) -> asyncio.Queue[Any] | None:
        """The queue itself, when the caller runs on the loop that owns it and it is alive."""

    @abstractmethod
    def direct(self, qid: str, maxsize: int, op: str, arg: Any) -> Any:
        """A non-waiting ``op`` (``queue_ops.apply``) without an actor call, or USE_ACTOR."""

    @abstractmethod
    def copy(self, item: Any, what: str) -> Any:
        """What the actor would store for ``item`` put from this process: a copy."""


class Backend(ABC):
    """Everything the public API needs from a runtime."""

    name: ClassVar[str]  # "embedded", "worker", "ray": for display only, never for branching
    supports_runtime_env: ClassVar[bool] = False
    job_id: str
    node_id: str
    namespace: str
    placement: PlacementGroups
    queues: Queues

    # -- tasks and actors ----------------------------------------------------------------
    @abstractmethod
    def submit_task(self, rf: RemoteFunction[Any, Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], options: dict[str, Any]) -> Any: ...

    @abstractmethod
    def create_actor(self, ac: ActorClass[Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                     options: dict[str, Any]) -> ActorHandle[Any]: ...

    @abstractmethod
    def call_actor(self, handle: ActorHandle[Any], meta: MethodMeta, args: tuple[Any, ...],
                   kwargs: dict[str, Any], options: dict[str, Any]) -> Any: ...

    @abstractmethod
    def kill(self, handle: ActorHandle[Any], no_restart: bool) -> None: ...

    @abstractmethod
    def get_actor(self, name: str, namespace: str | None) -> ActorHandle[Any]: ...

    @abstractmethod
    def list_named_actors(self, all_namespaces: bool) -> list[Any]:
        """Live named actors: names in this namespace, or ``{"name", "namespace"}`` dicts of
        every namespace (Ray's shapes)."""

    @abstractmethod
    def exit_actor(self) -> NoReturn: ...

    # -- progress bars (aioray.experimental.tqdm_ray) --------------------------------------
    @abstractmethod
    def progress(self, state: BarState) -> None:
        """A bar's new state, to draw in the driver."""

    @abstractmethod
    def progress_print(self, text: str, kwargs: dict[str, Any]) -> None:
        """Print in the driver without tearing the bars."""

    # -- the state API (aioray.util.state) -------------------------------------------------
    @abstractmethod
    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind`` ("tasks", "actors", "objects", "workers",
        "placement_groups") as a dict of Ray's state fields."""

    @abstractmethod
    def timeline(self) -> list[dict[str, Any]]:
        """Chrome trace events of the tasks and actor calls (``aioray.timeline``)."""

    # -- metrics (aioray.util.metrics) -----------------------------------------------------
    @abstractmethod
    def record_metric(self, record: MetricRecord) -> None: ...

    @abstractmethod
    def metrics_snapshot(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def reduce_handle(self, handle: ActorHandle[Any]) -> ReduceValue:
        """How a handle of this backend pickles."""

    @abstractmethod
    def rebuild_handle(self, actor_id: bytes, class_name: str,
                       methods: dict[str, MethodMeta]) -> ActorHandle[Any]: ...

    # -- objects -------------------------------------------------------------------------
    @abstractmethod
    def put(self, value: Any) -> ObjectRef[Any]: ...

    @abstractmethod
    def get(self, refs: Any, timeout: float | None) -> Any: ...

    @abstractmethod
    async def get_async(self, refs: Any, timeout: float | None) -> Any: ...

    @abstractmethod
    def wait(self, refs: Sequence[Any], num_returns: int, timeout: float | None,
             fetch_local: bool) -> tuple[list[Any], list[Any]]: ...

    @abstractmethod
    async def wait_async(self, refs: Sequence[Any], num_returns: int, timeout: float | None,
                         fetch_local: bool) -> tuple[list[Any], list[Any]]: ...

    @abstractmethod
    def await_ref(self, ref: ObjectRef[Any]) -> Awaitable[Any]:
        """What ``await ref`` waits on when the value is not already here."""

    def loop_waiter(self, entry: ObjectEntry
                    ) -> tuple[asyncio.Future[None], Callable[[], None]] | None:
        """``await ref`` of a pending entry of this process's store, awaited on the backend's
        own loop: a future completed when the entry resolves and the callback that completes
        it (to remove if the await is cancelled) — or None, for the general ``await_ref``.
        Only the embedded engine has such a loop; it keeps the hottest await to one future."""
        return None

    @abstractmethod
    def ref_future(self, ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]: ...

    @abstractmethod
    def rebuild_ref(self, id: bytes) -> ObjectRef[Any]:
        """Unpickle a ref (or, for an actor id, a handle that pins its actor) in this process."""

    @abstractmethod
    def notify_ready(self, refs: Sequence[ObjectRef[Any]],
                     push: Callable[[ObjectRef[Any]], None]) -> None:
        """Call ``push(ref)`` (from any thread) as each ref becomes ready."""

    @abstractmethod
    def cancel(self, target: Any, force: bool, recursive: bool) -> None: ...

    # -- the node and the caller ---------------------------------------------------------
    @abstractmethod
    def cluster_resources(self) -> dict[str, float]: ...

    @abstractmethod
    def available_resources(self) -> dict[str, float]: ...

    @abstractmethod
    def nodes(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def gpu_ids(self) -> list[int]: ...

    @abstractmethod
    def runtime_context(self) -> Any:
        """``get_runtime_context()``: aioray's RuntimeContext, or Ray's own on Ray."""

    @abstractmethod
    def runtime_info(self) -> RuntimeInfo: ...

    @abstractmethod
    def on_own_loop(self) -> bool:
        """Whether the caller runs on this backend's event loop thread (where blocking waits
        would deadlock)."""

    @abstractmethod
    def check_strategy(self, strategy: object) -> None:
        """Refuse at submission a scheduling strategy this backend can never satisfy."""

    @abstractmethod
    def is_stale(self) -> bool:
        """Shut down, or its adopted loop closed: the registry replaces it."""

    @abstractmethod
    def shutdown(self) -> None: ...
