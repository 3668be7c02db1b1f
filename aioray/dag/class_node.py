"""``ClassNode`` (``Actor.bind(...)``: an actor created per ``execute``) and
``ClassMethodNode`` (``node.method.bind(...)`` or ``handle.method.bind(...)``: an actor call)."""

from __future__ import annotations

from typing import Any

from aioray.dag.constants import (
    IS_CLASS_METHOD_OUTPUT_KEY,
    PARENT_CLASS_NODE_KEY,
    PREV_CLASS_METHOD_CALL_KEY,
)
from aioray.dag.dag_node import DAGNode, _children, _name_of


class ClassNode(DAGNode):
    """An actor class bound to constructor arguments.

    Executing a DAG that contains it creates the actor (``Actor.remote(*args)``) — once per
    ``execute``, shared by every method node of that execution; the next ``execute`` creates
    a new actor, as Ray documents. ``node.method.bind(...)`` makes method nodes; calls bound on
    the same class node run in the order they were bound, and executing any of them runs the
    ones bound before it first (Ray's ordering rule, even for calls nothing else uses).
    """

    def __init__(self, cls: Any, cls_args: Any, cls_kwargs: dict[str, Any],
                 cls_options: dict[str, Any] | None = None,
                 other_args_to_resolve: dict[str, Any] | None = None) -> None:
        # The actor class (or its ``.options(...)`` form): whatever has ``.remote``.
        self._body = cls
        self._last_call: ClassMethodNode | None = None
        super().__init__(tuple(cls_args), cls_kwargs, cls_options, other_args_to_resolve)
        if any(c._is_input_node for c in _children(self)):
            raise ValueError(
                "InputNode handles user dynamic input the the DAG, and cannot be used as args, "
                "kwargs, or other_args_to_resolve in ClassNode constructor because it is not "
                "available at class construction or binding time.")

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        body = self._body.options(**self._bound_options) if self._bound_options else self._body
        return body.remote(*args, **kwargs)

    def __getattr__(self, method_name: str) -> Any:
        if method_name.startswith("__") or "_body" not in self.__dict__:
            raise AttributeError(method_name)
        cls = _python_class(self._body)
        if method_name == "bind" and (cls is None or not hasattr(cls, "bind")):
            raise AttributeError(".bind() cannot be used again on ClassNode.")
        if cls is not None and not callable(getattr(cls, method_name, None)):
            raise AttributeError(f"Actor class {cls.__name__!r} has no method {method_name!r}.")
        return _UnboundClassMethodNode(self, method_name, {})

    def _describe(self) -> str:
        return _name_of(self._body)


def _python_class(body: Any) -> type | None:
    """The user's class behind an actor class or its ``.options()`` form, when it can be seen
    (only to check method names at bind time; the actor handle checks them again anyway)."""
    for _ in range(3):
        cls = getattr(body, "_cls", None)
        if isinstance(cls, type):
            return cls
        body = getattr(body, "_ac", None)
        if body is None:
            break
    return None


class _UnboundClassMethodNode:
    """``class_node.method``: ``.bind(...)`` makes the method node, ``.options(...)`` sets its
    call options first."""

    def __init__(self, actor: ClassNode, method_name: str, options: dict[str, Any]) -> None:
        self._actor = actor
        self._method_name = method_name
        self._options = options

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        node = ClassMethodNode(self._method_name, args, kwargs, self._options, {
            PARENT_CLASS_NODE_KEY: self._actor,
            PREV_CLASS_METHOD_CALL_KEY: self._actor._last_call,
        })
        self._actor._last_call = node
        return node

    def options(self, **options: Any) -> _UnboundClassMethodNode:
        self._options = options
        return self

    def __getattr__(self, attr: str) -> Any:
        if attr == "remote":
            raise AttributeError(".remote() cannot be used on ClassMethodNodes. Use .bind() "
                                 "instead to express an symbolic actor call.")
        raise AttributeError(attr)


class ClassMethodNode(DAGNode):
    """An actor method call bound to arguments; ``execute`` calls ``.remote(...)`` on the actor
    (created by the parent :class:`ClassNode` in this execution, or the handle the method was
    bound on) and returns the ref(s)."""

    def __init__(self, method_name: str, method_args: Any, method_kwargs: dict[str, Any],
                 method_options: dict[str, Any] | None,
                 other_args_to_resolve: dict[str, Any],
                 *, actor_method: Any = None) -> None:
        self._method_name = method_name
        # ``handle.method.bind(...)``: the ActorMethod itself, which keeps its options.
        self._actor_method = actor_method
        self._parent_class_node = other_args_to_resolve.get(PARENT_CLASS_NODE_KEY)
        self._prev_class_method_call = other_args_to_resolve.get(PREV_CLASS_METHOD_CALL_KEY)
        self._is_class_method_output = bool(
            other_args_to_resolve.get(IS_CLASS_METHOD_OUTPUT_KEY, False))
        super().__init__(tuple(method_args), method_kwargs, method_options,
                         other_args_to_resolve)

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        if self._is_class_method_output:
            refs, index = args
            return refs[index]
        method = self._actor_method
        if method is None:
            method = getattr(other[PARENT_CLASS_NODE_KEY], self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*args, **kwargs)

    def get_method_name(self) -> str:
        return self._method_name

    @property
    def is_class_method_call(self) -> bool:
        return not self._is_class_method_output

    @property
    def is_class_method_output(self) -> bool:
        return self._is_class_method_output

    def _describe(self) -> str:
        return f"{self._method_name}()"
