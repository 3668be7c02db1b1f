"""The serializability walk behind ``inspect_serializability`` and submission errors.

Pickles an object the way aioray does; when that fails, walks into what the pickle would contain
— the closure and global variables of a function, the ``__dict__``/``__slots__`` of an object or
class, the items of a list, tuple, dict or set, a bound method's ``__self__``, a
``functools.partial``'s function and arguments — pickling each member on its own, and reports
the *innermost* members that fail: those whose own members all pickle (a lock, a generator, an
open file, …).
"""

from __future__ import annotations

import functools
import pickle
import reprlib
import types
from collections.abc import Iterator
from typing import Any, NamedTuple

from aioray._objects.pickler import PROTOCOL, Pickler

__all__ = ["FailureTuple", "default_name", "find_failures", "pickle_error", "short_repr"]

# Values that always pickle: the walk skips them instead of pickling each one on its own.
_TRIVIAL: frozenset[type] = frozenset(
    {int, float, bool, str, bytes, complex, type(None), range, type(Ellipsis)}
)
# Class attributes that say nothing about what failed.
_SKIP_CLASS_ATTRS = frozenset({"__dict__", "__weakref__", "__module__", "__doc__",
                               "__qualname__", "__slots__", "__annotations__", "__slotnames__",
                               "__parameters__", "__orig_bases__", "_abc_impl"})

# Members printed only when they fail (a container's items would flood the tree).
_QUIET = frozenset({"item", "key", "class"})

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 80


class FailureTuple(NamedTuple):
    """One innermost object that failed to serialize.

    ``obj`` is the object, ``name`` its variable or attribute name (``list[2]`` for an item;
    the ``name`` given to :func:`inspect_serializability` for the base object), ``parent`` the
    object that holds it (None for the base object) and ``path`` how to reach it from the base
    object, e.g. ``holder.inner.lock``.

    Equality and hashing go by the identity of ``obj`` and ``parent``: they may be unhashable.
    """

    obj: Any
    name: str
    parent: Any
    path: str = ""

    def __hash__(self) -> int:
        return hash((id(self.obj), self.name, id(self.parent), self.path))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FailureTuple) and self.obj is other.obj
                and self.parent is other.parent and self.name == other.name
                and self.path == other.path)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return (f"FailureTuple({self.name} [obj={short_repr(self.obj)}, "
                f"parent={short_repr(self.parent)}])")


def short_repr(obj: Any) -> str:
    """``repr(obj)``, cut to a line; never raises."""
    try:
        return _repr.repr(obj)
    except Exception:
        return f"<{type(obj).__name__} object (repr failed)>"


def default_name(obj: Any) -> str:
    """What to call ``obj`` when no name is given: a function's or class's qualified name,
    else its type's name."""
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if isinstance(name, str):
            return name
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return type(obj).__name__


class _Discard:
    """A file that forgets what is written: checking picklability needs no bytes."""

    def write(self, data: Any) -> int:
        return len(data)


def _drop_buffer(buf: pickle.PickleBuffer) -> bool:
    return False  # out of band, and never copied


def pickle_error(obj: Any) -> Exception | None:
    """The exception pickling ``obj`` raises, or None when it pickles."""
    try:
        Pickler(_Discard(), protocol=PROTOCOL, buffer_callback=_drop_buffer).dump(obj)
    except Exception as e:
        return e
    return None


