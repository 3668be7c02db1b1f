"""``FunctionNode``: ``f.bind(...)`` — runs as a task (``f.remote(...)``) when executed."""

from __future__ import annotations

from typing import Any

from aioray.dag.dag_node import DAGNode, _name_of


class FunctionNode(DAGNode):
    """A remote function bound to arguments; ``execute`` submits ``f.remote(*args)`` and
    returns its ref(s). ``f.options(...).bind(...)`` keeps those options."""

    def __init__(self, func_body: Any, func_args: Any, func_kwargs: dict[str, Any],
                 func_options: dict[str, Any] | None = None,
                 other_args_to_resolve: dict[str, Any] | None = None) -> None:
        # The remote function (or its ``.options(...)`` form): whatever has ``.remote``.
        self._body = func_body
        super().__init__(tuple(func_args), func_kwargs, func_options, other_args_to_resolve)

    def _execute_impl(self, args: Any, kwargs: dict[str, Any], other: dict[str, Any],
                      dag_args: tuple[Any, ...], dag_kwargs: dict[str, Any]) -> Any:
        body = self._body.options(**self._bound_options) if self._bound_options else self._body
        return body.remote(*args, **kwargs)

    def _describe(self) -> str:
        return _name_of(self._body)
