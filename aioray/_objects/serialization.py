"""Turning values into immutable stored objects and back.

cloudpickle with pickle protocol 5: functions from ``__main__``, closures and lambdas pickle by
value, and large contiguous buffers (numpy arrays) travel out of band. Buffers of at least
``SHM_THRESHOLD`` bytes are copied once into shared memory; every later ``get`` and every worker
process maps that memory read-only instead of copying it.

Cheap immutables (int, str, bytes, None, …) are stored as themselves: they need no copy.
"""

from __future__ import annotations

import copyreg
import inspect
import pickle
import threading
import traceback
from collections.abc import Callable
from typing import Any

from aioray._objects import pickler as _pickle
from aioray._objects.serializability import default_name, find_failures, pickle_error, short_repr
from aioray._objects.shm import SharedBuffer
from aioray.exceptions import (
    ObjectLostError,
    UnserializableException,
    exception_fields,
    new_exception,
    set_exception_fields,
)

SHM_THRESHOLD = 1 << 20
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {int, float, bool, str, bytes, complex, type(None), range, type(Ellipsis)}
)

_collect = threading.local()

# The driver owns (and eventually unlinks) every segment; workers create segments for their
# results and hand them over, so in a worker this is False.
OWN_SEGMENTS = True


class SerializedObject:
    """A value pickled once: ``data`` plus out-of-band ``buffers``.

    ``refs`` holds the ObjectRefs found inside the value (driver side only) so the objects they
    point to stay alive as long as this value does.
    """

    __slots__ = ("buffers", "data", "raw", "refs")

    def __init__(self, data: bytes, buffers: list[bytes | SharedBuffer], refs: tuple[Any, ...] = (),
                 raw: bool = False):
        self.data = data
        self.buffers = buffers
        self.refs = refs
        # The value is exactly ``bytes`` of buffers[0] (a large bytes object: no pickle at all).
        self.raw = raw

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(
            b.size if isinstance(b, SharedBuffer) else len(b) for b in self.buffers
        )

    def ref_ids(self) -> list[bytes]:
        return [r.binary() for r in self.refs]

    def __reduce__(self) -> Any:
        # The ids of contained refs travel beside the data so the receiving process can pin
        # (driver) or borrow (worker) them before anyone deserializes the value.
        return (_from_wire, (self.data, self.buffers, self.ref_ids(), self.raw))


def _from_wire(data: bytes, buffers: list[bytes | SharedBuffer], ids: list[bytes],
               raw: bool = False) -> SerializedObject:
    refs = tuple(rebuild_ref(i) for i in ids) if ids else ()
    return SerializedObject(data, buffers, refs, raw)


def _no_refs_yet(id: bytes) -> Any:
    raise RuntimeError("aioray._handles.ref was not imported: cannot rebuild refs")


# Turns a contained ref's id back into a ref (pinning or borrowing its object). Set by
# aioray._handles.ref, the layer that knows refs; objects sit below it.
rebuild_ref: Callable[[bytes], Any] = _no_refs_yet


