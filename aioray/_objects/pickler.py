"""aioray's one pickler: cloudpickle, with code objects that keep their file name.

Every value, function and message that crosses a process boundary goes through :func:`dumps`.

cloudpickle 3.1 rewrites the ``co_filename`` of every function pickled by value to
``<dynamic-code>`` (for deterministic payloads). A task's traceback then names no file and shows
no source line. Workers run the driver's own interpreter (same version, same machine), so code
objects travel as ``marshal`` data instead: exact, with file name, line table and exception
table intact, whatever cloudpickle version is installed.
"""

from __future__ import annotations

import io
import marshal
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any

import cloudpickle

PROTOCOL = 5


def _reduce_code(code: types.CodeType) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
    return (marshal.loads, (marshal.dumps(code),))


def _rebuild_memoryview(buf: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    mv: memoryview = memoryview(buf)
    if fmt == "B" and len(shape) == 1:
        return mv
    out: memoryview = mv.cast("B").cast(fmt, shape)  # type: ignore[call-overload]
    return out


def _reduce_memoryview(mv: memoryview) -> tuple[Any, ...]:
    fmt, shape = mv.format, tuple(mv.shape or ())
    if len(fmt) != 1 or not shape:  # struct formats and 0-d views can't be cast back
        fmt, shape = "B", (mv.nbytes,)
    if mv.c_contiguous:
        return (_rebuild_memoryview, (pickle.PickleBuffer(mv), fmt, shape))
    return (_rebuild_memoryview, (mv.tobytes(), fmt, shape))


class Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    """cloudpickle's pickler with exact code objects and buffers (see the module docstring).

    A ``memoryview`` travels as a pickle-5 buffer, so a large one goes out of band (to shared
    memory) like a numpy array, and comes back a memoryview with its format and shape
    (cloudpickle alone turns it into ``bytes`` or refuses it).
    """

    dispatch_table = ChainMap({types.CodeType: _reduce_code},
                              cloudpickle.CloudPickler.dispatch_table)

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is memoryview:
            return _reduce_memoryview(obj)
        return super().reducer_override(obj)


class OutOfBand:
    """Wraps a ``bytearray`` (or ``bytes``) so it pickles as an out-of-band buffer and loads
    as the same type again.

    The pickler consults no hook for exact ``bytes`` and ``bytearray`` (a C fast path), so a
    large top-level value is wrapped before pickling. (Large top-level ``bytes`` skip pickling
    altogether: see ``serialization.serialize_always``.)
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self.data), (pickle.PickleBuffer(self.data),))


def dumps(obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """Pickle ``obj`` (protocol 5); large buffers go to ``buffer_callback`` when given."""
    with io.BytesIO() as f:
        Pickler(f, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return f.getvalue()


loads = pickle.loads
