"""The one body runner: run a task's or actor call's user code and turn what happens into stored
results — for every place a body runs (the loop, a driver thread, a worker process).

A body is a function, its packed arguments and how many values it returns. Running it means:
unpack the arguments; call; then either serialize the return value(s) (``split_returns``
checks their count) or, for a generator, serialize and ``emit`` each item as it is yielded,
pausing between items while the consumer is behind (``pause``). Whatever the user's code raises
becomes :class:`AppError` carrying the ``RayTaskError`` to store; the exceptions the caller
uses for control flow (cancel, ``exit_actor``) pass through untouched.

The sync runner (:func:`run_sync`) serves thread tasks, sync actor methods, sync generator
methods of async actors and worker processes; the async one (:func:`run_async`) coroutine tasks
and async actor methods. What differs between those places is passed in, not re-written.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import traceback
from collections.abc import Callable, Generator, Sequence
from typing import Any

from aioray._handles.args import split_returns, unpack_args
from aioray._handles.generator import yield_items
from aioray._objects.serialization import picklable_exception, serialize
from aioray.exceptions import RayTaskError, TaskCancelledError

Emit = Callable[[Any], object]


class ActorExit(BaseException):
    """Raised by ``exit_actor()``; ends the actor on purpose (no restart)."""


DEFAULT_GROUP = "_default"  # the concurrency group of the methods that name none


def _ready() -> bool:
    return True


# Methods every actor has (Ray's names), whatever its class defines.
_BUILTIN_METHODS: dict[str, Callable[..., Any]] = {"__ray_ready__": _ready}


def actor_method(instance: Any, name: str) -> Callable[..., Any]:
    """The method ``name`` of an actor instance, bound, or one every actor has.

    Looked up on the class, as Ray does: an instance attribute of the same name (``__init__``
    setting ``self.should_stop = True`` beside a ``should_stop()`` method) does not hide it.
    """
    builtin = _BUILTIN_METHODS.get(name)
    if builtin is not None:
        return builtin
    shadowed = name in getattr(instance, "__dict__", ())
    if shadowed:  # rare: only then walk the class (a dict lookup per call otherwise)
        found = _class_attr(type(instance), name)
        if found is not _NOT_ON_CLASS:
            return found.__get__(instance, type(instance))  # type: ignore[no-any-return]
    return getattr(instance, name)  # type: ignore[no-any-return]


_NOT_ON_CLASS = object()


def _class_attr(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        attr = klass.__dict__.get(name, _NOT_ON_CLASS)
        if attr is not _NOT_ON_CLASS:
            return attr if hasattr(attr, "__get__") else _NOT_ON_CLASS
    return _NOT_ON_CLASS


class AppError(Exception):
    """The user's code raised; ``error`` is the ``RayTaskError`` to store (or to retry on),
    ``original`` what was raised (when known)."""

    def __init__(self, error: RayTaskError, original: BaseException | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.original = original


def app_error(name: str, exc: BaseException) -> RayTaskError:
    """The error a task or call that raised ``exc`` resolves to: a ``RayTaskError`` that is
    also an instance of the user's exception class, with the remote traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return RayTaskError(name, tb, picklable_exception(exc), os.getpid()).as_instanceof_cause()


def cancelled_error(name: str, task_hex: str) -> RayTaskError:
    """What a call cancelled *inside* its async method resolves to: as on Ray, a
    ``RayTaskError`` whose cause is the ``TaskCancelledError`` (and which is also one, so both
    ``except RayTaskError`` and ``except TaskCancelledError`` catch it)."""
    cause = TaskCancelledError(task_hex)
    tb = (f"TaskCancelledError: {cause} asyncio.CancelledError was raised in {name} at the "
          "await it was blocked in (aioray.cancel).")
    return RayTaskError(name, tb, cause, os.getpid()).as_instanceof_cause()