class ErrorValue:
    """A stored error: ``get`` raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error

    def __reduce__(self) -> Any:
        return (ErrorValue, (self.error,))


def note_ref(ref: Any) -> None:
    """Called by ``ObjectRef.__reduce__``: records a ref contained in the value being pickled."""
    refs = getattr(_collect, "refs", None)
    if refs is not None:
        refs.append(ref)


def serialize(value: Any, driver_pid: int) -> Any:
    """Store form of ``value``: itself if immutable, else a :class:`SerializedObject`."""
    tp = type(value)
    if tp in IMMUTABLE_TYPES and not (tp is bytes and len(value) >= SHM_THRESHOLD):
        return value
    if isinstance(value, ErrorValue):
        return value
    return serialize_always(value, driver_pid)


def serialize_always(value: Any, driver_pid: int) -> SerializedObject:
    buffers: list[pickle.PickleBuffer] = []
    refs: list[Any] = []
    prev = getattr(_collect, "refs", None)
    _collect.refs = refs
    if type(value) is bytes and len(value) >= SHM_THRESHOLD:
        # The value is its buffer: one copy into shared memory, read back with one copy.
        return SerializedObject(b"", [SharedBuffer.create(driver_pid, memoryview(value),
                                                          owner=OWN_SEGMENTS)], (), raw=True)
    if type(value) is bytearray and len(value) >= SHM_THRESHOLD:
        value = _pickle.OutOfBand(value)
    try:
        data = _pickle.dumps(value, buffer_callback=buffers.append)
    finally:
        _collect.refs = prev
    out: list[bytes | SharedBuffer] = []
    for pb in buffers:
        mv = pb.raw()
        if mv.nbytes >= SHM_THRESHOLD:
            out.append(SharedBuffer.create(driver_pid, mv, owner=OWN_SEGMENTS))
        else:
            out.append(bytes(mv))
    return SerializedObject(data, out, tuple(refs))


def deserialize(stored: Any) -> Any:
    """The value of a stored object; raises the error of an :class:`ErrorValue`."""
    tp = type(stored)
    if tp is SerializedObject:
        try:
            if stored.raw:
                buf = stored.buffers[0]
                return buf.read_bytes() if isinstance(buf, SharedBuffer) else buf
            bufs = [b.view() if isinstance(b, SharedBuffer) else b for b in stored.buffers]
        except FileNotFoundError as e:  # the segment was swept (shutdown) before first use
            raise ObjectLostError(message=(
                "This object's shared memory is gone: aioray.shutdown() frees every object, "
                "so get values you still need before shutting down.")) from e
        return pickle.loads(stored.data, buffers=bufs)
    if tp is ErrorValue:
        raise stored.error
    return stored


def describe_unpicklable(args: tuple[Any, ...], kwargs: dict[str, Any],
                         func_name: str, exc: BaseException,
                         func: Any = None) -> TypeError:
    """The error for a call whose arguments failed to pickle. It names the argument (position
    or keyword; also its parameter when ``func``, the callable as called, is given), the
    innermost objects inside it that cannot be serialized (the walk of
    ``aioray.util.inspect_serializability``) and what to do."""
    params = _parameter_names(func, len(args))
    # (what, parameter, name of the value in paths, value)
    where: list[tuple[str, str | None, str, Any]] = [
        (f"argument {i}", params[i], params[i] or default_name(a), a)
        for i, a in enumerate(args)]
    where += [(f"keyword argument {k!r}", None, k, v) for k, v in kwargs.items()]
    for what, param, root, value in where:
        if type(value) in IMMUTABLE_TYPES:
            continue
        error = pickle_error(value)
        if error is None:
            continue
        msg = f"Could not serialize {what} ({type(value).__name__}) of {func_name}"
        if param is not None:
            msg += f" (parameter {param!r})"
        msg += f": {error}."
        inner = [f for f in find_failures(value, root, depth=8, error=error)
                 if f.obj is not value]
        if inner:
            first = inner[0]
            what_inner = (short_repr(first.obj) if first.name == first.path
                          else f"`{first.name}` ({short_repr(first.obj)})")
            msg += (f" The innermost object that cannot be serialized is {what_inner} at "
                    f"{first.path}")
            if len(inner) > 1:
                msg += "; also at " + ", ".join(f.path for f in inner[1:4])
                msg += " and more." if len(inner) > 4 else "."
            else:
                msg += "."
        return TypeError(
            f"{msg} Task and actor-call arguments are copied (serialized) when the call is "
            "submitted, as in Ray: pass a picklable value, create such objects inside the "
            "task or actor instead, or leave them out of what is pickled (__getstate__ / "
            "__reduce__). aioray.util.inspect_serializability(value) prints the whole check."
        )
    return TypeError(f"Could not serialize the call of {func_name}: {exc}")


def _parameter_names(func: Any, n: int) -> list[str | None]:
    """The parameter each of ``n`` positional arguments binds to (None where unknown)."""
    names: list[str | None] = [None] * n
    if func is None:
        return names
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return names
    i = 0
    for p in params:
        if i >= n:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names[i] = p.name
            i += 1
        elif p.kind is p.VAR_POSITIONAL:
            for j in range(i, n):
                names[j] = f"{p.name}[{j - i}]"
            break
    return names


def picklable_exception(exc: BaseException) -> BaseException:
    """A copy of ``exc`` that pickles: a pickle round trip of it, else a copy rebuilt from its
    state, else an :class:`~aioray.exceptions.UnserializableException` naming it.

    Exceptions whose ``__init__`` takes other arguments than it passes to ``super().__init__``
    (``MyError(code, msg)``) break plain pickling, which re-calls ``cls(*exc.args)``; Ray then
    reports a system error instead of the user's exception. We rebuild those from their state
    (``args``, C-level fields, ``__slots__`` and ``__dict__``) without calling ``__init__``;
    also those whose plain pickling silently drops their ``__slots__``. Only an exception whose
    state itself can't be pickled (it holds a lock) becomes the stand-in.
    """

    cls = type(exc)
    copy: BaseException | None = None
    error: BaseException | None = None
    try:
        copy = pickle.loads(_pickle.dumps(exc))
        if type(copy) is not cls or not _lost_fields(exc, copy):
            return copy
    except Exception as e:
        error = e
    if _reduce_is_builtin(cls) and cls.__module__ != "builtins":
        # The user's class pickles the builtin way (``cls(*args)`` + ``__dict__``), which
        # failed or dropped fields: pickle its state instead.
        added = copyreg.dispatch_table.get(cls) is None
        copyreg.pickle(cls, _reduce_exception_by_state)
        try:
            by_state: BaseException = pickle.loads(_pickle.dumps(exc))
            return by_state
        except Exception as e:
            error = error or e
            if added:
                del copyreg.dispatch_table[cls]
    if copy is not None:
        # A builtin class (``AttributeError.obj``) or the user's own ``__reduce__`` drops a
        # field: that is how this class pickles anywhere.
        return copy
    reason = "".join(traceback.format_exception_only(type(error), error)).strip()
    return UnserializableException.of(exc, reason)


def _reduce_is_builtin(cls: type) -> bool:
    """True if ``cls`` pickles by a builtin exception's ``__reduce__`` (neither it nor a base
    of the user's defines ``__reduce__``/``__reduce_ex__``)."""
    for name in ("__reduce_ex__", "__reduce__"):
        owner = next((k for k in cls.__mro__ if name in vars(k)), object)
        if owner.__module__ != "builtins":
            return False
    return True


def _lost_fields(exc: BaseException, copy: BaseException) -> bool:
    """True if the pickled ``copy`` lacks a C-level field or ``__slots__`` value ``exc`` has
    (the builtin ``__reduce__`` keeps only ``args`` and ``__dict__``)."""

    have = exception_fields(copy)
    return any(name not in have or (have[name] is None and value is not None)
               for name, value in exception_fields(exc).items())


def _reduce_exception_by_state(exc: BaseException) -> Any:

    return (_rebuild_exception, (type(exc), exc.args, dict(vars(exc)), exception_fields(exc)))


def _rebuild_exception(cls: type[BaseException], args: tuple[Any, ...],
                       state: dict[str, Any],
                       fields: dict[str, Any] | None = None) -> BaseException:

    exc = new_exception(cls, args)
    if fields:
        set_exception_fields(exc, fields)
    exc.__dict__.update(state)
    # This process may pickle it again (to another worker): keep it picklable here too.
    copyreg.pickle(cls, _reduce_exception_by_state)
    return exc
