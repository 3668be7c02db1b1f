"""aioray's error hierarchy, with Ray's names so ``except ray.exceptions.X`` works unchanged.

Every error here derives from :class:`RayError` (alias :class:`AioRayError`) and pickles, so it
crosses process boundaries intact. Grouping follows what a caller wants to catch:

* :class:`RayTaskError` — the task's own code raised. The instance ``get`` raises is *also* an
  instance of the user's exception class (``except ValueError`` works).
* :class:`RaySystemError` subclasses — the runtime failed the task: a worker died, it was
  cancelled, its actor died, its object is gone.
* :class:`GetTimeoutError` — ``get``/``wait`` ran out of time; it is also a builtin
  ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any, TypeVar, cast

_E = TypeVar("_E", bound=BaseException)

__all__ = [
    "ActorAlreadyExistsError",
    "ActorClassInheritanceException",
    "ActorDiedError",
    "ActorHandleNotFoundError",
    "ActorPlacementGroupRemoved",
    "ActorShutdownError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AioRayError",
    "AsyncioActorExit",
    "AuthenticationError",
    "CrossLanguageError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OufOfBandObjectRefSerializationException",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "PlacementGroupRemovedError",
    "PlasmaObjectNotAvailable",
    "RayActorError",
    "RayCgraphCapacityExceeded",
    "RayChannelError",
    "RayChannelTimeoutError",
    "RayDirectTransportError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RpcError",
    "RuntimeEnvSetupError",
    "RuntimeShutdownError",
    "StreamingGeneratorReplayInconsistentError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnserializableException",
    "UserCodeException",
    "WorkerCrashedError",
]


class RayError(Exception):
    """Base of every error aioray raises on purpose."""


AioRayError = RayError


class RaySystemError(RayError):
    """The runtime, not the task's code, failed the task."""


class RuntimeShutdownError(RaySystemError):
    """The work was in flight when :func:`aioray.shutdown` ran; it will never finish."""


class WorkerCrashedError(RaySystemError):
    """The worker process running the task died (crash, ``os._exit``, signal, out of memory).

    Raised only after the task's ``max_retries`` were used up. ``exit_code`` is the process's
    exit status (negative: killed by that signal), ``attempts`` how many times the task ran.
    """

    def __init__(self, message: str = "", exit_code: int | None = None, attempts: int = 1):
        super().__init__(message or "The worker running this task died unexpectedly.")
        self.exit_code = exit_code
        self.attempts = attempts

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.exit_code, self.attempts))


class OutOfMemoryError(RaySystemError):
    """The memory monitor killed the worker process running the task: the machine's used
    memory passed ``AIORAY_MEMORY_USAGE_THRESHOLD`` (default 0.95). Raised only after the
    task's ``max_retries`` were used up; the message names the memory figures. Ray's name."""


class TaskCancelledError(RaySystemError):
    """The task was cancelled with :func:`aioray.cancel` before it produced this object."""

    def __init__(self, task_id: str | None = None, message: str = ""):
        super().__init__(message or f"Task {task_id or ''} was cancelled.".replace("  ", " "))
        self.task_id = task_id

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, str(self)))


class TaskUnschedulableError(RaySystemError):
    """The task asks for more resources than this runtime will ever have.

    Ray waits forever (hoping the cluster grows); one process never grows, so aioray fails the
    task at once instead of hanging.
    """


class ActorUnschedulableError(RaySystemError):
    """The actor asks for more resources than this runtime will ever have."""


class RayActorError(RaySystemError):
    """The actor died or could not be created; calls to it fail with this error.

    ``cause`` is the underlying error when there is one (``__init__`` raised, ``kill``).
    """

    def __init__(self, message: str = "", cause: BaseException | None = None,
                 actor_id: str | None = None):
        super().__init__(message or "The actor died unexpectedly before finishing this task.")
        self.cause = cause
        self.actor_id = actor_id
        if cause is not None:
            self.__cause__ = cause

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.cause, self.actor_id))


class ActorDiedError(RayActorError):
    """The actor is dead: killed, exited, or its constructor raised."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable (restarting)."""


class ActorShutdownError(ActorDiedError, RuntimeShutdownError):
    """An actor call was in flight when :func:`aioray.shutdown` ran.

    Both an actor death (``except RayActorError``) and a shutdown (``except
    RuntimeShutdownError``, like every other ref pending at shutdown)."""


class AsyncioActorExit(RayError):
    """Raised inside an actor method by :func:`aioray.actor.exit_actor`; not an error."""


