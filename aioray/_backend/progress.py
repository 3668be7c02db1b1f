"""Progress bars (``aioray.experimental.tqdm_ray``): the state a bar sends, and the driver's
drawing of every bar in one place."""

from __future__ import annotations

import sys
import threading
from typing import Any, NamedTuple, TextIO


class BarState(NamedTuple):
    uuid: str
    desc: str
    x: int
    total: int | None
    unit: str
    pos: int
    pid: int
    closed: bool


class BarBoard:
    """The driver's bars, drawn on its stderr: on a terminal, one line per open bar redrawn
    in place; otherwise (a file, a pipe, CI logs) one line per update."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bars: dict[str, BarState] = {}
        self._drawn = 0  # lines of bars on the terminal now
        self._lock = threading.Lock()

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    @staticmethod
    def line(s: BarState) -> str:
        total = f"/{s.total}" if s.total is not None else ""
        pct = f" {100 * s.x / s.total:3.0f}%" if s.total else ""
        return f"{s.desc + ': ' if s.desc else ''}{s.x}{total} {s.unit}{pct} (pid={s.pid})"

    def update(self, s: BarState) -> None:
        with self._lock:
            out = self._out()
            if not out.isatty():
                out.write(self.line(s) + ("  [done]" if s.closed else "") + "\n")
                out.flush()
                if s.closed:
                    self.bars.pop(s.uuid, None)
                else:
                    self.bars[s.uuid] = s
                return
            self._clear(out)
            if s.closed:
                self.bars.pop(s.uuid, None)
                out.write(self.line(s) + "\n")  # a finished bar stays, above the live ones
            else:
                self.bars[s.uuid] = s
            self._draw(out)

    def print(self, text: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            out = self._out()
            if out.isatty():
                self._clear(out)
            print(text, **{k: v for k, v in kwargs.items() if k in ("sep", "end")}, file=out)
            if out.isatty():
                self._draw(out)
            out.flush()

    def _clear(self, out: TextIO) -> None:
        if self._drawn:
            out.write("\x1b[F\x1b[2K" * self._drawn)
            self._drawn = 0

    def _draw(self, out: TextIO) -> None:
        for s in sorted(self.bars.values(), key=lambda b: (b.pos, b.uuid)):
            out.write(self.line(s) + "\n")
        self._drawn = len(self.bars)
        out.flush()
