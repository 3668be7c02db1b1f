"""Validation of ``@remote(...)`` / ``.options(...)`` arguments, with errors that list what is valid."""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any

from aioray._backend import registry
from aioray._handles.placement_group import PlacementGroup
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
    "allow_out_of_order_execution", "_generator_backpressure_num_objects", "executor",
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


def check_namespace(namespace: Any, what: str = "namespace") -> None:
    """Ray's rule: a namespace is None or a non-empty str (TypeError / ValueError)."""
    if namespace is None:
        return
    if not isinstance(namespace, str):
        raise TypeError(f"{what} must be None or a string, got {type(namespace).__name__} "
                        f"{namespace!r}. Pass the namespace's name, e.g. namespace=\"jobs\".")
    if namespace == "":
        raise ValueError(f"\"\" is not a valid {what}. Pass None to not specify a namespace.")


def check_generator_returns(options: Mapping[str, Any], is_generator: bool, name: str) -> None:
    """Ray's rule, checked where the function is known (decoration, ``.options()``):
    ``num_returns='streaming'``/``'dynamic'`` need a generator function (ValueError)."""
    nr = options.get("num_returns")
    if nr in ("streaming", "dynamic") and not is_generator:
        raise ValueError(
            f"num_returns={nr!r} can only be used with generator functions (functions that use "
            f"'yield'). {name} is not a generator function: drop num_returns, or yield the "
            "values.")


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
    if renv and not registry.runtime_env_supported():  # on Ray: passed through unchanged
        opts["runtime_env"] = check_runtime_env(renv, what)
    if opts.get("scheduling_strategy") is not None:
        check_strategy(opts["scheduling_strategy"])
    name = opts.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    check_namespace(opts.get("namespace"))
    for key in ("placement_group", "placement_group_bundle_index"):
        if opts.get(key) not in (None, "default", -1):
            warnings.warn(f"{key} parameter is deprecated (as in Ray). Use scheduling_strategy="
                          "PlacementGroupSchedulingStrategy(...) instead.", DeprecationWarning,
                          stacklevel=3)
    if opts.get("object_store_memory") is not None and valid is ACTOR_OPTIONS:
        warnings.warn("Setting 'object_store_memory' for actors is deprecated (as in Ray): it "
                      "reserves nothing; aioray's object store spills to disk when full.",
                      DeprecationWarning, stacklevel=3)
    return opts


# runtime_env keys the embedded runtime cannot honour, and why.
_NEEDS_OWN_PYTHON = ("it installs packages into a Python environment of the task's own; "
                     "aioray's worker processes all run this process's interpreter and "
                     "site-packages. Install them here, or use the Ray backend")
_RUNTIME_ENV_WHY = {
    "pip": _NEEDS_OWN_PYTHON, "uv": _NEEDS_OWN_PYTHON, "conda": _NEEDS_OWN_PYTHON,
    "py_executable": "aioray's worker processes run this process's interpreter",
    "container": "aioray's worker processes run on this machine, not in a container",
    "image_uri": "aioray's worker processes run on this machine, not in a container",
    "java_jars": "aioray runs Python only",
    "nsight": "profiler integrations need Ray's worker launcher",
    "mpi": "MPI launching needs Ray's worker launcher",
}
_URI_SCHEMES = ("s3://", "gs://", "http://", "https://", "gcs://", "file://", "hdfs://")


