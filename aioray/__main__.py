"""``python -m aioray``: what this installation runs on — the first thing to run.

Prints the version, the event loop aioray would use, the resources a default ``init()`` sees,
how sync tasks get their worker processes, and the optional packages found. ``--json`` prints
the same as one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

import aioray
from aioray._backend import registry
from aioray._objects import shm

WORKER_START = "subprocess (python -m aioray._worker)"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """Start a default runtime, read what it has, shut it down."""
    was_running = aioray.is_initialized()
    info = aioray.init(ignore_reinit_error=True)
    try:
        resources = aioray.cluster_resources()
        backend = registry.installed()
        ray_backend = backend is not None and backend.name == "ray"
        store = shm.describe()
    finally:
        if not was_running:
            aioray.shutdown()
    loop = "Ray's own (tasks run on Ray)" if ray_backend else str(info.get("loop"))
    if loop == "uvloop":
        loop = f"uvloop {_version('uvloop') or ''}".strip()
    local = os.environ.get("AIORAY_LOCAL_MODE", "") not in ("", "0")
    return {
        "version": aioray.__version__,
        "backend": "ray (AIORAY_BACKEND=ray / init(address=...))" if ray_backend
                   else "embedded (this process)",
        "python": f"{platform.python_version()} ({platform.python_implementation()}, "
                  f"{platform.system()} {platform.machine()})",
        "loop": loop,
        "resources": resources,
        "worker_start_method": "Ray's worker processes" if ray_backend else WORKER_START,
        "local_mode": local,
        "shared_memory_dir": store["directory"],
        "object_store": store,
        "optional_packages": {name: _version(name)
                              for name in ("numpy", "anyio", "pytest-asyncio", "ray")},
    }


def _format_resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{k} {int(v) if float(v).is_integer() else v}"
                     for k, v in sorted(resources.items())) or "none"


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _format_store(store: dict[str, Any]) -> str:
    return (f"{_gib(store['object_store_memory'])} (object_store_memory), "
            f"{_gib(store['directory_free_bytes'])} free in {store['directory']}; spills to "
            f"{store['spill_directory']}: {store['spilled_objects']} objects spilled "
            f"({_gib(store['spilled_bytes'])}), {store['restored_objects']} restored  "
            f"(init(_temp_dir=...) / {shm.ENV_DIR} choose the directory)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aioray", description="Show what aioray runs on in this environment.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    optional = ", ".join(f"{k} {v}" if v else f"{k} (not installed)"
                         for k, v in data["optional_packages"].items())
    rows = [
        ("aioray", data["version"]),
        ("python", data["python"]),
        ("backend", data["backend"]),
        ("event loop", data["loop"] if data["backend"].startswith("ray") else
         f"{data['loop']}  (AIORAY_LOOP=asyncio selects the stdlib loop)"),
        ("resources", _format_resources(data["resources"])
         + "  (init(num_cpus=..., num_gpus=..., resources={...}) to change)"),
        ("worker start", data["worker_start_method"]),
        ("local mode", ("on" if data["local_mode"] else "off")
         + "  (AIORAY_LOCAL_MODE=1 / init(local_mode=True): sync tasks on threads in-process)"),
        ("shared memory", f"{data['shared_memory_dir']}  (pickle-5 buffers >= 1 MiB, e.g. numpy arrays)"),
        ("object store", _format_store(data["object_store"])),
        ("optional", optional),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
