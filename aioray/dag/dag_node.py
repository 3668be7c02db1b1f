"""``DAGNode``: the base of every node of a Ray DAG, and how a DAG executes.

``execute(*args, **kwargs)`` walks the graph bottom-up (children in the order they appear in
``args``, then ``kwargs``, then the node's other inputs, as Ray does) and runs each node once:
a function node becomes a ``.remote()`` task, a class node an actor, a method node an actor
call. A node's result is handed to the nodes that use it as it is: an ``ObjectRef`` (so tasks
chain without a ``get``: a top-level ref argument is resolved before the task runs, a nested one
stays a ref), an actor handle, or the plain input value. Within one ``execute`` every node runs
once, however many nodes use it; the next ``execute`` runs everything again (so a class node
creates a new actor per ``execute``, as Ray documents).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any


class DAGNode:
    """A node of a lazily executed graph of tasks and actor calls (Ray's ``ray.dag.DAGNode``).

    Build nodes with ``.bind(...)`` on remote functions, actor classes and actor methods; run
    the graph from any node with ``node.execute(...)``.
    """

    _is_input_node = False

    def __init__(self, args: Any, kwargs: dict[str, Any] | None, options: dict[str, Any] | None,
                 other_args_to_resolve: dict[str, Any] | None) -> None:
        self._bound_args: Any = args if args is not None else ()
        self._bound_kwargs: dict[str, Any] = dict(kwargs or {})
        self._bound_options: dict[str, Any] = dict(options or {})
        self._bound_other_args_to_resolve: dict[str, Any] = dict(other_args_to_resolve or {})
        self._stable_uuid = uuid.uuid4().hex
        self.cache_from_last_execute: dict[str, Any] = {}

    # -- Ray's accessors ------------------------------------------------------------------
    def get_args(self) -> Any:
        """The bound positional arguments."""
        return self._bound_args

    def get_kwargs(self) -> dict[str, Any]:
        """The bound keyword arguments."""
        return self._bound_kwargs.copy()

    def get_options(self) -> dict[str, Any]:
        """Options given to this node (``node.method.options(...).bind(...)``)."""
        return self._bound_options.copy()

    def get_other_args_to_resolve(self) -> dict[str, Any]:
        """Inputs of this node besides its arguments (a method node's actor, ...)."""
        return self._bound_other_args_to_resolve.copy()

    def get_stable_uuid(self) -> str:
        return self._stable_uuid

    # -- execution --------------------------------------------------------------------------
    def execute(self, *args: Any, _ray_cache_refs: bool = False, **kwargs: Any) -> Any:
        """Run the graph that ends at this node; ``args``/``kwargs`` feed its ``InputNode``.

        Returns what this node produces: an ``ObjectRef`` for a function or method node (a
        list of them with ``num_returns``), an actor handle for a class node, a list for a
        ``MultiOutputNode``. Nothing is waited for: call ``get`` (or ``await``) on the result.
        ``_ray_cache_refs=True`` keeps every node's result in ``cache_from_last_execute``
        (keyed by ``get_stable_uuid()``), as in Ray.
        """
        results: dict[int, Any] = {}
        cache: dict[str, Any] = {}
        input_node: DAGNode | None = None
        for node in _post_order(self):
            if node._is_input_node:
                if input_node is not None:
                    raise AssertionError("Each DAG should only have one unique InputNode.")
                input_node = node
            value = node._execute_impl(
                _resolve(node._bound_args, results), _resolve(node._bound_kwargs, results),
                _resolve(node._bound_other_args_to_resolve, results), args, kwargs)
            results[id(node)] = value
            cache[node._stable_uuid] = value
        if _ray_cache_refs:
            self.cache_from_last_execute = cache
        return results[id(self)]

    async def get_object_refs_from_last_execute(self) -> dict[str, Any]:
        """What ``execute(..., _ray_cache_refs=True)`` produced at each node, by stable uuid."""
        return dict(self.cache_from_last_execute)

    def clear_cache(self) -> None:
        self.cache_from_last_execute = {}

    def experimental_compile(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "Ray Compiled Graphs (dag.experimental_compile()) are not supported by aioray: "
            "they need Ray's shared-memory channels between actor processes. Run the DAG "
            "with dag.execute(...) instead (same results, ordinary tasks and actor calls).")

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        """Run this node; its inputs are already replaced by their upstream results."""
        raise NotImplementedError

    # -- misuse ------------------------------------------------------------------------------
    def __getattr__(self, attr: str) -> Any:
        if attr == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}.")
        if attr == "remote":
            raise AttributeError(
                f".remote() cannot be used on {type(self).__name__}. To execute the task "
                "graph for this node, use .execute().")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return ""


def _name_of(body: Any) -> str:
    """A remote function's or actor class's name, also through its ``.options()`` form."""
    for target in (body, getattr(body, "_rf", None), getattr(body, "_ac", None)):
        name = getattr(target, "__name__", None)
        if isinstance(name, str):
            return name
    return type(body).__name__


# -- walking the graph ------------------------------------------------------------------------
# Nodes are found at the top level of args/kwargs and inside lists, tuples (named too), dicts
# and sets nested in them; a node hidden inside another kind of object is passed as it is.
def _scan(value: Any, out: list[DAGNode], seen: set[int]) -> None:
    if isinstance(value, DAGNode):
        if id(value) not in seen:
            seen.add(id(value))
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _scan(v, out, seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _scan(v, out, seen)


def _children(node: DAGNode) -> list[DAGNode]:
    out: list[DAGNode] = []
    seen: set[int] = set()
    for part in (node._bound_args, node._bound_kwargs, node._bound_other_args_to_resolve):
        _scan(part, out, seen)
    return out


def _post_order(root: DAGNode) -> Iterator[DAGNode]:
    """Every node reachable from ``root``, each after its children (iterative: deep chains
    don't hit the recursion limit)."""
    state: dict[int, int] = {}  # 1: children being visited, 2: done
    stack: list[tuple[DAGNode, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            state[id(node)] = 2
            yield node
            continue
        st = state.get(id(node))
        if st == 2:
            continue
        if st == 1:
            raise ValueError(f"The graph has a cycle through {node!r}.")
        state[id(node)] = 1
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)) if state.get(id(c)) != 2)


def _resolve(value: Any, results: dict[int, Any]) -> Any:
    """``value`` with its nodes replaced by their results. Containers holding a node are
    rebuilt (same type); everything else, big lists included, is passed on untouched."""
    if isinstance(value, DAGNode):
        return results[id(value)]
    if isinstance(value, (dict, list, tuple, set, frozenset)) and _contains_node(value):
        if isinstance(value, dict):
            items: Any = {k: _resolve(v, results) for k, v in value.items()}
            return items if type(value) is dict else type(value)(items)
        items = [_resolve(v, results) for v in value]
        if type(value) is list:
            return items
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        maker: Callable[[Any], Any] = type(value)
        return maker(items)
    return value


def _contains_node(value: Any) -> bool:
    out: list[DAGNode] = []
    _scan(value, out, set())
    return bool(out)