def _code_names(code: types.CodeType) -> Iterator[str]:
    """Global names a code object (and the functions and classes nested in it) may load."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _members(obj: Any, name: str, path: str) -> Iterator[tuple[Any, str, str, str]]:
    """``(member, name, path, kind)`` for what pickling ``obj`` would also pickle (``kind``
    says how ``obj`` holds it)."""
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        for var, cell in zip(code.co_freevars, obj.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            yield value, var, f"{path}.<closure>.{var}", "nonlocal"
        globs = obj.__globals__
        seen: set[str] = set()
        for var in _code_names(code):
            if var in globs and var not in seen:
                seen.add(var)
                yield globs[var], var, f"{path}.<globals>.{var}", "global"
        for i, value in enumerate(obj.__defaults__ or ()):
            yield value, f"{name}.__defaults__[{i}]", f"{path}.__defaults__[{i}]", "default"
        for key, value in (obj.__kwdefaults__ or {}).items():
            yield value, key, f"{path}.{key}", "keyword default"
        for key, value in vars(obj).items():
            yield value, key, f"{path}.{key}", "attribute"
        return
    if isinstance(obj, types.MethodType):
        yield obj.__self__, "__self__", f"{path}.__self__", "bound object"
        yield obj.__func__, "__func__", f"{path}.__func__", "function"
        return
    if isinstance(obj, types.BuiltinMethodType):
        owner = getattr(obj, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            yield owner, "__self__", f"{path}.__self__", "bound object"
        return
    if isinstance(obj, functools.partial):
        yield obj.func, "func", f"{path}.func", "function"
        for i, value in enumerate(obj.args):
            yield value, f"{name}.args[{i}]", f"{path}.args[{i}]", "item"
        for key, value in obj.keywords.items():
            yield value, key, f"{path}.keywords[{key!r}]", "keyword"
        return
    if isinstance(obj, type):
        for key, value in list(vars(obj).items()):
            if key in _SKIP_CLASS_ATTRS:
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                for part in ("fget", "fset", "fdel"):
                    fn = getattr(value, part)
                    if fn is not None:
                        yield fn, f"{key}.{part}", f"{path}.{key}.{part}", "class attribute"
                continue
            yield value, key, f"{path}.{key}", "class attribute"
        return
    if isinstance(obj, types.ModuleType):
        return
    if isinstance(obj, dict):
        for i, (key, value) in enumerate(list(obj.items())):
            if type(key) not in _TRIVIAL and pickle_error(key) is not None:
                yield key, f"{name}.keys()[{i}]", f"{path}.keys()[{i}]", "key"
            yield value, f"{name}[{short_repr(key)}]", f"{path}[{short_repr(key)}]", "item"
        return
    fields = getattr(type(obj), "_fields", None)
    if isinstance(obj, tuple) and isinstance(fields, tuple):  # a namedtuple
        for i, value in enumerate(obj):
            field = fields[i] if i < len(fields) and isinstance(fields[i], str) else f"[{i}]"
            yield value, field, f"{path}.{field}", "field"
        yield from _class_of(obj, path)
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(list(obj)):
            yield value, f"{name}[{i}]", f"{path}[{i}]", "item"
        return
    if isinstance(obj, (set, frozenset)):
        for i, value in enumerate(list(obj)):
            yield value, f"{name}{{#{i}}}", f"{path}{{#{i}}}", "item"
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        for key, value in list(state.items()):
            yield value, str(key), f"{path}.{key}", "attribute"
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(slot, str) or slot in ("__dict__", "__weakref__"):
                continue
            try:
                value = getattr(obj, slot)
            except AttributeError:  # an unset slot
                continue
            yield value, slot, f"{path}.{slot}", "attribute"
    yield from _class_of(obj, path)


def _class_of(obj: Any, path: str) -> Iterator[tuple[Any, str, str, str]]:
    # An instance pickles its class too: by value when the class is not importable (defined
    # in __main__ or in a function), and then the class's own attributes can be the problem.
    # Checked last, and only when no other member failed (those explain the failure).
    cls = type(obj)
    name = getattr(cls, "__qualname__", cls.__name__)
    yield cls, name, f"type({path})", "class"


class _Walk:
    """One inspection: the failures found so far, and the printed tree."""

    def __init__(self, print_file: Any, echo: bool) -> None:
        self.failures: list[FailureTuple] = []
        # Objects found unpicklable (kept alive so their ids stay theirs): each is walked once,
        # which also ends cycles.
        self.failed: dict[int, Any] = {}
        self.print_file = print_file
        self.echo = echo
        self.level = 0

    def emit(self, msg: str) -> None:
        if self.echo:
            print("    " * self.level + msg, file=self.print_file)

    def check(self, obj: Any, name: str, parent: Any, path: str, depth: int,
              error: Exception | None) -> bool:
        """Walk ``obj``, which failed to pickle with ``error`` (None: not tried yet). True if
        it pickles; else its innermost failing members (or ``obj``) are recorded."""
        if error is None:
            error = pickle_error(obj)
            if error is None:
                return True
        if id(obj) in self.failed:
            self.emit("(checked above)")
            return False
        self.failed[id(obj)] = obj
        self.emit(f"!!! FAIL serialization: {error}")
        if depth <= 0:
            self.failures.append(FailureTuple(obj, name, parent, path))
            return False
        found = False
        self.level += 1
        try:
            for value, vname, vpath, kind in _members(obj, name, path):
                if type(value) in _TRIVIAL or (kind == "class" and found):
                    continue
                err = pickle_error(value)
                if err is None and kind in _QUIET:
                    continue
                self.emit(f"Serializing {kind} '{vname}' {short_repr(value)}...")
                if err is not None:
                    self.check(value, vname, obj, vpath, depth - 1, err)
                    found = True
        finally:
            self.level -= 1
        if not found:  # every member pickles (or it has none): obj itself is innermost
            self.failures.append(FailureTuple(obj, name, parent, path))
        return False


def find_failures(obj: Any, name: str | None = None, depth: int = 3,
                  error: Exception | None = None,
                  print_file: Any = None, echo: bool = False) -> list[FailureTuple]:
    """The innermost unpicklable objects inside ``obj``, in the order the walk met them
    (empty if ``obj`` pickles). ``error``: the exception pickling ``obj`` already raised."""
    walk = _Walk(print_file, echo)
    root = name if name is not None else default_name(obj)
    if error is None:
        error = pickle_error(obj)
        if error is None:
            return []
    walk.check(obj, root, None, root, depth, error)
    return walk.failures


