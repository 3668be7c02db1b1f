"""Argument binding at ``.remote()``: wrong arguments raise ``TypeError`` at submission.

Ray binds a call's arguments to the function's signature when it is submitted; so do we, for
remote functions, actor constructors and actor methods (``self`` excluded), on every backend.

The check is a call to a *stub*: a function compiled once, lazily, with the same parameters as
the user's function (no annotations, placeholder defaults) and an empty body. CPython's own
argument binding then does the work (well under a microsecond, so submission stays fast) and
its ``TypeError`` is the one Python would raise, naming the function:
``square() missing 1 required positional argument: 'x'``.

A :class:`Binder` pickles as its parameter list (text), so handles passed to worker processes
keep checking. Callables whose signature cannot be read are not checked (the task raises).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

_EMPTY = inspect.Parameter.empty


class _Default:
    """Stands for every default value in a stub's parameter list (its repr is the name the
    stub's globals bind)."""

    def __repr__(self) -> str:
        return "_d"


_DEFAULT = _Default()
_SELF = object()  # the receiver a method stub is bound to


class Binder:
    """Checks ``(args, kwargs)`` against one callable's parameters; see the module doc."""

    __slots__ = ("_check", "method", "params", "qualname")

    def __init__(self, params: str, qualname: str, method: bool) -> None:
        self.params = params  # "(self, x, y=_d, *, z)"
        self.qualname = qualname  # what the error names: "square", "Counter.incr"
        self.method = method  # the first parameter is self: bound to a placeholder
        self._check: Callable[..., Any] | None = None

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` (Python's message) unless ``args``/``kwargs`` fit."""
        check = self._check
        if check is None:
            check = self._check = self._compile()
        try:
            check(*args, **kwargs)
        except TypeError as e:
            raise TypeError(str(e)) from None

    def _compile(self) -> Callable[..., Any]:
        namespace: dict[str, Any] = {"_d": None}
        exec(f"def _stub{self.params}:\n    pass\n", namespace)  # our own text: names, _d
        stub = namespace["_stub"]
        name = self.qualname.rpartition(".")[2]
        stub.__name__ = name
        stub.__qualname__ = self.qualname
        out: Callable[..., Any] = types.MethodType(stub, _SELF) if self.method else stub
        return out

    def __reduce__(self) -> Any:
        return (Binder, (self.params, self.qualname, self.method))


def _params_text(sig: inspect.Signature) -> str:
    params = [p.replace(annotation=_EMPTY,
                        default=_EMPTY if p.default is _EMPTY else _DEFAULT)
              for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=_EMPTY))


def _make(fn: Any, qualname: str, method: bool) -> Binder | None:
    try:
        sig = inspect.signature(fn)
        text = _params_text(sig)
        binder = Binder(text, qualname, method)
        binder._check = binder._compile()  # proves the text compiles
    except Exception:  # no signature (a builtin), or parameters a def can't spell
        return None
    if method and not _takes_self(sig):
        return None  # a method that can't take self: calling it fails anyway, at run time
    return binder


def _takes_self(sig: inspect.Signature) -> bool:
    for p in sig.parameters.values():
        return p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    return False


def function_binder(fn: Any) -> Binder | None:
    """The binder of a remote function's calls (None: not checked)."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qualname, str):
        return None
    return _make(fn, qualname, method=False)


def method_binder(fn: Any) -> Binder | None:
    """The binder of an actor method's calls, ``fn`` as found on the class (takes ``self``).
    Only plain functions: other callables (a staticmethod, a callable object) are not
    checked."""
    if not isinstance(fn, types.FunctionType):
        return None
    return _make(fn, fn.__qualname__, method=True)


def constructor_binder(cls: type) -> Binder | None:
    """The binder of ``Cls.remote(...)``: ``Cls.__init__``'s parameters (``self`` excluded),
    or none at all for a class with neither ``__init__`` nor ``__new__`` of its own."""
    init: Any = getattr(cls, "__init__", None)
    if isinstance(init, types.FunctionType):
        return _make(init, init.__qualname__, method=True)
    new: Any = getattr(cls, "__new__", None)
    if init is object.__init__ and new is object.__new__:
        binder = Binder("()", cls.__qualname__, method=False)
        return binder
    return None
