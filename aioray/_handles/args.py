"""Packing a call's arguments at ``.remote()`` time and unpacking them where the task runs.

Ray semantics: top-level ``ObjectRef`` arguments are resolved to their values before the task
runs; refs nested in containers are passed as refs. Everything else is copied *when the task is
submitted* (serialized once), so mutating an argument afterwards changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aioray._handles.generator import ObjectRefGenerator
from aioray._handles.ref import ObjectRef
from aioray._objects.serialization import (
    IMMUTABLE_TYPES,
    SerializedObject,
    describe_unpicklable,
    deserialize,
    serialize_always,
)


class ArgRef:
    """Placeholder for the ``index``-th top-level ref argument."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Any:
        return (ArgRef, (self.index,))


def _check_arg(value: Any, func_name: str) -> None:
    if isinstance(value, ObjectRefGenerator):
        raise TypeError(
            f"An ObjectRefGenerator cannot be passed as an argument to {func_name} (a Ray "
            "limitation aioray keeps). Iterate it and pass the refs it yields, or pass "
            "gen.completed()."
        )


def pack_args(args: tuple[Any, ...], kwargs: dict[str, Any], func_name: str,
              driver_pid: int, func: Any = None) -> tuple[Any, list[ObjectRef[Any]]]:
    """Return ``(payload, deps)``: ``payload`` is a raw ``(args, kwargs)`` tuple when every
    argument is an immutable scalar, else a :class:`SerializedObject`; ``deps`` lists the
    top-level refs, whose places hold :class:`ArgRef` placeholders.

    Arguments that cannot be pickled raise a ``TypeError`` here, at submission, naming the
    argument and the innermost object in it that fails (see ``describe_unpicklable``);
    ``func``, the callable as it will be called (a bound method for actor methods), when given,
    lets that error name the parameter too."""
    deps: list[ObjectRef[Any]] = []
    simple = True
    new_args: list[Any] | None = None
    for i, a in enumerate(args):
        tp = type(a)
        if tp is ObjectRef:
            if new_args is None:
                new_args = list(args)
            new_args[i] = ArgRef(len(deps))
            deps.append(a)
            simple = False
        elif tp not in IMMUTABLE_TYPES:
            _check_arg(a, func_name)
            simple = False
    new_kwargs: dict[str, Any] | None = None
    for k, v in kwargs.items():
        tp = type(v)
        if tp is ObjectRef:
            if new_kwargs is None:
                new_kwargs = dict(kwargs)
            new_kwargs[k] = ArgRef(len(deps))
            deps.append(v)
            simple = False
        elif tp not in IMMUTABLE_TYPES:
            _check_arg(v, func_name)
            simple = False
    call = (tuple(new_args) if new_args is not None else args,
            new_kwargs if new_kwargs is not None else kwargs)
    if simple:
        return call, deps
    try:
        return serialize_always(call, driver_pid), deps
    except Exception as e:
        raise describe_unpicklable(args, kwargs, func_name, e, func) from e


def unpack_args(payload: Any,
                dep_values: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Rebuild ``(args, kwargs)``; ``dep_values`` are the stored values of the top-level refs
    (already checked not to be errors)."""
    if type(payload) is SerializedObject:
        args, kwargs = deserialize(payload)
    else:
        args, kwargs = payload
    if not dep_values:
        return args, kwargs
    args = tuple(deserialize(dep_values[a.index]) if type(a) is ArgRef else a for a in args)
    if any(type(v) is ArgRef for v in kwargs.values()):
        kwargs = {k: deserialize(dep_values[v.index]) if type(v) is ArgRef else v
                  for k, v in kwargs.items()}
    return args, kwargs


def split_returns(value: Any, num_returns: int, func_name: str) -> list[Any]:
    """One value per return ref; a count mismatch is a ValueError that names the task."""
    if num_returns == 1:
        return [value]
    if num_returns == 0:
        if value is not None:
            raise ValueError(
                f"Task {func_name} has num_returns=0 but returned {type(value).__name__}; "
                "return None or set num_returns."
            )
        return []
    try:
        values = list(value)
    except TypeError:
        raise ValueError(
            f"Task {func_name} has num_returns={num_returns} but returned a non-iterable "
            f"{type(value).__name__}; return a tuple or list of {num_returns} values."
        ) from None
    if len(values) != num_returns:
        raise ValueError(
            f"Task {func_name} has num_returns={num_returns} but returned {len(values)} values."
        )
    return values
