"""``InputNode``: where a DAG's ``execute(...)`` arguments enter; ``InputAttributeNode``: one
field of them (``inp.x``, ``inp[0]``, ``inp["key"]``)."""

from __future__ import annotations

from typing import Any

from aioray.dag.dag_node import DAGNode

IN_CONTEXT_MANAGER = "__in_context_manager__"


class InputNode(DAGNode):
    """The DAG's input, used as a context manager::

        with InputNode() as inp:
            dag = add.bind(inp[0], inp.x)
        dag.execute(1, x=2)

    At ``execute`` time the node stands for the single argument when exactly one positional
    argument and no keyword is given (``execute([1, 2])`` then ``inp[0]`` is ``1``); otherwise
    for all of them, ``inp[i]`` being the i-th positional and ``inp.name``/``inp["name"]`` the
    keyword argument ``name``. One InputNode per DAG.
    """

    _is_input_node = True

    def __init__(self, *args: Any, input_type: Any = None,
                 _other_args_to_resolve: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if args or kwargs:
            raise ValueError("InputNode should not take any args or kwargs; give the DAG's "
                             "input to dag.execute(...).")
        # (accessor, key) -> node, so that ``inp.x`` twice is one node.
        self.input_attribute_nodes: dict[tuple[str, Any], InputAttributeNode] = {}
        self.input_type = input_type
        super().__init__((), {}, {}, _other_args_to_resolve)

    def __enter__(self) -> InputNode:
        self._bound_other_args_to_resolve[IN_CONTEXT_MANAGER] = True
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _in_context_manager(self) -> bool:
        return bool(self._bound_other_args_to_resolve.get(IN_CONTEXT_MANAGER))

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        if not self._in_context_manager():
            # Ray asserts this too: the node must be created by ``with InputNode() as inp:``.
            raise AssertionError(
                "InputNode is a singleton instance that should be only used in context "
                "manager for dag building and execution: `with InputNode() as inp: ...`.")
        if len(dag_args) == 1 and not dag_kwargs:
            return dag_args[0]
        return DAGInputData(*dag_args, **dag_kwargs)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        nodes = self.__dict__.get("input_attribute_nodes")
        if nodes is None:  # half-built (unpickling): no attribute nodes yet
            raise AttributeError(key)
        if ("__getattr__", key) not in nodes:
            nodes["__getattr__", key] = InputAttributeNode(self, key, "__getattr__")
        return nodes["__getattr__", key]

    def __getitem__(self, key: int | str) -> InputAttributeNode:
        if not isinstance(key, (int, str)):
            raise TypeError("Please only use int index or str as first-level key to access "
                            f"fields of dag input, not {type(key).__name__}.")
        # Keyed by accessor too: Ray keys by ``key`` alone, so there ``inp["a"]`` followed by
        # ``inp.a`` gives the ``[]`` node for both.
        nodes = self.input_attribute_nodes
        if ("__getitem__", key) not in nodes:
            nodes["__getitem__", key] = InputAttributeNode(self, key, "__getitem__")
        return nodes["__getitem__", key]

    def _describe(self) -> str:
        return ""


class InputAttributeNode(DAGNode):
    """``inp[key]`` or ``inp.key``: one field of the DAG's input (an index of the positional
    arguments or of the single input object, a keyword argument, a key or an attribute)."""

    def __init__(self, dag_input_node: InputNode, key: int | str, accessor_method: str,
                 input_type: str | None = None) -> None:
        self._dag_input_node = dag_input_node
        self._key = key
        self._accessor_method = accessor_method
        super().__init__((), {}, {}, {"dag_input_node": dag_input_node, "key": key,
                                      "accessor_method": accessor_method,
                                      "result_type_string": input_type})

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        value = other["dag_input_node"]
        key = self._key
        if isinstance(value, DAGInputData):
            return value[key]
        if isinstance(key, str) and self._accessor_method == "__getattr__":
            return getattr(value, key)
        return value[key]

    def _describe(self) -> str:
        return f"[{self._key!r}]" if self._accessor_method == "__getitem__" else f".{self._key}"


class DAGInputData:
    """The DAG's input when ``execute`` got several arguments: ``data[i]`` is the i-th
    positional argument, ``data["name"]`` the keyword argument ``name``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError("Please only use int index or str as first-level key to access "
                         "fields of dag input.")

    def __repr__(self) -> str:
        return f"DAGInputData(args={self._args!r}, kwargs={self._kwargs!r})"
