"""The public functions: thin forwards to the current backend (``aioray._backend.registry``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast, overload

from aioray._backend import registry
from aioray._backend.base import Backend
from aioray._handles.actor import ActorClass, ActorHandle
from aioray._handles.function import RemoteFunction
from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.options import check_namespace, check_runtime_env
from aioray._handles.ref import ObjectRef
from aioray._handles.validate import NOT_ASYNCIO
from aioray.exceptions import GetTimeoutError

T = TypeVar("T")
R = TypeVar("R")
Y = TypeVar("Y")
# What wait() accepts and hands back, kept as given (refs and generators).
W = TypeVar("W", bound="ObjectRef[Any] | ObjectRefGenerator[Any]")
_Waitable: TypeAlias = "ObjectRef[Any] | ObjectRefGenerator[Any]"
P = ParamSpec("P")

# init() arguments that only matter on a cluster or for Ray's own processes: accepted, no-ops.
_INIT_NOOPS = frozenset({
    "include_dashboard", "dashboard_host", "dashboard_port", "configure_logging",
    "logging_level", "logging_format", "job_config",
    "labels", "storage", "_system_config", "_memory", "_node_ip_address",
    "_enable_object_reconstruction", "_plasma_directory", "logging_config", "_metrics_export_port",
    "enable_resource_isolation", "_redis_max_memory", "_prestart_workers",
})
# init() arguments Ray has that size or place aioray's object store (see aioray/_objects/shm.py).
_INIT_STORE = frozenset({"object_store_memory", "_temp_dir"})


class RuntimeInfo(dict[str, Any]):
    """What ``init`` returns (Ray returns a context with ``address_info``); usable as a
    context manager that shuts aioray down on exit."""

    def __enter__(self) -> RuntimeInfo:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()

    @property
    def address_info(self) -> dict[str, Any]:
        return dict(self)

    @property
    def dashboard_url(self) -> None:
        return None


def init(address: str | None = None, *, num_cpus: float | None = None,
         num_gpus: float | None = None, resources: dict[str, float] | None = None,
         namespace: str | None = None, local_mode: bool = False,
         ignore_reinit_error: bool = False, runtime_env: dict[str, Any] | None = None,
         **kwargs: Any) -> RuntimeInfo:
    """Start aioray in this process.

    Inside a running event loop (an async app, a pytest-asyncio test) aioray adopts that loop;
    otherwise it runs its own loop on a background thread. ``local_mode=True`` (or
    ``AIORAY_LOCAL_MODE=1``) runs sync tasks on threads in this process, so breakpoints and
    coverage see them.
    """
    check_namespace(namespace)
    tracing_on = bool(kwargs.pop("_tracing", False))  # aioray's: timeline detail (embedded)
    unknown = sorted(set(kwargs) - _INIT_NOOPS - _INIT_STORE
                     - {"redis_address", "log_to_driver"})
    if unknown:
        raise TypeError(
            f"init() got unexpected argument(s) {', '.join(unknown)}. aioray accepts: address, "
            "num_cpus, num_gpus, resources, namespace, local_mode, ignore_reinit_error, "
            f"runtime_env, object_store_memory, _temp_dir, log_to_driver, _tracing, and (as no-ops) {', '.join(sorted(_INIT_NOOPS))}.")
    address = address or kwargs.get("redis_address")
    if address != "local" and registry.wants_ray(address):
        return _init_ray(address, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                         namespace=namespace, local_mode=local_mode,
                         ignore_reinit_error=ignore_reinit_error, runtime_env=runtime_env,
                         **{k: v for k, v in kwargs.items() if k != "redis_address"})
    if address not in (None, "local"):
        raise ValueError(
            f"init(address={address!r}) connects to a Ray cluster, but aioray runs in this "
            "process. Drop the address to use aioray, or run the program on Ray itself "
            "(import ray) to use a cluster. To run this program on Ray through aioray, use "
            "init(address='ray://host:10001' | 'auto' | 'local-ray') or AIORAY_BACKEND=ray.")
    job = kwargs.get("job_config")  # Ray's JobConfig: its runtime_env and namespace apply
    if job is not None:
        runtime_env = runtime_env or getattr(job, "runtime_env", None) or None
        namespace = namespace or getattr(job, "ray_namespace", None)
    # The job's runtime_env: env_vars / working_dir / py_modules for the worker processes
    # (merged with each task's own, as in Ray); anything else is a ValueError naming it.
    job_env = check_runtime_env(runtime_env, "init()") if runtime_env else None
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    for k, v in (resources or {}).items():
        if k in ("CPU", "GPU"):
            raise ValueError(f"Use num_cpus/num_gpus instead of resources={{{k!r}: ...}}.")
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"resources[{k!r}] must be a non-negative number, got {v!r}.")
    with registry.lock:
        backend = registry.embedded()
        if backend is not None:
            if not ignore_reinit_error:
                raise _twice()
        else:
            backend = registry.start_embedded(num_cpus=num_cpus, num_gpus=num_gpus,
                                              resources=resources, namespace=namespace,
                                              local_mode=local_mode, runtime_env=job_env,
                                              object_store_memory=kwargs.get(
                                                  "object_store_memory"),
                                              temp_dir=kwargs.get("_temp_dir"),
                                              log_to_driver=bool(kwargs.get("log_to_driver",
                                                                            True)),
                                              tracing_on=tracing_on)
    return _info(backend)


def _twice() -> RuntimeError:
    return RuntimeError(
        "aioray.init() was called twice (maybe by accident?). Pass ignore_reinit_error=True "
        "to ignore this, or call aioray.shutdown() first.")


def _info(backend: Backend) -> RuntimeInfo:
    info = backend.runtime_info()
    if info.extra:  # the Ray backend: Ray's own address info
        return RuntimeInfo(info.extra)
    return RuntimeInfo(node_id=info.node_id, job_id=info.job_id, namespace=info.namespace,
                       resources=dict(info.resources), loop=info.loop)


def _init_ray(address: str | None, *, ignore_reinit_error: bool, **kwargs: Any) -> RuntimeInfo:
    """``init`` for the Ray backend (see ``aioray._ray.backend``)."""
    with registry.lock:
        if registry.is_initialized():
            if not ignore_reinit_error:
                raise _twice()
            backend = registry.current()
        else:
            backend = registry.start_ray(address, **kwargs)
    return _info(backend)


def shutdown() -> None:
    """Stop aioray: in-flight work resolves to ``RuntimeShutdownError``, workers exit."""
    registry.shutdown()


def is_initialized() -> bool:
    return registry.is_initialized()


class _RemoteDecorator(Protocol):
    """What ``remote(**options)`` returns: the same typing as bare ``@remote``."""

    # The overlaps mypy reports are intended: the first matching overload wins.
    @overload
    def __call__(self, fn: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> RemoteFunction[P, ObjectRef[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncIterator[Y]], /  # type: ignore[overload-overlap]
                 ) -> RemoteFunction[P, ObjectRefGenerator[Y]]: ...
    @overload
    def __call__(self, fn: Callable[P, Iterator[Y]], /  # type: ignore[overload-overlap]
                 ) -> RemoteFunction[P, ObjectRefGenerator[Y]]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> RemoteFunction[P, ObjectRef[R]]: ...


class _UntypedReturnDecorator(Protocol):
    """``remote(num_returns=...)``: arguments stay checked, ``.remote()`` returns ``Any``
    (a list of refs, one ref, a generator... depending on the value)."""

    @overload
    def __call__(self, fn: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Any], /) -> RemoteFunction[P, Any]: ...


# Typing: classes first (a class is also a Callable); then async def -> ObjectRef[awaited],
# generator functions (annotated ``-> Iterator[Y]``/``Generator[Y, ...]`` or the async
# forms) -> ObjectRefGenerator[Y], anything else -> ObjectRef[return type]. The overlaps mypy
# reports are intended: the first matching overload wins.
@overload
def remote(fn: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
@overload
def remote(fn: Callable[P, Coroutine[Any, Any, R]], /) -> RemoteFunction[P, ObjectRef[R]]: ...
@overload
def remote(  # type: ignore[overload-overlap]
    fn: Callable[P, AsyncIterator[Y]], /) -> RemoteFunction[P, ObjectRefGenerator[Y]]: ...
@overload
def remote(  # type: ignore[overload-overlap]
    fn: Callable[P, Iterator[Y]], /) -> RemoteFunction[P, ObjectRefGenerator[Y]]: ...
@overload
def remote(fn: Callable[P, R], /) -> RemoteFunction[P, ObjectRef[R]]: ...
@overload
def remote(*, num_returns: int | str | None, **options: Any) -> _UntypedReturnDecorator: ...
@overload
def remote(**options: Any) -> _RemoteDecorator: ...


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a task (``f.remote()``) or a class an actor (``Cls.remote()``).

    Use bare (``@remote``) or with options (``@remote(num_cpus=2, num_returns=2)``).
    """
    if args:
        if len(args) != 1 or options or not callable(args[0]):
            raise TypeError(
                "@remote takes either one function/class or keyword options only, e.g. "
                "@aioray.remote or @aioray.remote(num_cpus=2).")
        return _make_remote(args[0], {})
    if not options:
        # Ray's check (an AssertionError there too): empty brackets are a mistake.
        raise AssertionError(
            "The @remote decorator must be applied either with no arguments and no "
            "parentheses, e.g. @aioray.remote, or with some options, e.g. "
            "@aioray.remote(num_cpus=2, num_returns=2). Drop the empty brackets: @remote().")

    def deco(target: Any) -> Any:
        return _make_remote(target, options)
    return deco


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise TypeError(f"@remote expects a function or a class, got {type(target).__name__}.")