def generator_count_error(name: str, message: str) -> RayTaskError:
    """A generator task with ``num_returns=k`` yielded the wrong number of values: as on Ray,
    a ``RayTaskError`` that is also a ``ValueError``."""
    return RayTaskError(name, f"ValueError: {message}", ValueError(message),
                        os.getpid()).as_instanceof_cause()


class Body:
    """What to run: ``fn(*args, **kwargs)`` from a packed payload and resolved ref values.
    (A slotted class: one is built for every task, so it must cost next to nothing.)"""

    __slots__ = ("dep_values", "driver_pid", "fn", "name", "nret", "payload")

    def __init__(self, fn: Callable[..., Any], payload: Any, dep_values: Sequence[Any],
                 name: str, nret: int, driver_pid: int) -> None:
        self.fn = fn
        self.payload = payload  # the packed (args, kwargs)
        self.dep_values = dep_values  # stored values of the top-level ref arguments
        self.name = name  # for errors and warnings: "f", "Counter.incr"
        self.nret = nret  # values returned (not used for generators)
        self.driver_pid = driver_pid  # owner of the shared memory large results go to


Items = Generator[Any, None, None]


def run_sync(body: Body, emit: Emit | None = None, *,
             stop: Callable[[Items], bool] | None = None,
             pause: Callable[[Items, int], None] | None = None,
             started: Callable[[], None] | None = None,
             finished: Callable[[], None] | None = None,
             passthrough: tuple[type[BaseException], ...] = ()) -> list[Any] | None:
    """Run a sync body in this thread.

    Returns the stored return values; for a generator (``emit`` given) ``None``, its items
    having gone to ``emit`` one by one. Around the user's code: ``started()`` just before it,
    ``finished()`` once it returned (before results are serialized); for a generator
    ``stop(items)`` before each item is emitted (True ends it: a cancelled generator stops at
    its ``yield``; it may also throw into ``items``) and ``pause(items, produced)`` after each
    (backpressure).
    """
    try:
        args, kwargs = unpack_args(body.payload, body.dep_values)
        if started is not None:
            started()
        result = body.fn(*args, **kwargs)
        if emit is None:
            if finished is not None:
                finished()
            return [serialize(v, body.driver_pid)
                    for v in split_returns(result, body.nret, body.name)]
        items = yield_items(result, body.name)
        produced = 0
        for item in items:
            if stop is not None and stop(items):
                break
            emit(serialize(item, body.driver_pid))
            produced += 1
            if pause is not None:
                pause(items, produced)
        if finished is not None:
            finished()
        return None
    except passthrough:
        raise
    except BaseException as e:
        raise AppError(app_error(body.name, e), e) from None


async def run_async(fn: Callable[..., Any], payload: Any, dep_values: Sequence[Any], name: str,
                    nret: int, driver_pid: int, emit: Emit | None = None, *,
                    pause: Callable[[], Any] | None = None,
                    passthrough: tuple[type[BaseException], ...] = (asyncio.CancelledError,)
                    ) -> list[Any] | None:
    """Run a body on the event loop: an ``async def`` (or async generator) function, or a sync
    function whose result may be awaitable (a sync method of an async actor).

    The parts of a :class:`Body` are passed directly: this runs for every async task and call,
    and one more tracked object each shows up as cyclic-GC time. ``pause()`` is awaited after
    each item of an async generator (backpressure); ``passthrough`` should keep asyncio's
    cancellation.
    """
    try:
        args, kwargs = unpack_args(payload, dep_values)
        if emit is not None:
            async for item in fn(*args, **kwargs):
                emit(serialize(item, driver_pid))
                if pause is not None:
                    await pause()
            return None
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if nret == 1:  # the hot path: no list comprehension (one GC object less)
            return [serialize(result, driver_pid)]
        return [serialize(v, driver_pid) for v in split_returns(result, nret, name)]
    except passthrough:
        raise
    except BaseException as e:
        raise AppError(app_error(name, e), e) from None
