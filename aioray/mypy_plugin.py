"""mypy plugin: typed actors. Enable it in your mypy configuration::

    [tool.mypy]
    plugins = ["aioray.mypy_plugin"]

Without it, mypy (unlike pyright) ignores what the ``@aioray.remote`` class decorator returns,
so ``Counter.remote()`` is an error, and ``handle.method`` is ``ActorMethod[..., Any]``. With it:

* ``@remote`` / ``@remote(...)`` on a class adds ``Counter.remote(<__init__ parameters>) ->
  ActorHandle[Counter]`` and ``Counter.options(...)``;
* ``handle.method`` on an ``ActorHandle[Counter]`` is ``ActorMethod[<parameters>, R]``: calls
  are checked against the method, ``R`` is ``ObjectRef[T]`` (``async def`` methods: the awaited
  type) or ``ObjectRefGenerator[Y]`` for generator methods; a name the class does not define is
  an error.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy import errorcodes as codes
from mypy.nodes import ARG_STAR, ARG_STAR2, Argument, Var
from mypy.plugin import AttributeContext, CheckerPluginInterface, ClassDefContext, Plugin
from mypy.plugins.common import add_method_to_class
from mypy.subtypes import find_member
from mypy.types import (
    AnyType,
    CallableType,
    Instance,
    Parameters,
    ProperType,
    Type,
    TypeOfAny,
    get_proper_type,
)
from mypy.typevars import fill_typevars

_REMOTE = "aioray._api.remote"
_HANDLE = "aioray._handles.actor.ActorHandle"
_BOUND_CLASS = "aioray._handles.actor._BoundActorClass"
# Public names: the checker looks names up through package attributes.
_REF = "aioray.ObjectRef"
_GEN = "aioray.ObjectRefGenerator"
_GENERATORS = {"typing.Iterator", "typing.Generator", "typing.AsyncIterator",
               "typing.AsyncGenerator", "collections.abc.Iterator",
               "collections.abc.Generator", "collections.abc.AsyncIterator",
               "collections.abc.AsyncGenerator"}
_COROUTINES = {"typing.Coroutine", "collections.abc.Coroutine"}


def _any() -> AnyType:
    return AnyType(TypeOfAny.special_form)


class AioRayPlugin(Plugin):
    def get_class_decorator_hook_2(self, fullname: str
                                   ) -> Callable[[ClassDefContext], bool] | None:
        return _add_actor_class_methods if fullname == _REMOTE else None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        if fullname.startswith(_HANDLE + "."):
            name = fullname[len(_HANDLE) + 1:]
            return lambda ctx: _actor_method_type(ctx, name)
        return None


def _add_actor_class_methods(ctx: ClassDefContext) -> bool:
    """``@remote class C``: give C ``remote(<__init__ args>) -> ActorHandle[C]`` and
    ``options(**kw) -> _BoundActorClass[C]`` (class methods)."""
    info = ctx.cls.info
    self_type = fill_typevars(info)
    handle = ctx.api.named_type(_HANDLE, [self_type])
    bound = ctx.api.named_type(_BOUND_CLASS, [self_type])
    args: list[Argument] = []
    init = info.get_method("__init__")
    init_type = get_proper_type(init.type) if init is not None else None
    if isinstance(init_type, CallableType):
        for name, kind, typ in zip(init_type.arg_names[1:], init_type.arg_kinds[1:],
                                   init_type.arg_types[1:], strict=True):
            var = Var(name or f"__arg{len(args)}", typ)
            args.append(Argument(var, typ, None, kind))
    elif init is None or init.type is None:  # no (typed) __init__: object's, or unchecked
        if init is not None:
            args = _star_any()
    add_method_to_class(ctx.api, ctx.cls, "remote", args, handle, is_classmethod=True)
    add_method_to_class(ctx.api, ctx.cls, "options", [_kwargs_any()], bound,
                        is_classmethod=True)
    return True


def _star_any() -> list[Argument]:
    star = Argument(Var("args", _any()), _any(), None, ARG_STAR)
    return [star, _kwargs_any()]


def _kwargs_any() -> Argument:
    return Argument(Var("kwargs", _any()), _any(), None, ARG_STAR2)


def _actor_method_type(ctx: AttributeContext, name: str) -> Type:
    """``handle.name`` for ``handle: ActorHandle[C]``: ``ActorMethod[<C.name's parameters>, R]``."""
    handle = ctx.type
    if not isinstance(handle, Instance) or handle.type.get(name) is not None:
        return ctx.default_attr_type  # a real attribute of ActorHandle, or not a handle
    actor = get_proper_type(handle.args[0]) if handle.args else None
    if not isinstance(actor, Instance):
        return ctx.default_attr_type  # ActorHandle[Any]: nothing to check against
    if name.startswith("__") and name.endswith("__"):
        return ctx.default_attr_type  # __ray_terminate__ and friends
    member = find_member(name, actor, actor)
    method = get_proper_type(member) if member is not None else None
    if method is None:
        ctx.api.fail(f'Actor "{actor.type.name}" has no method "{name}"', ctx.context,
                     code=codes.ATTR_DEFINED)
        return _any()
    if not isinstance(method, CallableType):
        return ctx.default_attr_type  # overloads, properties, Any: keep the untyped form
    # find_member binds the method to the instance: ``self`` is already gone.
    params = Parameters(method.arg_types, method.arg_kinds, method.arg_names,
                        variables=method.variables)
    untyped = get_proper_type(ctx.default_attr_type)  # __getattr__'s ActorMethod[..., Any]
    if not isinstance(untyped, Instance):
        return ctx.default_attr_type
    return Instance(untyped.type, [params, _remote_result(ctx.api, method.ret_type)])


def _remote_result(api: CheckerPluginInterface, ret: Type) -> Type:
    """What ``.remote()`` of a method returning ``ret`` gives."""

    def named(fullname: str, args: list[Type]) -> Instance:
        return api.named_generic_type(fullname, args)

    proper: ProperType = get_proper_type(ret)
    if isinstance(proper, Instance):
        if proper.type.fullname in _COROUTINES and len(proper.args) == 3:
            inner = get_proper_type(proper.args[2])
            if isinstance(inner, Instance) and inner.type.fullname in _GENERATORS:
                return named(_GEN, [inner.args[0]])  # pragma: no cover - odd but possible
            return named(_REF, [proper.args[2]])
        if proper.type.fullname in _GENERATORS and proper.args:
            return named(_GEN, [proper.args[0]])
    if isinstance(proper, AnyType):
        return proper
    return named(_REF, [ret])


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return AioRayPlugin
