"""``python -m aioray.as_ray [--shadow] [--internals=on-use] (script.py | -m module | -c code | -) [args...]``: run a
program written for Ray on aioray. Installs the ray-import hook (:mod:`aioray.as_ray`), then runs
the program as ``__main__`` the way ``python`` would (``sys.argv``, ``sys.path[0]``)."""

from __future__ import annotations

import os
import runpy
import sys
import types

from aioray import as_ray

USAGE = ("usage: python -m aioray.as_ray [--shadow] [--internals=on-use] "
         "(script.py | -m module | -c code | -) [args...]\n"
         "Runs a program written for Ray on aioray: `import ray` gives aioray.\n"
         "  --shadow            also when a real Ray is installed (AIORAY_AS_RAY=shadow does the "
         "same)\n"
         "  --internals=on-use  an import of a Ray internal succeeds and fails where it is used\n"
         "                      (AIORAY_AS_RAY_INTERNALS=on-use; default: import-error)")


def _exec_source(source: str, filename: str) -> None:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        exec(compile(source, filename, "exec"), main.__dict__)
    finally:
        sys.modules["__main__"] = saved


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    shadow = False
    internals: str | None = None
    while args and (args[0] in ("--shadow", "-h", "--help")
                    or args[0].startswith("--internals=")):
        flag = args.pop(0)
        if flag == "--shadow":
            shadow = True
        elif flag.startswith("--internals="):
            internals = flag.partition("=")[2]
            if internals not in as_ray.INTERNALS_MODES:
                print(f"python -m aioray.as_ray: {flag}: use --internals=import-error or "
                      f"--internals=on-use\n{USAGE}", file=sys.stderr)
                return 2
        else:
            print(USAGE)
            return 0
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        shadow = shadow or as_ray.mode_from_env() == "shadow"
        internals = internals or as_ray.internals_from_env()
    except ValueError as e:
        print(f"python -m aioray.as_ray: {e}", file=sys.stderr)
        return 2
    target = args[0]
    if target in ("-m", "-c") and len(args) < 2:
        print(f"python -m aioray.as_ray: {target} needs an argument\n{USAGE}", file=sys.stderr)
        return 2
    # sys.path[0] as `python <target>` would set it (`-m aioray.as_ray` made it the cwd);
    # with -P / PYTHONSAFEPATH there is no such entry to adjust.
    if not getattr(sys.flags, "safe_path", False):
        if target in ("-m", "-c", "-"):
            sys.path[0] = "" if target != "-m" else os.getcwd()
        else:
            sys.path[0] = os.path.dirname(os.path.abspath(target))
    try:
        as_ray.install(shadow=shadow, internals=internals)
    except RuntimeError as e:
        print(f"python -m aioray.as_ray: {e}", file=sys.stderr)
        return 2
    if target == "-m":
        sys.argv = [args[1], *args[2:]]  # runpy replaces argv[0] with the module's path
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif target == "-c":
        sys.argv = ["-c", *args[2:]]
        _exec_source(args[1], "<string>")
    elif target == "-":
        sys.argv = ["-", *args[1:]]
        _exec_source(sys.stdin.read(), "<stdin>")
    else:
        sys.argv = list(args)
        runpy.run_path(target, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
