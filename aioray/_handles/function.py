"""``@remote`` functions: ``.remote()``, ``.options()``, pickling by id."""

from __future__ import annotations

import inspect
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from aioray._backend import registry
from aioray._handles.options import TASK_OPTIONS, check_generator_returns, validate
from aioray._handles.signature import function_binder
from aioray._objects import pickler as _pickle
from aioray.dag import bind_function

P = ParamSpec("P")
# What ``.remote()`` returns: ``ObjectRef[T]`` for a plain or async function,
# ``ObjectRefGenerator[Y]`` for a generator function, ``Any`` once ``num_returns`` is set.
R = TypeVar("R")

# fn id -> RemoteFunction, so a function pickled into a worker and back is the same object.
_REGISTRY: weakref.WeakValueDictionary[bytes, RemoteFunction[Any, Any]] = (
    weakref.WeakValueDictionary())


class RemoteFunction(Generic[P, R]):
    """A function made remote by ``@aioray.remote``. Call ``.remote(...)`` to run it as a task.

    Typed: ``RemoteFunction[P, R]`` checks ``.remote(*args)`` against the function's parameters
    ``P`` and returns ``R`` (``ObjectRef[T]``, or ``ObjectRefGenerator[Y]`` for generators).
    """

    def __init__(self, function: Callable[P, Any], options: dict[str, Any],
                 fn_id: bytes | None = None, pickled: bytes | None = None) -> None:
        self._function = function
        self._default_options = validate(options, TASK_OPTIONS, "a remote function")
        self._name = getattr(function, "__qualname__", None) or repr(function)
        self._fn_id = fn_id or uuid.uuid4().bytes
        self._pickled = pickled
        self._is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(
            function)
        self._is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(
            function)
        check_generator_returns(self._default_options, self._is_generator, self._name)
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", self._name)
        self.__qualname__ = self._name
        self.__module__ = getattr(function, "__module__", __name__)
        self.__wrapped__ = function
        # .remote() binds its arguments to the function's parameters (as Ray): TypeError at
        # submission. None: a callable whose signature can't be read, not checked.
        self._binder = function_binder(function)
        if fn_id is None:
            _REGISTRY[self._fn_id] = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Remote functions cannot be called directly. Instead of running "
            f"'{self.__name__}()', try '{self.__name__}.remote()'."
        )

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Submit a task; returns an ObjectRef (or several, or an ObjectRefGenerator)."""
        out: R = self._submit(args, kwargs, self._default_options)
        return out

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                options: dict[str, Any]) -> Any:
        """Check the arguments against the signature, then hand the task to the backend."""
        if self._binder is not None:
            self._binder.bind(args, kwargs)
        return registry.current().submit_task(self, args, kwargs, options)

    # num_returns changes what .remote() returns (a list of refs, a dynamic ref...): untyped then.
    @overload
    def options(self, *, num_returns: int | str | None,
                **options: Any) -> _BoundRemoteFunction[P, Any]: ...
    @overload
    def options(self, **options: Any) -> _BoundRemoteFunction[P, R]: ...

    def options(self, **options: Any) -> _BoundRemoteFunction[P, Any]:
        """Override options for the calls made through the returned object."""
        return self._bound(self._default_options, options)

    def _bound(self, base: dict[str, Any], options: dict[str, Any]) -> _BoundRemoteFunction[P, Any]:
        opts = validate(options, TASK_OPTIONS, f"{self._name}.options()")
        merged = {**base, **opts}
        check_generator_returns(merged, self._is_generator, self._name)
        return _BoundRemoteFunction(self, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return bind_function(self, args, kwargs)

    def _pickled_function(self) -> bytes:
        """The function, pickled once: what a worker process is sent before its first task."""
        if self._pickled is None:
            self._pickled = _pickle.dumps(self._function)
        return self._pickled

    def __reduce__(self) -> Any:
        # Once the function's own pickle exists, ship it as bytes (no re-pickling per nested
        # submit). Before that, the function goes by value *in the same pickler*: a function
        # that names itself (or a partner) reaches this RemoteFunction again through its
        # globals, and the pickler's memo closes the loop instead of recursing forever.
        if self._pickled is not None:
            return (_rebuild_from_bytes, (self._fn_id, self._pickled, self._default_options))
        return (_rebuild, (self._fn_id, self._function, self._default_options))

    def __repr__(self) -> str:
        return f"<aioray remote function {self._name}>"


class _BoundRemoteFunction(Generic[P, R]):
    """``f.options(...)``: the same function with other options."""

    def __init__(self, rf: RemoteFunction[P, R], options: dict[str, Any]) -> None:
        self._rf = rf
        self._options = options

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        out: R = self._rf._submit(args, kwargs, self._options)
        return out

    @overload
    def options(self, *, num_returns: int | str | None,
                **options: Any) -> _BoundRemoteFunction[P, Any]: ...
    @overload
    def options(self, **options: Any) -> _BoundRemoteFunction[P, R]: ...

    def options(self, **options: Any) -> _BoundRemoteFunction[P, Any]:
        return self._rf._bound(self._options, options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._rf(*args, **kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return bind_function(self, args, kwargs)


def _rebuild(fn_id: bytes, function: Callable[..., Any],
             options: dict[str, Any]) -> RemoteFunction[Any, Any]:
    """Unpickle: the process's one RemoteFunction for ``fn_id`` (a self-referring function may
    be rebuilt while its globals are still loading: the function object itself already exists).
    """
    rf = _REGISTRY.get(fn_id)
    if rf is None:
        rf = RemoteFunction(function, options, fn_id=fn_id)
        _REGISTRY[fn_id] = rf
    return rf


def _rebuild_from_bytes(fn_id: bytes, pickled: bytes,
                        options: dict[str, Any]) -> RemoteFunction[Any, Any]:
    rf = _REGISTRY.get(fn_id)
    if rf is None:
        rf = _rebuild(fn_id, _pickle.loads(pickled), options)
        rf._pickled = pickled
    return rf


def adopt_pickled(fn_id: bytes, pickled: bytes) -> None:
    """A worker was sent ``fn_id``'s pickle: keep it on the RemoteFunction that loading it made,
    so this process's nested submissions ship those bytes instead of pickling again."""
    rf = _REGISTRY.get(fn_id)
    if rf is not None and rf._pickled is None:
        rf._pickled = pickled
