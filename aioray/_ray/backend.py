"""The Ray backend: the same public API, forwarded to a real Ray (local or a cluster).

Selected by ``aioray.init(address="ray://host:10001" | "auto" | "local-ray")`` or the
environment (``AIORAY_BACKEND=ray``, optional ``AIORAY_ADDRESS``). Inside Ray's worker
processes it attaches by itself, so tasks and actors that call aioray work there too.

User code keeps seeing aioray's types: an :class:`ObjectRef` whose ``_entry`` is a
:class:`RayEntry` holding the ``ray.ObjectRef``, an :class:`ObjectRefGenerator` reading a
:class:`RayStream`, :class:`ActorHandle` whose token is the Ray handle, and aioray's
exception classes (Ray's errors are mapped, see :func:`map_error`). What Ray cannot run as
written is adapted: ``async def`` tasks run under ``asyncio.run`` in the Ray worker, ``async
def`` generator tasks are driven by a sync generator that steps an event loop.

``ray`` is imported only when this backend is selected; it is an optional extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import inspect
import os
import re
import sys
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from aioray import exceptions as aex
from aioray._backend import registry
from aioray._backend.base import USE_ACTOR, Backend, PlacementGroups, Queues, RuntimeInfo
from aioray._backend.metrics import MetricRecord, MetricStore
from aioray._backend.progress import BarState
from aioray._handles.actor import ActorHandle, MethodMeta, build_meta
from aioray._handles.generator import DynamicObjectRefGenerator, ObjectRefGenerator
from aioray._handles.placement_group import PlacementGroup, PlacementGroupID
from aioray._handles.ref import ObjectRef
from aioray._handles.validate import (
    as_ref_list,
    check_put,
    check_timeout,
    check_wait_args,
    split_ready,
)
from aioray._objects.serialization import picklable_exception

T = TypeVar("T")

INSTALL_HINT = "pip install 'aioray[ray]'"

def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"The Ray backend was selected but Ray is not installed ({e}). Install it with "
            f"`{INSTALL_HINT}`, or use aioray's embedded runtime (no address, "
            "AIORAY_BACKEND unset).") from e
    return ray


def _ray_address(address: str | None) -> str | None:
    if address is None:
        address = os.environ.get("AIORAY_ADDRESS") or None
    if address == "local-ray":
        return "local"  # Ray's spelling for "start a new local instance"
    return address


def in_ray_worker() -> bool:
    """True inside a process Ray started to run tasks or actors (cheap when ray isn't loaded)."""
    if "ray" not in sys.modules:
        return False
    try:
        from ray._private import worker as ray_worker
        return bool(ray_worker.global_worker.mode == ray_worker.WORKER_MODE)
    except Exception:
        return False


# -- refs ---------------------------------------------------------------------------------
class RayEntry:
    """What a Ray-backed :class:`ObjectRef` holds instead of a store entry: the Ray ref."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def reduce_ref(self, ref: ObjectRef[Any]) -> Any:
        # Pickle the Ray ref itself, so Ray's serializer records it and borrowing works.
        return (_rebuild_ray_ref, (self.ref,))

    def add_callback(self, cb: Callable[[], None]) -> None:
        """Run ``cb()`` (on a Ray thread) once the object is ready or failed."""
        self.ref.future().add_done_callback(lambda _f: cb())


def wrap_ref(ray_ref: Any) -> ObjectRef[Any]:
    return ObjectRef(ray_ref.binary(), RayEntry(ray_ref))


def _rebuild_ray_ref(ray_ref: Any) -> ObjectRef[Any]:
    return wrap_ref(ray_ref)


def _ray_ref(ref: Any, fn: str) -> Any:
    entry = ref._entry
    if type(entry) is not RayEntry:
        raise TypeError(
            f"aioray.{fn}() got {ref!r}, which belongs to aioray's embedded runtime, not to "
            "the Ray backend in use; refs cannot cross backends.")
    return entry.ref


def _unwrap_arg(a: Any) -> Any:
    """Top-level ref arguments become Ray refs, so Ray resolves them before the call."""
    if type(a) is ObjectRef and type(a._entry) is RayEntry:
        return a._entry.ref
    return a


def _unwrap_args(args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (tuple(_unwrap_arg(a) for a in args),
            {k: _unwrap_arg(v) for k, v in kwargs.items()})


# -- generators ---------------------------------------------------------------------------
class RayStream:
    """A streaming generator task running on Ray, as an ``ObjectRefGenerator`` reads it:
    aioray refs, in order; an error the task raised arrives as the next ref."""

    __slots__ = ("ray_gen",)

    def __init__(self, ray_gen: Any) -> None:
        self.ray_gen = ray_gen

    def next_ref(self) -> ObjectRef[Any]:
        return wrap_ref(next(self.ray_gen))  # StopIteration at the end, as Ray's

    async def anext_ref(self) -> ObjectRef[Any]:
        return wrap_ref(await self.ray_gen.__anext__())

    def completed(self) -> ObjectRef[None]:
        return wrap_ref(self.ray_gen.completed())

    def is_finished(self) -> bool:
        return bool(self.ray_gen.is_finished())

    def next_ready(self) -> bool:
        return bool(self.ray_gen.next_ready())

    def task_id_hex(self) -> str:
        return str(self.ray_gen.completed().task_id().hex())

    def wait_key(self) -> object:
        return self.ray_gen

    def drop(self) -> None:
        pass  # Ray's generator frees its own stream


def _ray_gen(item: Any) -> Any:
    """The Ray generator behind an aioray generator, or None."""
    stream = getattr(item, "_stream", None)
    return stream.ray_gen if isinstance(stream, RayStream) else None


def _convert_value(v: Any) -> Any:
    """Ray's types a value can be -> aioray's: a ``num_returns="dynamic"`` task's generator
    of refs, and the placement group ``pg.ready()`` resolves to."""
    t = type(v)
    if t.__module__.startswith("ray"):
        if t.__name__ == "DynamicObjectRefGenerator":
            return DynamicObjectRefGenerator([wrap_ref(r) for r in v])
        if t.__name__ == "PlacementGroup":
            return wrap_placement_group(v)
    return v


def _pg_module() -> Any:
    # The module, not the function ray.util re-exports under the same name.
    import importlib
    return importlib.import_module("ray.util.placement_group")


class RayPlacementGroup(PlacementGroup):
    """An aioray ``PlacementGroup`` (so strategies and isinstance accept it) that is a Ray
    placement group underneath."""

    def __init__(self, ray_pg: Any) -> None:
        super().__init__(PlacementGroupID(ray_pg.id.binary()), None)
        self._ray_pg = ray_pg

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        return list(self._ray_pg.bundle_specs)

    @property
    def is_empty(self) -> bool:
        return bool(self._ray_pg.is_empty)

    def __reduce__(self) -> Any:
        return (wrap_placement_group, (self._ray_pg,))


def wrap_placement_group(ray_pg: Any) -> RayPlacementGroup:
    """Ray's placement group as an aioray ``PlacementGroup``."""
    return RayPlacementGroup(ray_pg)


class RayPlacement(PlacementGroups):
    """Ray's own placement groups."""

    def create(self, bundles: list[dict[str, float]], strategy: str, name: str,
               lifetime: str | None, bundle_label_selector: Any) -> PlacementGroup:
        kwargs = {} if bundle_label_selector is None else {
            "bundle_label_selector": bundle_label_selector}
        return wrap_placement_group(_pg_module().placement_group(
            bundles, strategy=strategy, name=name, lifetime=lifetime, **kwargs))

    def remove(self, pg: PlacementGroup) -> None:
        _pg_module().remove_placement_group(_convert_pg(pg))

    def get(self, name: str) -> PlacementGroup:
        return wrap_placement_group(_pg_module().get_placement_group(name))

    def table(self, pg: PlacementGroup | None) -> dict[Any, Any]:
        return dict(_pg_module().placement_group_table(None if pg is None else _convert_pg(pg)))

    def current(self) -> PlacementGroup | None:
        pg = _pg_module().get_current_placement_group()
        return None if pg is None else wrap_placement_group(pg)

    def ready(self, pg: PlacementGroup) -> ObjectRef[Any]:
        return wrap_ref(_convert_pg(pg).ready())

    def wait(self, pg: PlacementGroup, timeout_seconds: float) -> bool:
        return bool(_convert_pg(pg).wait(timeout_seconds))

    def infeasible_reason(self, pg: PlacementGroup) -> str | None:
        return None


# -- errors -------------------------------------------------------------------------------
def map_error(e: BaseException) -> BaseException:
    """Ray's exception -> aioray's class, so ``except`` clauses work on both backends.

    A task's own error becomes aioray's ``RayTaskError`` that is also the user's exception
    class (as on the embedded runtime); system errors map by kind. Anything else (including
    aioray's own errors and plain ``ValueError`` from bad arguments) is returned unchanged.
    """
    if "ray" not in sys.modules:
        return e
    import ray.exceptions as rex
    # Ray's task error may also be one of aioray's classes (a dual class around aioray's
    # UnserializableException, say): it is still Ray's, so convert it first.
    if not isinstance(e, rex.RayError) or (
            isinstance(e, aex.RayError) and not isinstance(e, rex.RayTaskError)):
        return e
    out: BaseException
    if isinstance(e, rex.RayTaskError):
        cause = e.cause
        if isinstance(cause, rex.TaskCancelledError):
            return map_error(cause)
        if isinstance(cause, BaseException):
            cause = map_error(cause)
        else:  # pragma: no cover - Ray always stores an exception
            cause = aex.RaySystemError(str(cause))
        name, tb, pid = _task_error_parts(e)
        return aex.RayTaskError(name, tb, cause, pid).as_instanceof_cause()
    msg = str(e)
    if isinstance(e, rex.ActorAlreadyExistsError):  # also a ValueError, as Ray's
        out = aex.ActorAlreadyExistsError(
            f"{msg}. Pick another name, fetch it with aioray.get_actor(name), or pass "
            "get_if_exists=True.")
        out.__cause__ = e
        return out
    if isinstance(e, rex.ActorHandleNotFoundError):
        out = aex.ActorHandleNotFoundError(msg)
        out.__cause__ = e
        return out
    if isinstance(e, rex.GetTimeoutError):
        out = aex.GetTimeoutError(msg)
    elif isinstance(e, rex.TaskCancelledError):
        tid: Any = getattr(e, "task_id", None)
        out = aex.TaskCancelledError(tid.hex() if tid is not None else None, msg)
    elif isinstance(e, rex.ActorUnavailableError):
        out = aex.ActorUnavailableError(msg, actor_id=getattr(e, "actor_id", None))
    elif isinstance(e, rex.RayActorError):
        out = aex.ActorDiedError(msg, actor_id=getattr(e, "actor_id", None))
    elif isinstance(e, rex.OutOfMemoryError):  # Ray's memory monitor, as aioray's
        out = aex.OutOfMemoryError(msg)
    elif isinstance(e, (rex.WorkerCrashedError, rex.LocalRayletDiedError, rex.NodeDiedError)):
        out = aex.WorkerCrashedError(msg)
    elif isinstance(e, rex.ObjectFreedError):
        out = aex.ObjectFreedError(getattr(e, "object_ref_hex", ""), msg)
    elif isinstance(e, rex.OwnerDiedError):
        out = aex.OwnerDiedError(getattr(e, "object_ref_hex", ""), msg)
    elif isinstance(e, rex.ObjectLostError):
        out = aex.ObjectLostError(getattr(e, "object_ref_hex", ""), msg)
    elif isinstance(e, rex.TaskUnschedulableError):
        out = aex.TaskUnschedulableError(msg)
    elif isinstance(e, rex.ActorUnschedulableError):
        out = aex.ActorUnschedulableError(msg)
    elif isinstance(e, rex.TaskPlacementGroupRemoved):
        out = aex.TaskPlacementGroupRemoved(msg)
    elif isinstance(e, rex.ActorPlacementGroupRemoved):
        out = aex.ActorPlacementGroupRemoved(msg)
    elif isinstance(e, rex.AsyncioActorExit):
        out = aex.AsyncioActorExit(msg)
    else:
        out = aex.RaySystemError(f"{type(e).__name__}: {msg}")
    out.__cause__ = e
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _task_error_parts(e: BaseException) -> tuple[str, str, int | None]:
    """(function name, remote traceback, pid) of a Ray task error. The instance Ray raises is
    a dual class that keeps only ``cause`` and its message, so read them from the message."""
    d = vars(e)
    if "function_name" in d and "traceback_str" in d:
        return d["function_name"], d["traceback_str"] or "", d.get("pid")
    text = _ANSI.sub("", str(e))
    first, _, rest = text.partition("\n")
    m = re.search(r"ray::(\S+?)(?:\(\))?(?:\s|$)", first)
    pid = re.search(r"pid=(\d+)", first)
    return (m.group(1) if m else "task", rest or text,
            int(pid.group(1)) if pid else None)


def _raise_mapped(e: BaseException) -> Any:
    m = map_error(e)
    if m is e:
        raise e
    m.__suppress_context__ = True  # keep __cause__, hide "during handling of Ray's error"
    raise m


# -- adapting what Ray cannot run as written ------------------------------------------------
def _picklable(e: Exception) -> Exception:
    """The error to let Ray store for ``e``: ``e`` itself when it survives pickling (for
    ``MyError(code, msg)`` classes aioray registers a by-state reducer, so Ray's pickler then
    copes too), else a RuntimeError describing it. Plain Ray reports such errors as
    ``UnserializableException``, losing the user's class."""
    safe = picklable_exception(e)
    return e if type(safe) is type(e) else safe  # type: ignore[return-value]


def _convert_args(args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """In the Ray worker: arguments Ray resolved to Ray's types (a ``num_returns="dynamic"``
    task's ref generator, a placement group) -> aioray's, as the task's annotations say."""
    if any(type(a).__module__.startswith("ray") for a in args) or any(
            type(v).__module__.startswith("ray") for v in kwargs.values()):
        return (tuple(_convert_value(a) for a in args),
                {k: _convert_value(v) for k, v in kwargs.items()})
    return args, kwargs


def _task_body(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function Ray runs for ``fn``: an adapter with ``fn``'s signature (Ray checks
    arguments against it) that Ray can run — plain Ray rejects ``async def`` tasks and async
    generators, and breaks on ``yield from <iterator>`` — and whose errors pickle."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        def drive_async_gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            # Step the async generator on a private loop, one item per Ray yield.
            loop = asyncio.new_event_loop()
            args, kwargs = _convert_args(args, kwargs)
            agen = fn(*args, **kwargs)
            try:
                while True:
                    try:
                        item = loop.run_until_complete(agen.__anext__())
                    except StopAsyncIteration:
                        return
                    except Exception as e:
                        err = _picklable(e)
                        if err is e:
                            raise
                        raise err from None
                    yield item
            finally:
                try:
                    loop.run_until_complete(agen.aclose())
                finally:
                    loop.close()
        return drive_async_gen
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
            # Ray resumes generator tasks with send(); `yield from range(n)` (any
            # non-generator iterator) then fails with "no attribute 'send'". A for loop doesn't.
            args, kwargs = _convert_args(args, kwargs)
            try:
                for item in fn(*args, **kwargs):  # noqa: UP028 - yield from forwards send()
                    yield item
            except Exception as e:
                err = _picklable(e)
                if err is e:
                    raise
                raise err from None
        return iterate
    is_async = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = _convert_args(args, kwargs)
        try:
            if is_async:  # run the coroutine on a loop of its own in the Ray worker
                return asyncio.run(fn(*args, **kwargs))
            return fn(*args, **kwargs)
        except Exception as e:
            err = _picklable(e)
            if err is e:
                raise
            raise err from None
    return call


# aioray option -> how it reaches Ray. Options Ray does not know are dropped (documented).
_TASK_DROP = frozenset({"executor"})
_ACTOR_DROP = frozenset({"_generator_backpressure_num_objects", "executor"})
_METHOD_ATTRS = {"num_returns": "__ray_num_returns__",
                 "max_task_retries": "__ray_max_task_retries__",
                 "retry_exceptions": "__ray_retry_exceptions__",
                 "concurrency_group": "__ray_concurrency_group__",
                 "_generator_backpressure_num_objects":
                     "__ray_generator_backpressure_num_objects__",
                 "enable_task_events": "__ray_enable_task_events__"}


def _convert_strategy(strategy: Any) -> Any:
    """aioray's scheduling strategies (``aioray.util.scheduling_strategies``) -> Ray's."""
    if strategy is None or isinstance(strategy, str):
        return strategy
    if not type(strategy).__module__.startswith("aioray"):
        return strategy  # already Ray's
    import ray.util.scheduling_strategies as rss
    name = type(strategy).__name__
    if name == "PlacementGroupSchedulingStrategy":
        return rss.PlacementGroupSchedulingStrategy(
            _convert_pg(strategy.placement_group), strategy.placement_group_bundle_index,
            strategy.placement_group_capture_child_tasks)
    if name == "NodeAffinitySchedulingStrategy":
        return rss.NodeAffinitySchedulingStrategy(
            strategy.node_id, strategy.soft,
            _spill_on_unavailable=getattr(strategy, "_spill_on_unavailable", False),
            _fail_on_unavailable=getattr(strategy, "_fail_on_unavailable", False))
    if name == "NodeLabelSchedulingStrategy":
        def labels(exprs: dict[str, Any]) -> dict[str, Any]:
            return {k: getattr(rss, type(v).__name__)(*getattr(v, "values", ()))
                    for k, v in exprs.items()}
        return rss.NodeLabelSchedulingStrategy(labels(strategy.hard),
                                               soft=labels(strategy.soft) or None)
    raise ValueError(f"scheduling_strategy {name} has no Ray equivalent.")


def _convert_pg(pg: Any) -> Any:
    if pg is None or isinstance(pg, str):
        return pg
    ray_pg = getattr(pg, "_ray_pg", None)
    if ray_pg is not None:
        return ray_pg
    if type(pg).__module__.startswith("ray"):
        return pg
    raise ValueError(
        "This placement group was created by aioray's embedded runtime; on the Ray backend "
        "create placement groups after init() so they are Ray's.")


def _ray_options(opts: dict[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in opts.items() if k not in drop}
    if "scheduling_strategy" in out:
        out["scheduling_strategy"] = _convert_strategy(out["scheduling_strategy"])
    if "placement_group" in out:
        out["placement_group"] = _convert_pg(out["placement_group"])
    return out


def _returns(result: Any, nret: Any, is_gen: bool) -> Any:
    if is_gen and nret in (None, "streaming"):
        return ObjectRefGenerator(RayStream(result))
    if result is None:
        return None
    if isinstance(result, list):
        return [wrap_ref(r) for r in result]
    return wrap_ref(result)


class RayQueues(Queues):
    """On Ray every queue operation is a call to the queue's actor, as in Ray itself."""

    def open(self, qid: str, maxsize: int) -> bool:
        return False

    def actor_started(self, qid: str, maxsize: int) -> asyncio.Queue[Any]:
        return asyncio.Queue(maxsize)

    def fast(self, qid: str) -> asyncio.Queue[Any] | None:
        return None

    def direct(self, qid: str, maxsize: int, op: str, arg: Any) -> Any:
        return USE_ACTOR

    def copy(self, item: Any, what: str) -> Any:
        return item


class RayBackend(Backend):
    """The public API's forwards, implemented with ``ray`` in this process."""

    name = "ray"
    supports_runtime_env = True

    def __init__(self, ray: Any, owns: bool) -> None:
        self.ray = ray
        self.owns = owns  # we called ray.init(), so shutdown() calls ray.shutdown()
        self.closed = False
        self._fns: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        # aioray ActorClass -> {its concurrency groups (sorted items): Ray's actor class}
        self._classes: weakref.WeakKeyDictionary[Any, dict[tuple[tuple[str, int], ...], Any]] = (
            weakref.WeakKeyDictionary())
        ctx = ray.get_runtime_context()
        self.job_id = str(ctx.get_job_id())
        self.node_id = str(ctx.get_node_id())
        self.namespace = str(ctx.namespace)
        self.placement = RayPlacement()
        self.queues = RayQueues()
        self.metric_store = MetricStore()
        self.ray_metrics: dict[str, Any] = {}

    # -- tasks -------------------------------------------------------------------------------
    def _ray_function(self, rf: Any) -> Any:
        f = self._fns.get(rf)
        if f is None:
            f = self.ray.remote(_task_body(rf._function))
            self._fns[rf] = f
        return f

    def submit_task(self, rf: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    opts: dict[str, Any]) -> Any:
        ropts = _ray_options(opts, _TASK_DROP)
        nret = ropts.get("num_returns")
        if rf._is_generator and nret is None:
            ropts["num_returns"] = "streaming"  # aioray's default for generator functions
        elif not rf._is_generator and nret in ("streaming", "dynamic"):
            # The embedded runtime's error (Ray's own is a ValueError).
            raise TypeError(
                f"num_returns={nret!r} is for generator functions, but "
                f"{rf._name} is not a generator (it has no "
                "'yield').")
        a, kw = _unwrap_args(args, kwargs)
        fn = self._ray_function(rf)
        result = (fn.options(**ropts) if ropts else fn).remote(*a, **kw)
        return _returns(result, nret, rf._is_generator)

    def put(self, value: Any) -> ObjectRef[Any]:
        check_put(value)
        return wrap_ref(self.ray.put(value))

    # -- getting values ----------------------------------------------------------------------
    def get(self, refs: Any, timeout: float | None = None) -> Any:
        single, lst = as_ref_list(refs, "get")
        check_timeout(timeout)
        ray_refs = [_ray_ref(r, "get") for r in lst]
        try:
            values = self.ray.get(ray_refs, timeout=timeout)
        except BaseException as e:
            _raise_mapped(e)
        values = [_convert_value(v) for v in values]
        return values[0] if single else values

    async def get_async(self, refs: Any, timeout: float | None = None) -> Any:
        single, lst = as_ref_list(refs, "get_async")
        check_timeout(timeout)
        futs = [asyncio.wrap_future(_ray_ref(r, "get_async").future()) for r in lst]
        if not futs:
            return []
        _done, pending = await asyncio.wait(futs, timeout=timeout)
        if pending:
            for f in futs:
                f.cancel()
            raise aex.GetTimeoutError(
                f"Get timed out: {len(pending)} of {len(futs)} objects not ready after "
                f"{timeout} seconds.")
        values = []
        for f in futs:  # the first error in list order, as the sync get
            err = f.exception()
            if err is not None:
                _raise_mapped(err)
            values.append(_convert_value(f.result()))
        return values[0] if single else values

    def await_ref(self, ref: ObjectRef[Any]) -> Awaitable[Any]:
        return self.get_async(ref)

    def rebuild_ref(self, id: bytes) -> ObjectRef[Any]:
        # ObjectRef(binary): Ray's ref of that id (Ray's refs pickle as themselves, see
        # RayEntry.reduce_ref, so no pickle comes this way).
        return wrap_ref(self.ray.ObjectRef(id))

    def notify_ready(self, refs: Sequence[ObjectRef[Any]],
                     push: Callable[[ObjectRef[Any]], None]) -> None:
        for r in refs:
            _ray_ref(r, "as_completed").future().add_done_callback(lambda _f, r=r: push(r))

    def ref_future(self, ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
        src = _ray_ref(ref, "ObjectRef.future")
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def done(f: concurrent.futures.Future[Any]) -> None:
            err = f.exception()
            if err is not None:
                out.set_exception(map_error(err))
            else:
                out.set_result(_convert_value(f.result()))
        src.future().add_done_callback(done)
        return out

    # -- waiting -----------------------------------------------------------------------------
    @staticmethod
    def _waitable(item: Any) -> Any:
        gen = _ray_gen(item)
        if gen is not None:
            return gen
        if isinstance(item, ObjectRefGenerator):
            raise TypeError("aioray.wait() got a generator of aioray's embedded runtime; it "
                            "cannot be waited on with the Ray backend.")
        return _ray_ref(item, "wait")

    @staticmethod
    def _key(ray_item: Any) -> Any:
        return ray_item.binary() if hasattr(ray_item, "binary") else id(ray_item)

    def wait(self, refs: Any, num_returns: int = 1, timeout: float | None = None,
             fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        items = check_wait_args(refs, num_returns, timeout)
        if num_returns == 0 or not items:
            return [], items
        ray_items = [self._waitable(i) for i in items]
        index = {self._key(r): i for i, r in enumerate(ray_items)}
        try:
            ready, _ = self.ray.wait(ray_items, num_returns=num_returns, timeout=timeout,
                                     fetch_local=fetch_local)
        except BaseException as e:
            _raise_mapped(e)
        return split_ready(items, {index[self._key(r)] for r in ready}, num_returns)

    async def wait_async(self, refs: Any, num_returns: int = 1, timeout: float | None = None,
                         fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
        items = check_wait_args(refs, num_returns, timeout)
        if num_returns == 0 or not items:
            return [], items
        if any(isinstance(i, ObjectRefGenerator) for i in items):
            # Ray has no async wait for generators: one blocking wait on a helper thread.
            return await asyncio.get_running_loop().run_in_executor(
                None, self.wait, items, num_returns, timeout, fetch_local)
        futs = [asyncio.wrap_future(_ray_ref(r, "wait_async").future()) for r in items]
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while sum(f.done() for f in futs) < num_returns:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                await asyncio.wait([f for f in futs if not f.done()], timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in futs:
                if f.done() and not f.cancelled():
                    f.exception()  # retrieved: no "exception never retrieved" noise
                else:
                    f.cancel()
        ready = {i for i, f in enumerate(futs) if f.done() and not f.cancelled()}
        return split_ready(items, ready, num_returns)

    def cancel(self, target: Any, force: bool = False, recursive: bool = True) -> None:
        if _ray_gen(target) is not None:
            ray_target = _ray_gen(target)
        elif isinstance(target, ObjectRef):
            ray_target = _ray_ref(target, "cancel")
        else:
            raise TypeError(
                f"aioray.cancel() expects an ObjectRef or ObjectRefGenerator, got "
                f"{type(target).__name__}.")
        self.ray.cancel(ray_target, force=force, recursive=recursive)

    # -- actors ------------------------------------------------------------------------------
    def _ray_class(self, ac: Any, groups: dict[str, int] | None = None) -> Any:
        """Ray's actor class for ``ac``. Ray takes ``concurrency_groups`` only where the class
        is declared (``@ray.remote(concurrency_groups=...)``, not ``.options()``), while
        aioray also accepts them in ``.options()``: one Ray class per set of groups."""
        key = tuple(sorted(groups.items())) if groups else ()
        per_class = self._classes.get(ac)
        if per_class is None:
            per_class = self._classes[ac] = {}
        c = per_class.get(key)
        if c is None:
            cls = ac._cls
            # Method options live on the functions where Ray reads them, so a handle that
            # get_actor() returns (in any process) knows them too.
            for name, meta in ac._methods.items():
                fn = inspect.getattr_static(cls, name, None)
                for key, value in meta.options.items():
                    attr = _METHOD_ATTRS.get(key)
                    if attr is not None and fn is not None:
                        try:
                            setattr(fn, attr, value)
                        except (AttributeError, TypeError):
                            pass
            c = (self.ray.remote(concurrency_groups=dict(groups))(cls) if groups
                 else self.ray.remote(cls))
            per_class[key] = c
        return c

    def create_actor(self, ac: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     opts: dict[str, Any]) -> Any:
        ropts = _ray_options(opts, _ACTOR_DROP)
        a, kw = _unwrap_args(args, kwargs)
        c = self._ray_class(ac, ropts.pop("concurrency_groups", None))
        try:
            handle = (c.options(**ropts) if ropts else c).remote(*a, **kw)
        except BaseException as e:
            if type(e).__name__ == "ActorAlreadyExistsError":  # embedded runtime's message
                name, ns = ropts.get("name"), ropts.get("namespace") or self.namespace
                raise aex.ActorAlreadyExistsError(
                    f"An actor named {name!r} already exists in namespace {ns!r}. Pick "
                    "another name, fetch it with aioray.get_actor(name), or pass "
                    "get_if_exists=True.") from e
            _raise_mapped(e)
        methods = dict(ac._methods)
        bp = opts.get("_generator_backpressure_num_objects")
        if bp is not None:
            for name, m in list(methods.items()):
                if m.is_generator and "_generator_backpressure_num_objects" not in m.options:
                    methods[name] = build_meta(
                        m.name, m.is_async, m.is_generator,
                        {**m.options, "_generator_backpressure_num_objects": bp}, m.binder,
                        m.decorator)
        return ActorHandle(handle._actor_id.binary(), ac.__name__, methods, handle, self)

    def call_actor(self, handle: Any, meta: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   opts: dict[str, Any]) -> Any:
        ray_method = getattr(handle._token, meta.name)
        if meta.decorator is not None and getattr(ray_method, "_decorator", None) is not None:
            # aioray's ActorMethod.remote() applied __ray_invocation_decorator__ already.
            ray_method = copy.copy(ray_method)
            ray_method._decorator = None
        nret = opts.get("num_returns")
        if meta.is_generator and nret is None:
            opts = {**opts, "num_returns": "streaming"}
        a, kw = _unwrap_args(args, kwargs) if args or kwargs else (args, kwargs)
        try:
            result = (ray_method.options(**opts) if opts else ray_method).remote(*a, **kw)
        except BaseException as e:
            _raise_mapped(e)
        return _returns(result, nret, meta.is_generator)

    def kill(self, handle: Any, no_restart: bool = True) -> None:
        self.ray.kill(handle._token, no_restart=no_restart)

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        if not isinstance(name, str) or not name:
            raise ValueError(f"get_actor() needs a non-empty actor name (a str), got {name!r}.")
        try:
            ray_handle = self.ray.get_actor(name, namespace=namespace)
        except ValueError as e:
            raise ValueError(str(e)) from None  # Ray's message names the actor and namespace
        return self.wrap_handle(ray_handle)

    def progress(self, state: BarState) -> None:
        """Ray's own tqdm_ray draws it (its driver collects bars from every node)."""
        import ray.experimental.tqdm_ray as tr
        tr.instance().process_state_update({
            "__magic_token__": tr.RAY_TQDM_MAGIC, "x": state.x, "pos": state.pos,
            "desc": state.desc, "total": state.total, "unit": state.unit, "ip": "127.0.0.1",
            "pid": state.pid, "uuid": state.uuid, "closed": state.closed})

    def progress_print(self, text: str, kwargs: dict[str, Any]) -> None:
        import ray.experimental.tqdm_ray as tr
        tr.safe_print(text, **kwargs)

    def timeline(self) -> list[dict[str, Any]]:
        return list(self.ray.timeline() or [])

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        """Ray's own state API (it needs Ray's dashboard: ``pip install "ray[default]"``)."""
        import ray.util.state as rs
        listing = getattr(rs, f"list_{kind}")
        return [r.asdict() if hasattr(r, "asdict") else dict(r)
                for r in listing(limit=100_000, detail=True)]

    def record_metric(self, record: MetricRecord) -> None:
        """Recorded here (for snapshot()) and on Ray's own metric of that name."""
        self.metric_store.record(record)
        metric = self.ray_metrics.get(record.name)
        if metric is None:
            rm = self.ray.util.metrics
            kind = record.kind.value
            if kind == "histogram":
                metric = rm.Histogram(record.name, record.description,
                                      boundaries=list(record.boundaries),
                                      tag_keys=record.tag_keys)
            else:
                cls = rm.Counter if kind == "counter" else rm.Gauge
                metric = cls(record.name, record.description, tag_keys=record.tag_keys)
            self.ray_metrics[record.name] = metric
        tags = dict(record.tags)
        kind = record.kind.value
        if kind == "counter":
            metric.inc(record.value, tags=tags)
        elif kind == "gauge":
            metric.set(record.value, tags=tags)
        else:
            metric.observe(record.value, tags=tags)

    def metrics_snapshot(self) -> list[dict[str, Any]]:
        return self.metric_store.snapshot()  # what this driver recorded (Ray exports the rest)

    def list_named_actors(self, all_namespaces: bool) -> list[Any]:
        return list(self.ray.util.list_named_actors(all_namespaces=all_namespaces))

    def wrap_handle(self, ray_handle: Any) -> Any:
        descriptor = getattr(ray_handle, "_ray_actor_creation_function_descriptor", None)
        class_name = getattr(descriptor, "class_name", None) or "Actor"
        class_name = class_name.rsplit(".", 1)[-1]
        sigs = getattr(ray_handle, "_ray_method_signatures", {}) or {}
        is_gen = getattr(ray_handle, "_ray_method_is_generator", {}) or {}
        nrets = getattr(ray_handle, "_ray_method_num_returns", {}) or {}
        methods = {}
        for m in sigs:
            if m.startswith("__") and m != "__call__":
                continue
            n = nrets.get(m)
            # A handle from get_actor(): Ray binds the arguments and applies any
            # __ray_invocation_decorator__ itself.
            methods[m] = build_meta(m, False, bool(is_gen.get(m)),
                                    {} if n in (None, 1, "streaming") else {"num_returns": n})
        return ActorHandle(ray_handle._actor_id.binary(), class_name, methods, ray_handle, self)

    def reduce_handle(self, handle: Any) -> Any:
        """Pickle an aioray handle as the Ray handle (Ray tracks it) plus aioray's metadata."""
        return (_rebuild_handle, (handle._token, handle._class_name, handle._methods))

    # -- the cluster ---------------------------------------------------------------------------
    def cluster_resources(self) -> dict[str, float]:
        return dict(self.ray.cluster_resources())

    def available_resources(self) -> dict[str, float]:
        return dict(self.ray.available_resources())

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.ray.nodes())

    def gpu_ids(self) -> list[int]:
        return list(self.ray.get_gpu_ids())

    def runtime_context(self) -> Any:
        return self.ray.get_runtime_context()

    def runtime_info(self) -> RuntimeInfo:
        resources = self.cluster_resources()
        info = {"node_id": self.node_id, "job_id": self.job_id, "namespace": self.namespace,
                "resources": resources, "loop": "ray", "backend": "ray"}
        return RuntimeInfo(node_id=self.node_id, job_id=self.job_id, namespace=self.namespace,
                           resources=resources, loop="ray", extra=info)

    def on_own_loop(self) -> bool:
        return False  # no aioray loop here: helpers take their general (actor) path

    def check_strategy(self, strategy: object) -> None:
        pass  # Ray checks its own strategies

    def rebuild_handle(self, actor_id: bytes, class_name: str,
                       methods: dict[str, MethodMeta]) -> ActorHandle[Any]:
        raise TypeError("a Ray-backed actor handle pickles as the Ray handle itself")

    def exit_actor(self) -> NoReturn:
        self.ray.actor.exit_actor()
        raise AssertionError("ray.actor.exit_actor() returned")

    def is_stale(self) -> bool:
        return self.closed

    def shutdown(self) -> None:
        self.closed = True
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()


def _rebuild_handle(ray_handle: Any, class_name: str, methods: dict[str, Any]) -> Any:
    backend = registry.current()
    return ActorHandle(ray_handle._actor_id.binary(), class_name, methods, ray_handle, backend)


# -- selection ------------------------------------------------------------------------------
def attach_worker() -> RayBackend | None:
    """Inside a Ray worker: the backend for user code there (Ray is already connected)."""
    if not in_ray_worker():
        return None
    return RayBackend(_import_ray(), owns=False)


def connect(address: str | None, *, num_cpus: float | None = None,
            num_gpus: float | None = None, resources: dict[str, float] | None = None,
            namespace: str | None = None, runtime_env: dict[str, Any] | None = None,
            local_mode: bool = False, **ray_kwargs: Any) -> RayBackend:
    """Connect to (or start) Ray; the caller installs the returned backend."""
    ray = _import_ray()
    if ray.is_initialized():  # the program (or Ray, in a worker) already connected
        return RayBackend(ray, owns=False)
    if local_mode:
        warnings.warn("local_mode is ignored by the Ray backend (Ray removed local mode); "
                      "use the embedded runtime with local_mode=True to debug.", stacklevel=3)
    kwargs: dict[str, Any] = {k: v for k, v in ray_kwargs.items() if v is not None}
    if namespace is not None:
        kwargs["namespace"] = namespace
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    sizes = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                               ("resources", resources)) if v is not None}
    ray_address = _ray_address(address)
    try:
        ray.init(address=ray_address, **sizes, **kwargs)
    except ValueError as e:
        # Sizes are for a Ray this call starts; a script that sets them (for the embedded
        # runtime) must still run unchanged against an existing cluster.
        if not sizes or "existing cluster" not in str(e):
            raise
        warnings.warn(f"Connecting to an existing Ray cluster: ignoring {sorted(sizes)}.",
                      stacklevel=3)
        ray.init(address=ray_address, **kwargs)
    return RayBackend(ray, owns=True)


__all__ = ["INSTALL_HINT", "RayBackend", "RayEntry", "RayStream", "attach_worker", "connect",
           "in_ray_worker", "map_error", "wrap_ref"]

