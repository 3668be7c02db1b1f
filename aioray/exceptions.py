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

import threading
from typing import Any

__all__ = [
    "ActorDiedError",
    "ActorShutdownError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AioRayError",
    "AsyncioActorExit",
    "GetTimeoutError",
    "ObjectFreedError",
    "ObjectLostError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "PlacementGroupRemovedError",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "RuntimeShutdownError",
    "TaskCancelledError",
    "TaskUnschedulableError",
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


class PlacementGroupRemovedError(RaySystemError):
    """The task or actor's placement group was removed before it could run."""


class PendingCallsLimitExceeded(RayError):
    """Raised by ``handle.method.remote()`` when the actor already has ``max_pending_calls``
    calls in flight. Not raised for actors without that option."""


class GetTimeoutError(RayError, TimeoutError):
    """``get``/``wait``/``next`` ran out of time. Also a builtin :class:`TimeoutError`."""


class RayTaskError(RayError):
    """The task's own code raised.

    ``cause`` is the original exception, ``traceback_str`` the remote traceback and
    ``function_name`` the task that raised. ``get`` raises ``as_instanceof_cause()`` of this,
    which is an instance of both :class:`RayTaskError` and ``type(cause)``.
    """

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException,
                 pid: int | None = None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        # Exception.args drives the default pickling and repr; keep it simple and ours.
        Exception.__init__(self, self._message())

    def _message(self) -> str:
        where = f" (pid={self.pid})" if self.pid is not None else ""
        tb = self.traceback_str.rstrip()
        return f"{type(self.cause).__name__} in {self.function_name}{where}\n{tb}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> Any:
        return (_rebuild_task_error,
                (self.function_name, self.traceback_str, self.cause, self.pid,
                 type(self) is not RayTaskError))

    def as_instanceof_cause(self) -> RayTaskError:
        """Return a copy that is also an instance of the cause's class.

        When the cause is itself a task error (a task let a nested ``get`` raise), the copy is
        an instance of the innermost user exception's class, so ``except ValueError`` still
        works one or more task levels up; ``cause`` keeps the whole chain.
        """
        root = self.cause
        while isinstance(root, RayTaskError):
            root = root.cause
        cause_cls = type(root)
        if isinstance(self, cause_cls) or not issubclass(cause_cls, Exception):
            return self
        cls = _dual_class(cause_cls)
        if cls is None:
            return self
        err = cls.__new__(cls)
        RayTaskError.__init__(err, self.function_name, self.traceback_str, self.cause, self.pid)
        err.__cause__ = self.cause
        # Copy the cause's attributes so handlers that read e.g. ``err.errno`` still work.
        try:
            for k, v in vars(root).items():
                err.__dict__.setdefault(k, v)
        except TypeError:
            pass
        return err


_dual_lock = threading.Lock()
_dual_cache: dict[type[BaseException], type[RayTaskError] | None] = {}


def _dual_class(cause_cls: type[BaseException]) -> type[RayTaskError] | None:
    with _dual_lock:
        if cause_cls in _dual_cache:
            return _dual_cache[cause_cls]
        cls: type[RayTaskError] | None
        try:
            cls = type(
                f"RayTaskError({cause_cls.__name__})",
                (RayTaskError, cause_cls),
                {
                    "__init__": RayTaskError.__init__,
                    "__str__": RayTaskError.__str__,
                    "__reduce__": RayTaskError.__reduce__,
                    "__module__": __name__,
                },
            )
        except TypeError:  # e.g. layout conflicts between two C-level exception bases
            cls = None
        _dual_cache[cause_cls] = cls
        return cls


def _rebuild_task_error(function_name: str, traceback_str: str, cause: BaseException,
                        pid: int | None, dual: bool) -> RayTaskError:
    err = RayTaskError(function_name, traceback_str, cause, pid)
    return err.as_instanceof_cause() if dual else err
