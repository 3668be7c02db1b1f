"""The structure the backend seam promises, checked on the source (import-linter checks the
layers themselves in ``make lint``; see ``.importlinter``)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from aioray._backend.base import Backend, PlacementGroups, Queues

PKG = Path(__file__).resolve().parent.parent / "aioray"
IMPLEMENTATIONS = ("_engine", "_worker", "_ray")


def _sources() -> dict[str, str]:
    return {p.relative_to(PKG).as_posix(): p.read_text() for p in sorted(PKG.rglob("*.py"))}


def test_no_function_level_imports_of_own_modules() -> None:
    # Function-level imports hid an import cycle of 17 modules; the registry loads
    # implementations with importlib by name instead.
    found = []
    for rel, text in _sources().items():
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (
                            node.level or (node.module or "").split(".")[0] == "aioray"):
                        found.append(f"{rel}:{node.lineno}")
                    elif isinstance(node, ast.Import) and any(
                            a.name.split(".")[0] == "aioray" for a in node.names):
                        found.append(f"{rel}:{node.lineno}")
    assert found == []


def test_no_backend_branching_outside_the_implementations() -> None:
    pattern = re.compile(r"\bis_worker\b|\bis_ray\b|_worker_client\b|current_backend\(|"
                         r"isinstance\([^)]*\b(Runtime|WorkerClient|RayBackend)\b")
    found = [f"{rel}: {m.group(0)}" for rel, text in _sources().items()
             if not rel.startswith(IMPLEMENTATIONS) for m in pattern.finditer(text)]
    assert found == []


@pytest.mark.parametrize("path, name", [
    ("aioray._engine.runtime", "Runtime"),
    ("aioray._worker.main", "WorkerClient"),
    ("aioray._ray.backend", "RayBackend"),
])
def test_every_implementation_is_a_complete_backend(path: str, name: str) -> None:
    cls = getattr(importlib.import_module(path), name)
    assert issubclass(cls, Backend)
    assert not inspect.isabstract(cls), sorted(cls.__abstractmethods__)


@pytest.mark.parametrize("path, names", [
    ("aioray._engine.placement", ["EmbeddedPlacement"]),
    ("aioray._engine.queues", ["EmbeddedQueues"]),
    ("aioray._worker.main", ["WorkerPlacement", "WorkerQueues"]),
    ("aioray._ray.backend", ["RayPlacement", "RayQueues"]),
])
def test_every_service_is_complete(path: str, names: list[str]) -> None:
    mod = importlib.import_module(path)
    for name in names:
        cls = getattr(mod, name)
        assert issubclass(cls, (PlacementGroups, Queues))
        assert not inspect.isabstract(cls), (name, sorted(cls.__abstractmethods__))


def test_old_pickle_paths_still_load() -> None:
    # Pickles name module paths; a pickle made by an earlier version must still load.
    from aioray._actor import _rebuild_handle
    from aioray._object_ref import _rebuild_ref
    assert callable(_rebuild_ref) and callable(_rebuild_handle)
