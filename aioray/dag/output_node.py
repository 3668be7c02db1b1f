"""``MultiOutputNode``: several nodes as one DAG output (``execute`` returns a list)."""

from __future__ import annotations

from typing import Any

from aioray.dag.dag_node import DAGNode


class MultiOutputNode(DAGNode):
    """``MultiOutputNode([a, b])``: ``execute`` returns ``[result_of_a, result_of_b]`` (refs,
    not values: ``get`` the list)."""

    def __init__(self, args: list[Any] | tuple[Any, ...],
                 other_args_to_resolve: dict[str, Any] | None = None) -> None:
        if isinstance(args, tuple):
            args = list(args)
        if not isinstance(args, list):
            raise ValueError(f"Invalid input type for `args`, {type(args)}: MultiOutputNode "
                             "takes a list of nodes.")
        super().__init__(args, {}, {}, other_args_to_resolve)

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        return list(args)

    def _describe(self) -> str:
        return ", ".join(repr(a) for a in self._bound_args)