@overload
def get(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
def get(refs: Sequence[ObjectRef[T]], *, timeout: float | None = None) -> list[T]: ...


def get(refs: ObjectRef[Any] | Sequence[ObjectRef[Any]], *,
        timeout: float | None = None) -> Any:
    """The value of a ref (or the values of a list of refs), blocking this thread.

    Raises the task's error (a ``RayTaskError`` that is also the user's exception class),
    ``GetTimeoutError`` after ``timeout`` seconds. In async code use ``await ref``.
    """
    return registry.current().get(refs, timeout)


@overload
async def get_async(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
async def get_async(refs: Sequence[ObjectRef[T]], *,
                    timeout: float | None = None) -> list[T]: ...


async def get_async(refs: ObjectRef[Any] | Sequence[ObjectRef[Any]], *,
                    timeout: float | None = None) -> Any:
    """``get`` for async code: ``await aioray.get_async([r1, r2], timeout=5)``."""
    return await registry.current().get_async(refs, timeout)


def put(value: T, **_ignored: Any) -> ObjectRef[T]:
    """Store an immutable copy of ``value``; returns its ref."""
    return registry.current().put(value)


# Typing: a list of one kind (refs of T, or generators) comes back as that kind; a mixed list
# as the union, so isinstance(r, ObjectRefGenerator) tells them apart.
@overload
def wait(refs: Sequence[W], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[W], list[W]]: ...
@overload
def wait(  # type: ignore[overload-cannot-match]  # it does: mixed lists fail W's bound
        refs: Sequence[_Waitable], *, num_returns: int = 1, timeout: float | None = None,
        fetch_local: bool = True) -> tuple[list[_Waitable], list[_Waitable]]: ...


def wait(refs: Sequence[_Waitable], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
    """Split refs (and generators) into ``(ready, not_ready)`` once ``num_returns`` are ready
    or ``timeout`` seconds pass. Order is kept; ``timeout=0`` polls."""
    return registry.current().wait(refs, num_returns, timeout, fetch_local)


@overload
async def wait_async(refs: Sequence[W], *, num_returns: int = 1,
                     timeout: float | None = None,
                     fetch_local: bool = True) -> tuple[list[W], list[W]]: ...
@overload
async def wait_async(  # type: ignore[overload-cannot-match]  # see wait()
        refs: Sequence[_Waitable], *, num_returns: int = 1, timeout: float | None = None,
        fetch_local: bool = True) -> tuple[list[_Waitable], list[_Waitable]]: ...


async def wait_async(refs: Sequence[_Waitable], *, num_returns: int = 1,
                     timeout: float | None = None,
                     fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
    """``wait`` for async code."""
    return await registry.current().wait_async(refs, num_returns, timeout, fetch_local)


def cancel(ref: ObjectRef[Any] | ObjectRefGenerator[Any], *, force: bool = False,
           recursive: bool = True) -> None:
    """Cancel the task behind ``ref`` (or a generator); ``get`` then raises
    ``TaskCancelledError``. A finished task is left alone."""
    registry.current().cancel(ref, force, recursive)


def kill(actor: ActorHandle[Any], *, no_restart: bool = True) -> None:
    """End an actor now; its pending calls raise ``ActorDiedError``. With
    ``no_restart=False`` an actor with ``max_restarts`` restarts instead."""
    registry.current().kill(actor, no_restart)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """The handle of a named actor (ValueError listing the names if there is none)."""
    check_namespace(namespace)
    return registry.current().get_actor(name, namespace)


def cluster_resources() -> dict[str, float]:
    """Total resources of this runtime (one node)."""
    return registry.current().cluster_resources()


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks and actors right now."""
    return registry.current().available_resources()


def nodes() -> list[dict[str, Any]]:
    return registry.current().nodes()


def get_gpu_ids() -> list[int]:
    """GPU ids assigned to the current task or actor (also in ``CUDA_VISIBLE_DEVICES``)."""
    return registry.current().gpu_ids()


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """Ray's ``ray.timeline``: Chrome trace events (open in Perfetto or chrome://tracing) of the
    tasks and actor calls so far — queued and running spans, one lane per process (the event
    loop, the driver's threads, each worker and actor process). With ``filename``, written
    there as JSON (and ``None`` returned), else returned. Built from what the state API keeps
    (the last ``AIORAY_STATE_MAX_FINISHED`` tasks), so there is nothing to switch on."""
    events = registry.current().timeline()
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


def get_runtime_context() -> Any:
    """Who and where the calling code is: job, task, actor, node ids and the namespace (on
    the Ray backend, Ray's own context, which has the same methods)."""
    return registry.current().runtime_context()


class as_completed(Iterator[ObjectRef[T]], AsyncIterator[ObjectRef[T]]):
    """Yield refs in the order their objects become ready — ``for ref in as_completed(refs)``
    in sync code, ``async for ref in as_completed(refs)`` in async code. Each yielded ref is
    ready: ``get``/``await`` on it does not wait. ``timeout`` (seconds, for the whole
    iteration) raises ``GetTimeoutError`` when it runs out."""

    def __init__(self, refs: Sequence[ObjectRef[T]], timeout: float | None = None) -> None:
        self._refs = list(refs)
        for i, r in enumerate(self._refs):
            if not isinstance(r, ObjectRef):
                raise TypeError(f"as_completed() expects ObjectRefs, item {i} is a "
                                f"{type(r).__name__}.")
        self._left = len(self._refs)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._sync_q: queue.SimpleQueue[ObjectRef[T]] | None = None
        self._async_q: asyncio.Queue[ObjectRef[T]] | None = None
        self._lock = threading.Lock()

    def _start(self, push: Callable[[ObjectRef[T]], None]) -> None:
        registry.current().notify_ready(self._refs, cast(Callable[[ObjectRef[Any]], None], push))

    def _left_time(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _timed_out(self) -> GetTimeoutError:
        return GetTimeoutError(f"as_completed(): {self._left} refs not ready after "
                               f"{self._timeout} seconds.")

    def __iter__(self) -> as_completed[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        if self._left == 0:
            raise StopIteration
        if self._sync_q is None:
            self._sync_q = queue.SimpleQueue()
            self._start(self._sync_q.put)
        try:
            ref = self._sync_q.get(timeout=self._left_time())
        except queue.Empty:
            raise self._timed_out() from None
        self._left -= 1
        return ref

    def __aiter__(self) -> as_completed[T]:
        return self

    async def __anext__(self) -> ObjectRef[T]:
        if self._left == 0:
            raise StopAsyncIteration
        if self._async_q is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # trio (or anyio's trio backend)
                raise RuntimeError(NOT_ASYNCIO) from None
            q: asyncio.Queue[ObjectRef[T]] = asyncio.Queue()
            self._async_q = q

            def push(r: ObjectRef[T]) -> None:
                if _on_loop(loop):
                    q.put_nowait(r)
                else:
                    loop.call_soon_threadsafe(q.put_nowait, r)
            self._start(push)
        try:
            ref = await asyncio.wait_for(self._async_q.get(), self._left_time())
        except asyncio.TimeoutError:
            raise self._timed_out() from None
        self._left -= 1
        return ref


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

