"""What a worker process prints, as the driver shows it: each line prefixed like Ray's.

``(f pid=123) hello`` for a task, ``(Counter pid=123) hello`` for an actor (its ``__repr__``
when the class defines one, as Ray does). The worker inherits the driver's stdout and stderr,
so lines land in the driver's streams directly (stderr stays stderr); ``log_to_driver=False``
drops them. Whole lines only: a partial line waits for its end (or the process's end).
The process title (``ps``, ``top``, ``py-spy``) says what runs, when ``setproctitle`` is
installed (the ``observe`` extra).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO

_setproctitle: Callable[[str], None] | None
try:  # optional: a readable process title
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - depends on the extra
    _setproctitle = None


class PrefixedStream(io.TextIOBase):
    """A text stream that writes each complete line to ``raw`` behind ``(label pid=N) ``."""

    def __init__(self, raw: TextIO, label: Callable[[], str], enabled: bool) -> None:
        self.raw = raw
        self.label = label
        self.enabled = enabled
        self.pid = os.getpid()
        self._buf = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not self.enabled or not s:
            return len(s)
        with self._lock:
            self._buf += s
            if "\n" not in self._buf:
                return len(s)
            *lines, self._buf = self._buf.split("\n")
            prefix = f"({self.label()} pid={self.pid}) "
            self.raw.write("".join(f"{prefix}{line}\n" for line in lines))
            self.raw.flush()
        return len(s)

    def flush(self) -> None:
        self.raw.flush()

    def close_line(self) -> None:
        """The process ends: a last partial line goes out too."""
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest and self.enabled:
            self.raw.write(f"({self.label()} pid={self.pid}) {rest}\n")
        self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8") or "utf-8"


def install(label: Callable[[], str], log_to_driver: bool,
            logging_setup: tuple[int, str | None] | None) -> None:
    """Prefix this process's stdout and stderr; follow the driver's logging set-up."""
    for name in ("stdout", "stderr"):
        raw = getattr(sys, name)
        if isinstance(raw, PrefixedStream):
            raw.enabled = log_to_driver
            continue
        setattr(sys, name, PrefixedStream(raw, label, log_to_driver))
    if logging_setup is not None:
        level, fmt = logging_setup
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT, stream=sys.stderr)


def end() -> None:
    """Flush the streams, partial lines included (the process is about to exit)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if isinstance(stream, PrefixedStream):
                stream.close_line()
            else:
                stream.flush()
        except Exception:
            pass


def set_title(what: str) -> None:
    if _setproctitle is not None:
        _setproctitle(f"aioray::{what}")
