"""A task's or actor's ``runtime_env`` applied to this worker process."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def apply_runtime_env(renv: dict[str, Any]) -> Callable[[], None]:
    """Set a task's runtime_env in this process; returns what undoes it.

    ``env_vars`` values may name existing variables as ``${NAME}`` (as in Ray);
    ``working_dir`` becomes the working directory and the first ``sys.path`` entry;
    each ``py_modules`` directory is importable by its name (its parent goes on
    ``sys.path``)."""
    saved_cwd: str | None = None
    entries = [os.path.dirname(m.rstrip(os.sep)) for m in renv.get("py_modules") or ()]
    working_dir = renv.get("working_dir")
    if working_dir:
        saved_cwd = os.getcwd()
        os.chdir(working_dir)  # first: if this fails (gone), nothing is changed yet
        entries.insert(0, working_dir)
    saved_path = list(sys.path)
    if entries:
        sys.path[:0] = entries
    saved_env: dict[str, str | None] = {}
    for key, value in (renv.get("env_vars") or {}).items():
        saved_env[key] = os.environ.get(key)
        os.environ[key] = _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)

    def restore() -> None:
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        sys.path[:] = saved_path
        if saved_cwd is not None:
            try:
                os.chdir(saved_cwd)
            except OSError:
                pass
    return restore
