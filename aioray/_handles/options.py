"""Validation of ``@remote(...)`` / ``.options(...)`` arguments, with errors that list what is valid."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from aioray._backend import registry
from aioray._handles.strategies import check_strategy

# Options that only mean something on a cluster; accepted so Ray code runs, documented no-ops.
_NOOP = {"memory", "accelerator_type", "enable_task_events", "_metadata", "label_selector",
         "_labels", "object_store_memory"}

TASK_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "scheduling_strategy", "runtime_env", "max_calls", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "_generator_backpressure_num_objects", "executor",
} | _NOOP)

ACTOR_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "max_concurrency", "concurrency_groups",
    "max_restarts", "max_task_retries", "max_pending_calls", "name", "namespace", "lifetime",
    "get_if_exists", "scheduling_strategy", "runtime_env", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "allow_out_of_order_execution", "_generator_backpressure_num_objects",
} | _NOOP)

METHOD_OPTIONS = frozenset({"num_returns", "concurrency_group", "max_task_retries",
                            "retry_exceptions", "name", "_generator_backpressure_num_objects",
                            "enable_task_events"})

EXECUTORS = ("process", "thread")


def _number(name: str, value: Any, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _int(name: str, value: Any, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def validate(options: Mapping[str, Any], valid: frozenset[str], what: str) -> dict[str, Any]:
    """Check names and types; returns a plain dict copy. Raises ValueError/TypeError."""
    if "num_return_vals" in options and "num_returns" in valid:
        # Ray's pre-1.0 spelling (the old API docs use it): a harmless alias.
        renamed = dict(options)
        alias = renamed.pop("num_return_vals")
        if renamed.setdefault("num_returns", alias) != alias:
            raise ValueError("num_return_vals is the old name of num_returns; pass only one.")
        options = renamed
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(
            f"Invalid option{'s' if len(unknown) > 1 else ''} for {what}: "
            f"{', '.join(map(repr, unknown))}. Valid options are: {', '.join(sorted(valid))}."
        )
    opts = dict(options)
    _number("num_cpus", opts.get("num_cpus"))
    _number("num_gpus", opts.get("num_gpus"))
    res = opts.get("resources")
    if res is not None:
        if not isinstance(res, Mapping):
            raise TypeError(f"resources must be a dict of name -> amount, got {res!r}")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"Use num_cpus/num_gpus instead of resources={{{k!r}: ...}}.")
            _number(f"resources[{k!r}]", v, allow_none=False)
    if "num_returns" in opts:
        nr = opts["num_returns"]
        if nr is None and what.startswith("actor method"):
            pass
        elif nr not in ("streaming", "dynamic", None) and (
            isinstance(nr, bool) or not isinstance(nr, int) or nr < 0
        ):
            raise ValueError(
                f"num_returns must be a non-negative int, 'streaming' or 'dynamic', got {nr!r}"
            )
    _int("max_retries", opts.get("max_retries"), -1)
    _int("max_restarts", opts.get("max_restarts"), -1)
    _int("max_task_retries", opts.get("max_task_retries"), -1)
    _int("max_calls", opts.get("max_calls"), 0)
    _int("_generator_backpressure_num_objects", opts.get("_generator_backpressure_num_objects"), -1)
    if "max_concurrency" in opts:
        _int("max_concurrency", opts["max_concurrency"], 1)
    re = opts.get("retry_exceptions")
    if re is not None and not isinstance(re, bool):
        if not isinstance(re, (list, tuple)) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in re
        ):
            raise TypeError(
                f"retry_exceptions must be a bool or a list of exception classes, got {re!r}"
            )
    ex = opts.get("executor")
    if ex is not None and ex not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {ex!r}")
    cg = opts.get("concurrency_groups")
    if cg is not None:
        if not isinstance(cg, Mapping):
            raise TypeError(f"concurrency_groups must be a dict of name -> max concurrency, "
                            f"got {cg!r}")
        for k, v in cg.items():
            if not isinstance(k, str):
                raise TypeError(f"concurrency group names must be strings, got {k!r}")
            _int(f"concurrency_groups[{k!r}]", v, 1)
    lt = opts.get("lifetime")
    if lt not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be None, 'detached' or 'non_detached', got {lt!r}")
    renv = opts.get("runtime_env")
    if renv and not registry.runtime_env_supported():
        raise ValueError(
            "runtime_env is not supported by aioray's single-process runtime: everything runs "
            "in this Python environment. Drop the option, or use the Ray backend."
        )
    if opts.get("scheduling_strategy") is not None:
        check_strategy(opts["scheduling_strategy"])
    name = opts.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    return opts


def resource_request(opts: Mapping[str, Any], default_cpus: float) -> dict[str, float]:
    """The resources a task or actor holds while it runs."""
    req: dict[str, float] = {}
    cpus = opts.get("num_cpus")
    cpus = default_cpus if cpus is None else cpus
    if cpus:
        req["CPU"] = float(cpus)
    gpus = opts.get("num_gpus")
    if gpus:
        req["GPU"] = float(gpus)
    for k, v in (opts.get("resources") or {}).items():
        if v:
            req[k] = float(v)
    return req
