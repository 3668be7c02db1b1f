"""Find what keeps an object from being serialized: Ray's ``inspect_serializability``.

``inspect_serializability(obj)`` pickles ``obj`` the way aioray does (cloudpickle, protocol 5).
When that fails it walks into what the pickle would contain — the closure and global variables
of a function, the ``__dict__``/``__slots__`` of an object or class, the items of a list, tuple,
dict or set, a bound method's ``__self__``, a ``functools.partial``'s function and arguments —
pickling each member on its own, and reports the *innermost* members that fail: those whose own
members all pickle (a lock, a generator, an open file, …). It prints the tree it checked.

As in Ray it returns ``(serializable, failures)``, a set of :class:`FailureTuple`.
"""

from __future__ import annotations

from typing import Any

from aioray._objects.serializability import (
    FailureTuple,
    default_name,
    find_failures,
    pickle_error,
    short_repr,
)

__all__ = ["FailureTuple", "inspect_serializability"]


def inspect_serializability(base_obj: Any, name: str | None = None, depth: int = 3,
                            print_file: Any = None) -> tuple[bool, set[FailureTuple]]:
    """Identify what keeps ``base_obj`` from being serialized (Ray's
    ``ray.util.inspect_serializability``).

    Args:
        base_obj: the object to check.
        name: what to call it in the output and in its :class:`FailureTuple` (default: the
            function's or class's name, else the type's name).
        depth: how many levels of members to walk into (closure/global variables, attributes,
            items); a member still failing at the last level is reported as it is.
        print_file: where to print the tree of what was checked (``print``'s ``file``;
            default: stdout).

    Returns:
        ``(True, set())`` if ``base_obj`` serializes, else ``(False, failures)``: the innermost
        objects that fail, as :class:`FailureTuple` ``(obj, name, parent, path)``.
    """
    shown = name if name is not None else default_name(base_obj)
    header = f"Checking serializability of '{shown}' {short_repr(base_obj)}"
    rule = "=" * min(len(header), 80)
    print(rule, header, rule, sep="\n", file=print_file)
    error = pickle_error(base_obj)
    if error is None:
        print(f"'{shown}' serializes.", file=print_file)
        print(rule, file=print_file)
        return True, set()
    failures = find_failures(base_obj, shown, depth, error, print_file, echo=True)
    print(rule, file=print_file)
    if failures:
        lines = "\n".join(f"    {f!r} at {f.path}" for f in failures)
        print(f"Variable(s):\n\n{lines}\n\nwere found to be non-serializable. There may be "
              "other non-serializable variables that this check did not reach (raise depth "
              f"beyond {depth} to walk further).\nConsider removing these objects or their "
              "instantiation/imports from what is serialized, or creating them inside the "
              "scope of the function or class (e.g. inside the task or the actor's "
              "__init__).", file=print_file)
    print(rule, file=print_file)
    return False, set(failures)
