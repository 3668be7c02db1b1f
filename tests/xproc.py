"""Cross-process stand-ins for the driver objects tests share with actors and tasks.

Sync actors run in their own worker processes, so a ``threading.Event`` or a module-level list
in the test module is a different object there. These hold only a path (they pickle by value
and mean the same file everywhere, also when a worker imports the test module and makes them
again: the default path comes from the line that creates them): tests that coordinate with
actor code use them instead. Create them at module level or in the test, not in a loop.
Waits poll with a deadline, so a test that goes wrong fails instead of hanging.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

import psutil

# One id per test session, inherited by every worker process started after this import: a
# module-level object made again when a worker imports the test module gets the same path.
RUN = os.environ.setdefault("AIORAY_XPROC_RUN", uuid.uuid4().hex[:12])


def _default_path(kind: str) -> str:
    """Where the caller's line is (module and line number): the same in every process."""
    frame = sys._getframe(2)
    where = f"{frame.f_globals.get('__name__', '?')}-{frame.f_lineno}"
    return os.path.join(tempfile.gettempdir(), f"aioray-xproc-{RUN}-{kind}-{where}")


class FileEvent:
    """``threading.Event`` across processes: ``set`` creates a file, ``wait`` polls for it."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or _default_path("event")

    def set(self) -> None:
        with open(self.path, "a"):
            pass

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not os.path.exists(self.path):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


class FileLog:
    """An append-only list of strings across processes (one line each)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or _default_path("log")

    def append(self, item: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, item.encode() + b"\n")  # one write: lines never interleave
        finally:
            os.close(fd)

    def items(self) -> list[str]:
        try:
            with open(self.path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __eq__(self, other: object) -> bool:
        return self.items() == other if isinstance(other, list) else NotImplemented

    def __contains__(self, item: object) -> bool:
        return item in self.items()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items())

    def __len__(self) -> int:
        return len(self.items())

    def __repr__(self) -> str:
        return f"FileLog({self.items()!r})"


def wait_until(pred: Callable[[], bool], what: str = "", timeout: float = 30.0) -> None:
    """Poll ``pred`` until it holds; fail naming ``what`` (or ``pred``) after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