class ObjectLostError(RaySystemError):
    """The object's value is gone and cannot be rebuilt."""

    def __init__(self, object_ref_hex: str = "", message: str = ""):
        super().__init__(message or f"Object {object_ref_hex} is lost.")
        self.object_ref_hex = object_ref_hex

    def __reduce__(self) -> Any:
        return (type(self), (self.object_ref_hex, str(self)))


class ObjectFreedError(ObjectLostError):
    """The object was freed (every reference to it was dropped) before it was read."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object is gone."""


class ObjectStoreFullError(RayError):
    """A large object did not fit: the object store (``init(object_store_memory=...)``) or the
    filesystem under it is full and nothing more can be spilled to disk (every object in it is
    being read). Ray's name; the message names the sizes."""


class PlacementGroupRemovedError(RaySystemError):
    """The task or actor's placement group was removed (base of Ray's two names below)."""


class TaskPlacementGroupRemoved(PlacementGroupRemovedError):
    """A task's placement group was removed before the task finished (Ray's name)."""


class ActorPlacementGroupRemoved(PlacementGroupRemovedError):
    """An actor's placement group was removed: the ``cause`` of the actor's
    :class:`ActorDiedError` (Ray's name)."""


class ActorAlreadyExistsError(ValueError, RayError):
    """A named actor was created under a name that a live actor holds in that namespace.
    Also a ``ValueError``, as in Ray."""


class ActorHandleNotFoundError(ValueError, RayError):
    """``kill`` of a handle this runtime does not know (made before a ``shutdown()`` and
    ``init()``). Also a ``ValueError``, as in Ray."""


class PendingCallsLimitExceeded(RayError):
    """Raised by ``handle.method.remote()`` when the actor already has ``max_pending_calls``
    calls in flight. Not raised for actors without that option."""


class ActorClassInheritanceException(TypeError):
    """A class tried to inherit from a ``@remote`` class (Ray's ``ray.actor`` name; a
    TypeError, not a RayError, as in Ray). Inherit from the plain class instead."""


class GetTimeoutError(RayError, TimeoutError):
    """``get``/``wait``/``next`` ran out of time. Also a builtin :class:`TimeoutError`."""


class UnserializableException(RayError):
    """Stands in for a task's exception that could not be pickled (it holds a lock, a socket…).

    It is the ``cause`` of the :class:`RayTaskError` that ``get`` raises, which then is *not*
    an instance of the original class (it cannot be rebuilt) but names it and carries its
    message and the remote traceback. ``class_name`` is the original class's qualified name,
    ``module`` its module, ``message`` its ``str()`` and ``reason`` why pickling failed.
    """

    def __init__(self, class_name: str, message: str = "", reason: str = "",
                 module: str = "builtins"):
        text = f"{class_name}: {message}" if message else class_name
        super().__init__(f"{text} (could not be pickled: {reason})" if reason else text)
        self.class_name = class_name
        self.message = message
        self.reason = reason
        self.module = module

    @classmethod
    def of(cls, exc: BaseException, reason: str = "") -> UnserializableException:
        """The stand-in for ``exc``; ``reason`` is why pickling it failed."""
        try:
            message = str(exc)
        except Exception:
            message = f"<str() of the {type(exc).__name__} failed>"
        return cls(type(exc).__qualname__, message, reason, type(exc).__module__)

    def __reduce__(self) -> Any:
        return (type(self), (self.class_name, self.message, self.reason, self.module))