def check_runtime_env(renv: Any, what: str) -> dict[str, Any]:
    """The embedded runtime's ``runtime_env``: ``env_vars`` (a dict of str -> str) and
    ``working_dir`` / ``py_modules`` as *local directories* (absolute after this). Any other
    key — or a URI — is a ``ValueError`` naming the key and why."""
    if not isinstance(renv, Mapping):
        raise TypeError(f"runtime_env must be a dict, got {type(renv).__name__} ({what}).")
    out: dict[str, Any] = {}
    for key, value in renv.items():
        if key == "env_vars":
            if value is None:
                continue
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise TypeError(f"runtime_env['env_vars'] must be a dict of str -> str, got "
                                f"{value!r} ({what}).")
            out["env_vars"] = dict(value)
        elif key == "working_dir":
            if value is not None:
                out["working_dir"] = _local_dir(value, "working_dir", what)
        elif key == "py_modules":
            if value is None:
                continue
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"runtime_env['py_modules'] must be a list of local "
                                f"directories, got {value!r} ({what}).")
            out["py_modules"] = [_local_dir(v, "py_modules", what) for v in value]
        else:
            why = _RUNTIME_ENV_WHY.get(key, "aioray's embedded runtime supports only env_vars, "
                                            "working_dir and py_modules (local directories)")
            raise ValueError(f"runtime_env[{key!r}] is not supported by aioray's embedded "
                             f"runtime ({what}): {why}. The Ray backend passes runtime_env "
                             "to Ray unchanged.")
    return out


def _local_dir(value: Any, key: str, what: str) -> str:
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(f"runtime_env[{key!r}] must be a local directory path, got {value!r} "
                        f"({what}).")
    if path.startswith(_URI_SCHEMES) or path.endswith((".zip", ".whl")):
        raise ValueError(f"runtime_env[{key!r}]={path!r} ({what}): aioray's embedded runtime "
                         "takes local directories only (it uses them in place; nothing is "
                         "downloaded, unpacked or uploaded). The Ray backend accepts URIs.")
    if not os.path.isdir(path):
        raise ValueError(f"runtime_env[{key!r}]={path!r} ({what}) is not an existing local "
                         "directory.")
    return os.path.abspath(path)


def merge_runtime_env(job: Mapping[str, Any] | None,
                      task: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Ray's inheritance: the task's fields override the job's, except ``env_vars``, which
    are merged (the task's win on the same name). None when neither sets anything."""
    if not job:
        return dict(task) if task else None
    if not task:
        return dict(job)
    merged = {**job, **task}
    if "env_vars" in job and "env_vars" in task:
        merged["env_vars"] = {**job["env_vars"], **task["env_vars"]}
    return merged


def check_fits_bundle(opts: Mapping[str, Any], default_cpus: float, what: str) -> None:
    """Ray's check at ``.remote()``: what runs in a placement group must fit one of its
    bundles (the one it names, or any for index -1), else ValueError."""
    pg = opts.get("placement_group")
    index = opts.get("placement_group_bundle_index")
    strategy = opts.get("scheduling_strategy")
    if not isinstance(pg, PlacementGroup):
        pg = getattr(strategy, "placement_group", None)
        index = getattr(strategy, "placement_group_bundle_index", -1)
    if not isinstance(pg, PlacementGroup) or pg.is_empty:
        return
    req = resource_request(opts, default_cpus)
    bundles = pg.bundle_specs
    index = -1 if index is None else index
    candidates = bundles if index == -1 else bundles[index:index + 1]
    if what.startswith("actor ") and opts.get("num_cpus") is None and not any(
            b.get("CPU", 0.0) >= 1 for b in candidates):
        # Ray schedules an actor with its default of 1 CPU (it holds 0 while it runs).
        raise ValueError(
            f"Cannot schedule {what} with the placement group because the actor requires 1 "
            f"CPU for creation, but it cannot fit into any bundles for the placement group, "
            f"{bundles}. Consider creating a placement group with CPU resources, or pass "
            "num_cpus=0.")
    if not req:
        return
    if any(all(b.get(k, 0.0) >= v for k, v in req.items()) for b in candidates):
        return
    where = "any bundle" if index == -1 else f"bundle {index}"
    raise ValueError(
        f"Cannot schedule {what} with the placement group because the resource request {req} "
        f"cannot fit into {where} of the placement group, {bundles}. Request at most what one "
        "bundle holds (num_cpus/num_gpus/resources), or create the group with a bigger "
        "bundle.")


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
