"""What users hold for actors: ``@remote`` classes, their handles and methods, ``@method``.

Calls go to the handle's backend through the :class:`~aioray._backend.base.Backend` interface;
nothing here knows which backend that is.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar, cast, overload

from aioray._backend import registry
from aioray._backend.base import Backend
from aioray._handles.options import (
    ACTOR_OPTIONS,
    METHOD_OPTIONS,
    check_generator_returns,
    validate,
)
from aioray._handles.signature import (
    Binder,
    constructor_binder,
    function_binder,
    method_binder,
)
from aioray.dag import bind_class, bind_method
from aioray.exceptions import ActorClassInheritanceException, ActorDiedError

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


# -- the @method decorator and class metadata ---------------------------------------------
# Typing: the decorated method keeps its type (so aioray.mypy_plugin can type its calls), except
# with num_returns, which changes what .remote() returns.
@overload
def method(*, num_returns: int | str | None,
           **kwargs: Any) -> Callable[[Callable[..., Any]], Any]: ...
@overload
def method(**kwargs: Any) -> Callable[[F], F]: ...
@overload
def method(fn: F, /) -> F: ...


def method(*args: Any, **kwargs: Any) -> Any:
    """Annotate an actor method: ``@aioray.method(num_returns=2, concurrency_group="io")``."""
    if args:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return method()(args[0])  # bare @aioray.method, as recent Ray allows
        raise TypeError("@aioray.method takes keyword arguments only, e.g. "
                        "@aioray.method(num_returns=2).")
    opts = validate(kwargs, METHOD_OPTIONS, "@aioray.method")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        check_generator_returns(opts, inspect.isgeneratorfunction(fn)
                                or inspect.isasyncgenfunction(fn), getattr(fn, "__qualname__", "it"))
        fn.__aioray_method_options__ = opts  # type: ignore[attr-defined]
        return fn
    return deco


class MethodMeta:
    __slots__ = ("binder", "decorator", "is_async", "is_generator", "name", "options")

    def __init__(self, name: str, fn: Any, *, takes_self: bool = True) -> None:
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.options: dict[str, Any] = dict(getattr(fn, "__aioray_method_options__", {}))
        # .remote() binds its arguments to the method's parameters, self excluded (as Ray);
        # a static method (or a class method, already bound) has no self to skip.
        self.binder: Binder | None = method_binder(fn) if takes_self else function_binder(fn)
        # Ray's hook: wraps the caller-side invocation ``(args, kwargs) -> refs`` of .remote().
        self.decorator: Callable[[Invocation], Invocation] | None = getattr(
            fn, "__ray_invocation_decorator__", None)

    def __reduce__(self) -> Any:
        return (build_meta, (self.name, self.is_async, self.is_generator, self.options,
                                self.binder, self.decorator))


Invocation = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def build_meta(name: str, is_async: bool, is_gen: bool, options: dict[str, Any],
                  binder: Binder | None = None,
                  decorator: Callable[[Invocation], Invocation] | None = None) -> MethodMeta:
    """A MethodMeta from its parts (unpickling; handles built without the class)."""
    m = MethodMeta.__new__(MethodMeta)
    m.name, m.is_async, m.is_generator, m.options = name, is_async, is_gen, options
    m.binder, m.decorator = binder, decorator
    return m



def _methods_of(cls: type) -> dict[str, MethodMeta]:
    out = {}
    for name, fn in inspect.getmembers(cls, predicate=callable):
        if name.startswith("__") and name not in ("__call__",):
            continue
        # Static and class methods are remote methods too, as on Ray (and callable on the
        # remote class itself, which forwards to the class).
        plain = not isinstance(inspect.getattr_static(cls, name, None),
                               (staticmethod, classmethod))
        out[name] = MethodMeta(name, fn, takes_self=plain)
    return out


class ActorClass(Generic[T]):
    """A class made remote by ``@aioray.remote``; ``Cls.remote(...)`` creates an actor."""

    def __init__(self, cls: type[T], options: dict[str, Any], *, check: bool = True) -> None:
        self._cls = cls
        self._default_options = validate(options, ACTOR_OPTIONS, f"actor {cls.__name__}")
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__
        if check:
            self._check_groups(self._default_options)

    # Lazy: while a class pickled by value is loading, its methods may name this ActorClass,
    # which is then rebuilt around a class whose methods are not set yet.
    @functools.cached_property
    def _methods(self) -> dict[str, MethodMeta]:
        return _methods_of(self._cls)

    @functools.cached_property
    def _is_async(self) -> bool:
        return any(m.is_async for m in self._methods.values())

    @functools.cached_property
    def _ctor_binder(self) -> Binder | None:
        return constructor_binder(self._cls)

    def _check_groups(self, opts: dict[str, Any]) -> None:
        groups = set((opts.get("concurrency_groups") or {}).keys())
        for m in self._methods.values():
            g = m.options.get("concurrency_group")
            if g is not None and g not in groups:
                raise ValueError(
                    f"Method {self._cls.__name__}.{m.name} uses concurrency group {g!r}, which "
                    f"is not declared; declared groups: {sorted(groups) or 'none'}. Add it to "
                    "@aioray.remote(concurrency_groups={...}).")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
            f"'{self.__name__}.remote()'.")

    if not TYPE_CHECKING:  # typed code (mypy plugin, pyright) sees the class's own attributes
        def __getattr__(self, name: str) -> Any:
            # Class attributes, static and class methods of the user's class, as on Ray
            # (whose remote class derives from it).
            cls = self.__dict__.get("_cls")
            if name == "__ray_actor_class__" and cls is not None:
                return cls  # Ray's name for the plain class
            if cls is None or (name.startswith("__") and name.endswith("__")):
                raise AttributeError(name)
            try:
                return getattr(cls, name)
            except AttributeError:
                raise AttributeError(
                    f"Actor class '{self.__name__}' has no attribute '{name}'.") from None

    def __mro_entries__(self, bases: tuple[Any, ...]) -> NoReturn:
        # ``class Sub(RemoteCls)``: refused as in Ray, with Ray's error class and advice.
        raise ActorClassInheritanceException(
            f"Attempted to define a subclass of actor class '{self.__name__}'. Inheriting from "
            f"actor classes is not currently supported. (As in Ray.) Inherit from the plain "
            f"class instead "
            f"({self.__name__}.__ray_actor_class__, or define it without @remote) and make "
            "the subclass an actor class with @aioray.remote.")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        """Create the actor; returns its handle at once (creation runs in the background)."""
        if self._ctor_binder is not None:
            self._ctor_binder.bind(args, kwargs)
        return registry.current().create_actor(self, args, kwargs, self._default_options)

    def options(self, **options: Any) -> _BoundActorClass[T]:
        """The same class with other options for the actors created through the result.

        ``num_cpus``/``num_gpus``/``resources`` (held for the actor's lifetime; creation waits
        for them), ``max_concurrency`` (default 1 for sync actors, 1000 for async ones),
        ``concurrency_groups``, ``max_restarts``, ``max_task_retries``, ``max_pending_calls``,
        ``name``/``namespace``/``get_if_exists``, and ``lifetime="detached"``: in one process
        there is no other driver to outlive, so a detached actor simply survives the loss of
        all its handles and lives until ``kill()``, ``exit_actor()`` or ``shutdown()``.
        """
        opts = validate(options, ACTOR_OPTIONS, f"{self.__name__}.options()")
        merged = {**self._default_options, **opts}
        self._check_groups(merged)
        return _BoundActorClass(self, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return bind_class(self, args, kwargs)

    def __reduce__(self) -> Any:
        # A module-level ``@remote`` class travels by name, like any importable class, so a
        # process task can use it even when its methods refer to unpicklable module globals.
        if _importable_as(self, self.__module__, self.__qualname__):
            return (_import_actor_class, (self.__module__, self.__qualname__))
        return (_rebuild_actor_class, (self._cls, self._default_options))


def _rebuild_actor_class(cls: type, options: dict[str, Any]) -> ActorClass[Any]:
    # Checked when it was defined; ``cls`` may still be loading (see ActorClass._methods).
    return ActorClass(cls, options, check=False)


def _importable_as(obj: object, module: str, qualname: str) -> bool:
    mod = sys.modules.get(module)
    if mod is None or module == "__main__" or "<locals>" in qualname:
        return False
    target: Any = mod
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is obj


def _import_actor_class(module: str, qualname: str) -> ActorClass[Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return cast(ActorClass[Any], target)


class _BoundActorClass(Generic[T]):
    def __init__(self, ac: ActorClass[T], options: dict[str, Any]) -> None:
        self._ac = ac
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        if self._ac._ctor_binder is not None:
            self._ac._ctor_binder.bind(args, kwargs)
        return registry.current().create_actor(self._ac, args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundActorClass[T]:
        return self._ac.options(**{**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return bind_class(self, args, kwargs)



class ActorMethod(Generic[P, R]):
    """``handle.method``: call it with ``.remote(...)``.

    Typed ``ActorMethod[P, R]``: ``.remote(*P)`` returns ``R``. Through ``handle.name`` that is
    ``ActorMethod[..., Any]``; aioray's mypy plugin (``aioray.mypy_plugin``) gives the method's
    own parameters and ``ObjectRef[...]``/``ObjectRefGenerator[...]`` instead.
    """

    def __init__(self, handle: ActorHandle[Any], meta: MethodMeta,
                 options: dict[str, Any] | None = None) -> None:
        self._handle = handle
        self._meta = meta
        self._options = options if options is not None else meta.options

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        decorator = self._meta.decorator
        invoke = self._invoke if decorator is None else decorator(self._invoke)
        out: R = invoke(args, kwargs)
        return out

    def _invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        backend = self._handle._backend
        if backend is None:
            raise ActorDiedError(f"The actor {self._handle._actor_id.hex()} is dead or unknown "
                                 "(this handle was rebuilt after it ended).")
        binder = self._meta.binder
        if binder is not None:
            binder.bind(args, kwargs)
        return backend.call_actor(self._handle, self._meta, args, kwargs, self._options)

    # num_returns changes what .remote() returns: untyped then (as for remote functions).
    @overload
    def options(self, *, num_returns: int | str | None,
                **options: Any) -> ActorMethod[P, Any]: ...
    @overload
    def options(self, **options: Any) -> ActorMethod[P, R]: ...

    def options(self, **options: Any) -> ActorMethod[P, Any]:
        opts = validate(options, METHOD_OPTIONS, f"method {self._meta.name}.options()")
        merged = {**self._options, **opts}
        check_generator_returns(merged, self._meta.is_generator, f"method {self._meta.name}")
        return ActorMethod(self._handle, self._meta, merged)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of "
            f"'{self._handle._class_name}.{self._meta.name}()', try "
            f"'{self._meta.name}.remote()'.")

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return bind_method(self, args, kwargs)


# Methods every actor handle has (Ray's): ``__ray_terminate__`` ends the actor after the
# calls submitted before it; ``__ray_ready__`` resolves to True once ``__init__`` finished
# (raising the actor's death, e.g. its ``__init__`` error, if it never will).
_BUILTIN_METHODS = {name: MethodMeta(name, lambda: None)
                    for name in ("__ray_terminate__", "__ray_ready__")}


class ActorHandle(Generic[T]):
    """A reference to an actor. Picklable: pass it to tasks (also in worker processes) and to
    other actors. ``handle.method.remote(...)`` calls a method."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict[str, MethodMeta],
                 token: Any, backend: Backend | None) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._token = token
        self._backend = backend

    def __getattr__(self, name: str) -> ActorMethod[..., Any]:
        if name.startswith("_") and name not in self.__dict__.get("_methods", {}):
            if name in _BUILTIN_METHODS:
                return ActorMethod(self, _BUILTIN_METHODS[name])
            raise AttributeError(name)
        meta = self._methods.get(name)
        if meta is None:
            raise AttributeError(
                f"'{self._class_name}' actor has no method '{name}'. Methods: "
                f"{', '.join(sorted(self._methods)) or 'none'}.")
        return ActorMethod(self, meta)

    def binary(self) -> bytes:
        return self._actor_id

    def hex(self) -> str:
        return self._actor_id.hex()

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __reduce__(self) -> Any:
        backend = self._backend
        if backend is None:  # a handle to a dead or unknown actor: nothing to keep alive
            return (_rebuild_handle, (self._actor_id, self._class_name, self._methods))
        return backend.reduce_handle(self)


def _rebuild_handle(actor_id: bytes, class_name: str,
                    methods: dict[str, MethodMeta]) -> ActorHandle[Any]:
    return registry.current().rebuild_handle(actor_id, class_name, methods)


def exit_actor() -> NoReturn:
    """End the current actor from inside one of its methods (no restart)."""
    backend = registry.installed()
    if backend is None:
        raise TypeError("exit_actor API is called on a non-actor worker: exit_actor() ends "
                        "the actor whose method calls it. To stop an actor from outside use "
                        "aioray.kill(handle).")
    backend.exit_actor()