class RayTaskError(RayError):
    """The task's own code raised.

    ``cause`` is the original exception, ``traceback_str`` the remote traceback and
    ``function_name`` the task that raised. ``get`` raises ``as_instanceof_cause()`` of this,
    which is an instance of both :class:`RayTaskError` and ``type(cause)``, with the cause's
    ``args`` and attributes. When the cause could not be pickled it is an
    :class:`UnserializableException` and ``get`` raises a plain :class:`RayTaskError`.
    """

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException,
                 pid: int | None = None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        # Exception.args drives the default repr; the dual class replaces it by the cause's.
        Exception.__init__(self, self._message())

    def _message(self) -> str:
        where = f" (pid={self.pid})" if self.pid is not None else ""
        tb = self.traceback_str.rstrip()
        cause = self.cause
        name = (cause.class_name if isinstance(cause, UnserializableException)
                else type(cause).__name__)
        return f"{name} in {self.function_name}{where}\n{tb}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> Any:
        return (_rebuild_task_error,
                (self.function_name, self.traceback_str, self.cause, self.pid,
                 type(self) is not RayTaskError))

    def as_instanceof_cause(self) -> RayTaskError:
        """Return a copy that is also an instance of the cause's class (like Ray).

        When the cause is itself a task error (a task let a nested ``get`` raise), the copy is
        an instance of the innermost user exception's class, so ``except ValueError`` still
        works one or more task levels up; ``cause`` keeps the whole chain. The copy has the
        innermost exception's ``args``, its C-level fields (``errno``, ``filename``, the five
        ``UnicodeError`` fields, ``exceptions`` of a group…), ``__slots__`` and ``__dict__``.

        ``self`` itself (a plain RayTaskError, still naming the class in its message) when
        no such copy can be made: the class can't be subclassed or instantiated that way, the
        cause was unpicklable, or it is one of ``KeyboardInterrupt``, ``SystemExit``,
        ``GeneratorExit``, ``asyncio.CancelledError`` — control flow, which must not look
        like an interrupt, an exit or a cancellation to whoever catches the error.
        """
        root = self.cause
        while isinstance(root, RayTaskError):
            root = root.cause
        cause_cls = type(root)
        if type(self) is not RayTaskError and isinstance(self, cause_cls):
            return self  # already the dual class
        if issubclass(cause_cls, _NEVER_DUAL) or isinstance(root, UnserializableException):
            return self
        cls = _dual_class(cause_cls)
        if cls is None:
            return self
        try:
            err = new_exception(cls, root.args)
            RayTaskError.__init__(err, self.function_name, self.traceback_str, self.cause,
                                  self.pid)
            err.args = root.args
            set_exception_fields(err, exception_fields(root))
            err.__cause__ = self.cause
            # The cause's instance attributes, so handlers that read e.g. ``err.code`` work;
            # RayTaskError's own (``cause``, ``pid``…) win a clash.
            for k, v in vars(root).items():
                err.__dict__.setdefault(k, v)
        except Exception:
            return self
        return err


# Control-flow exceptions a task error must never impersonate (see as_instanceof_cause).
_NEVER_DUAL = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: the class was made by a class statement or type()


def _static_base(cls: type) -> type:
    """The nearest builtin class on ``cls``'s ``__base__`` chain: its C struct is the
    instance layout, so its ``__new__`` is the one that may allocate a ``cls``.

    ``cls.__new__(cls)`` is not that one in general: for ``class X(RayTaskError,
    MemoryError)`` it finds ``MemoryError.__new__``, which refuses ("not safe") because the
    layout comes from ``Exception``."""
    base: type | None = cls
    while base is not None and base.__flags__ & _HEAPTYPE:
        base = base.__base__
    return base or object


def new_exception(cls: type[_E], args: tuple[Any, ...]) -> _E:
    """An instance of ``cls`` with ``args``, made without running the class's Python
    ``__init__``/``__new__`` (they may take other arguments than ``args``).

    The builtin base's ``__new__`` gets ``args`` (``BaseExceptionGroup`` needs its
    ``(message, exceptions)`` there) or, if it rejects them, nothing. Raises when neither works
    (a ``BaseExceptionGroup`` nesting a ``KeyboardInterrupt`` can't be an ``Exception``)."""
    base: Any = _static_base(cls)
    try:
        exc = base.__new__(cls, *args)
    except Exception:
        exc = base.__new__(cls)
    exc.args = args
    return cast("_E", exc)


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """``exc``'s attributes that ``vars(exc)`` misses: C-level fields of builtin exceptions
    (``errno``, ``strerror``, ``filename`` of ``OSError``; the five of ``UnicodeError``;
    ``value`` of ``StopIteration``…) and ``__slots__`` of user classes. Unset ones are
    left out."""
    out: dict[str, Any] = {}
    for klass in type(exc).__mro__:
        for name, d in vars(klass).items():
            # args is set apart; dunders (__class__, __dict__, __cause__…) are no state.
            if (name in out or name == "args" or name[:2] == name[-2:] == "__"
                    or not isinstance(d, (types.MemberDescriptorType,
                                          types.GetSetDescriptorType))):
                continue
            try:
                out[name] = getattr(exc, name)
            except AttributeError:
                pass
    return out


def set_exception_fields(exc: BaseException, fields: dict[str, Any]) -> None:
    """Set what :func:`exception_fields` returned; read-only ones (``message`` and
    ``exceptions`` of a group, set by ``__new__``) are skipped."""
    for name, value in fields.items():
        try:
            setattr(exc, name, value)
        except Exception:
            pass


_dual_lock = threading.Lock()
_dual_cache: dict[type[BaseException], type[RayTaskError] | None] = {}


