"""``aioray.dag``: Ray's DAG API (lazy computation graphs), on aioray's tasks and actors.

``f.bind(...)``, ``Actor.bind(...)``, ``node.method.bind(...)`` and ``handle.method.bind(...)``
build nodes instead of running anything; ``InputNode`` stands for the arguments of
``dag.execute(...)`` and ``MultiOutputNode`` groups several outputs. ``execute`` submits
ordinary ``.remote()`` tasks and actor calls, passing upstream results on as refs, and returns
refs (an actor handle for a class node, a list for a ``MultiOutputNode``)::

    with InputNode() as inp:
        dag = add.bind(double.bind(inp.x), inp.y)
    aioray.get(dag.execute(x=1, y=2))   # 4

Compiled graphs (``dag.experimental_compile()``) are not provided: they raise
``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any

from aioray.dag.class_node import ClassMethodNode, ClassNode
from aioray.dag.constants import (
    BIND_INDEX_KEY,
    IS_CLASS_METHOD_OUTPUT_KEY,
    PARENT_CLASS_NODE_KEY,
    PREV_CLASS_METHOD_CALL_KEY,
)
from aioray.dag.dag_node import DAGNode
from aioray.dag.function_node import FunctionNode
from aioray.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from aioray.dag.output_node import MultiOutputNode

__all__ = [
    "BIND_INDEX_KEY",
    "IS_CLASS_METHOD_OUTPUT_KEY",
    "PARENT_CLASS_NODE_KEY",
    "PREV_CLASS_METHOD_CALL_KEY",
    "ClassMethodNode",
    "ClassNode",
    "DAGInputData",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
    "bind_class",
    "bind_function",
    "bind_method",
]


def bind_function(remote_function: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> FunctionNode:
    """``f.bind(*args, **kwargs)`` (also ``f.options(...).bind``): a :class:`FunctionNode`
    that runs ``remote_function.remote(*args, **kwargs)`` at each ``execute``."""
    return FunctionNode(remote_function, args, kwargs)


def bind_class(actor_class: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ClassNode:
    """``Actor.bind(*args, **kwargs)`` (also ``Actor.options(...).bind``): a
    :class:`ClassNode` that creates the actor at each ``execute``."""
    return ClassNode(actor_class, args, kwargs)


def bind_method(actor_method: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> ClassMethodNode | tuple[ClassMethodNode, ...]:
    """``handle.method.bind(*args, **kwargs)`` on an existing actor: a
    :class:`ClassMethodNode` that calls ``handle.method.remote(...)`` at each ``execute``.

    As in Ray, a method with ``num_returns=n > 1`` gives a tuple of ``n`` nodes, one per
    returned ref. (Method nodes of a :class:`ClassNode` are made by ``class_node.method.bind``.)
    """
    handle = getattr(actor_method, "_handle", None)
    meta = getattr(actor_method, "_meta", None)
    name = str(getattr(meta, "name", None) or getattr(actor_method, "__name__", "method"))
    node = ClassMethodNode(name, args, kwargs, {}, {
        PARENT_CLASS_NODE_KEY: handle,
        PREV_CLASS_METHOD_CALL_KEY: None,
    }, actor_method=actor_method)
    num_returns = (getattr(actor_method, "_options", None) or {}).get("num_returns")
    if isinstance(num_returns, int) and not isinstance(num_returns, bool) and num_returns > 1:
        return tuple(
            ClassMethodNode(f"return_idx_{i}", (node, i), {}, {}, {
                IS_CLASS_METHOD_OUTPUT_KEY: True, PARENT_CLASS_NODE_KEY: handle})
            for i in range(num_returns))
    return node