def _dual_class(cause_cls: type[BaseException]) -> type[RayTaskError] | None:
    with _dual_lock:
        if cause_cls in _dual_cache:
            return _dual_cache[cause_cls]
        cls: type[RayTaskError] | None
        # Exception, BaseException, RayError: RayTaskError already is one; a subclass of it
        # alone still gets the cause's args and the ``RayTaskError(Exception)`` name.
        bases: tuple[type, ...] = ((RayTaskError,) if issubclass(RayTaskError, cause_cls)
                                   else (RayTaskError, cause_cls))
        try:
            cls = type(
                f"RayTaskError({cause_cls.__name__})",
                bases,
                {
                    "__init__": RayTaskError.__init__,
                    "__str__": RayTaskError.__str__,
                    "__reduce__": RayTaskError.__reduce__,
                    # A __reduce_ex__ of the user's class would otherwise win over ours.
                    "__reduce_ex__": _reduce_ex,
                    "__module__": __name__,
                },
            )
        except Exception:  # a final class, a layout or metaclass conflict, __init_subclass__
            cls = None
        _dual_cache[cause_cls] = cls
        return cls


def _reduce_ex(self: RayTaskError, protocol: int) -> Any:
    return RayTaskError.__reduce__(self)


def _rebuild_task_error(function_name: str, traceback_str: str, cause: BaseException,
                        pid: int | None, dual: bool) -> RayTaskError:
    err = RayTaskError(function_name, traceback_str, cause, pid)
    return err.as_instanceof_cause() if dual else err


# -- Ray's names for what cannot happen in one process on one node -------------------------------
# They exist so that ``except ray.exceptions.NodeDiedError:`` and the like run unchanged; aioray
# never raises them (the docstring says what it does instead).
class CrossLanguageError(RayError):
    """Ray's Java/C++ interop errors. aioray runs Python only."""


class LocalRayletDiedError(RayError):
    """Ray's local raylet died. aioray has no raylet: the runtime is this process."""


class AuthenticationError(RayError):
    """Ray's cluster token authentication failed. aioray has no cluster to authenticate to."""


class UserCodeException(RayError):
    """Ray's wrapper for user-code errors in some of its libraries. aioray raises
    :class:`RayTaskError` (also an instance of your exception class)."""


class OutOfDiskError(RayError):
    """Ray: the local disk is full, so objects cannot be spilled. aioray raises
    :class:`ObjectStoreFullError` naming the sizes."""


class NodeDiedError(RayError):
    """Ray: the node running a task died. aioray has one node, this process's; its worker
    processes dying is :class:`WorkerCrashedError`."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Ray: fetching an object from another node timed out. aioray's objects are local."""


class RpcError(RayError):
    """Ray's gRPC failures. aioray's processes talk over local sockets it owns; a dead peer is
    :class:`WorkerCrashedError` or :class:`ActorDiedError`."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """Ray: an object was deleted while still referenced (a distributed ref-counting bug)."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Ray: lineage reconstruction of a lost object failed. aioray loses no objects: they live
    in this process (and its store) until their last ref goes."""


class PlasmaObjectNotAvailable(RayError):
    """Ray's internal 'object not in the local plasma store'."""


class RuntimeEnvSetupError(RayError):
    """Ray: building a ``runtime_env`` (pip, conda...) failed. aioray applies only local
    ``env_vars``/``working_dir``/``py_modules`` and rejects the rest with a ``ValueError`` at
    submission."""


class ObjectRefStreamEndOfStreamError(RayError):
    """Ray's internal end-of-stream signal of a streaming generator. aioray's generators end
    with ``StopIteration``/``StopAsyncIteration`` (as Ray's do for user code)."""


class StreamingGeneratorReplayInconsistentError(RaySystemError):
    """Ray: a retried generator task yielded differently than before. aioray replays nothing:
    a retried generator's refs come from its last attempt."""


class OufOfBandObjectRefSerializationException(RayError):
    """Ray (with its spelling): a ref pickled out of band (plain ``pickle``) where Ray forbids
    it. aioray allows it."""


class RayChannelError(RaySystemError):
    """Ray Compiled Graphs' channel errors. aioray has no compiled graphs
    (``experimental_compile()`` raises ``NotImplementedError``)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """See :class:`RayChannelError`."""


class RayCgraphCapacityExceeded(RaySystemError):
    """See :class:`RayChannelError`."""


class RayDirectTransportError(RaySystemError):
    """Ray's GPU-object transport errors. aioray moves objects through its own store."""

