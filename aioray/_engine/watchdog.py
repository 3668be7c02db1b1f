"""The loop watchdog: notice when aioray's event loop stops turning, and say who stopped it.

Everything async in aioray shares one event loop, so one ``async def`` method that calls
``time.sleep`` (or spins, or an async generator that never awaits) freezes every task, actor
call and ``get`` in the program — silently, unless something watches. The watchdog is a
heartbeat: a timer on the loop stamps the time every ``threshold / 4`` seconds, and a daemon
thread checks the stamp. When the loop has not turned for longer than ``threshold`` it logs
**one warning per incident** (logger ``aioray``) naming what runs on the loop right now — the
task, or the actor and its method, and the current line (``sys._current_frames()`` of the loop
thread) — and how to fix it.

Cost: one timer callback per ``threshold / 4`` on the loop and one thread waking as often, so
it is always on. ``AIORAY_LOOP_WATCHDOG`` sets the threshold in seconds (default 1); ``0`` or
``off`` turns it off.
"""

from __future__ import annotations

import asyncio
import linecache
import logging
import os
import selectors
import signal
import sys
import threading
import time
import types
from collections.abc import Callable

from aioray._engine import env
from aioray._engine.actor_state import ActorState
from aioray._engine.tasks import TaskManager
from aioray._exec.invoke import run_async

_log = logging.getLogger("aioray")

DEFAULT_THRESHOLD = 1.0
ENV = "AIORAY_LOOP_WATCHDOG"

# Frames that tell what the loop runs: the body runner (its ``name`` local: "f",
# "Counter.incr") and the engine frames around it (an actor call, a task).
_BODY = run_async.__code__
_ACTOR_CALL = ActorState._invoke.__code__
_TASK_CODES = {TaskManager._execute_coroutine.__code__, TaskManager._run_simple.__code__}
# Not the program's code: aioray's and the standard library's (asyncio, selectors...). A stall
# with nothing else on the stack is aioray's own burst of work; otherwise the innermost frame
# of the program is where it is blocked.
_INTERNAL = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
             os.path.dirname(os.path.abspath(selectors.__file__)) + os.sep)

FIX = ("Fix: in async code await instead of blocking (`await asyncio.sleep(...)` instead of "
       "`time.sleep(...)`, an async client instead of a blocking one, `await "
       "asyncio.sleep(0)` now and then in a long loop or an async generator that never "
       "awaits); or move the blocking work off the loop: a sync (`def`) task runs in a worker "
       "process (`.options(executor=\"process\")`), and a sync actor (no `async def` "
       "methods) runs its methods on its own thread.")


def threshold_from_env() -> float | None:
    """The configured threshold in seconds, or None when the watchdog is off."""
    return env.seconds(ENV, DEFAULT_THRESHOLD)


class LoopWatchdog:
    """Watches one loop, run by the thread ``thread_id``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int, threshold: float,
                 report: Callable[[str], None] | None = None) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.threshold = threshold
        self.interval = max(threshold / 4, 0.005)
        self.last = time.monotonic()
        self.incidents = 0  # warnings logged so far
        self._reported = False  # the current stall was reported
        self._report = report or _log.warning
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="aioray-watchdog",
                                        daemon=True)

    def start(self) -> None:
        """Start beating (call from any thread) and watching."""
        self.loop.call_soon_threadsafe(self._beat)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        timer = self._timer
        if timer is not None:
            try:
                self.loop.call_soon_threadsafe(timer.cancel)
            except RuntimeError:  # loop closed
                pass

    # -- the loop side ------------------------------------------------------------------
    def _beat(self) -> None:
        self.last = time.monotonic()
        self._reported = False
        if not self._stop.is_set():
            self._timer = self.loop.call_later(self.interval, self._beat)

    # -- the watching thread ------------------------------------------------------------
    def _watch(self) -> None:
        # Ctrl-C must interrupt the main thread's blocking wait (get): a signal the kernel
        # hands to this always-sleeping thread would not. It starts no process, so the mask
        # leaks nowhere.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while not self._stop.wait(self.interval):
            if self.loop.is_closed() or not self.loop.is_running():
                self.last = time.monotonic()  # an idle adopted loop is not a stalled one
                continue
            stalled = time.monotonic() - self.last
            if stalled > self.threshold and not self._reported:
                self._reported = True
                try:
                    message = self.describe(stalled)
                    if message is not None:
                        self.incidents += 1
                        self._report(message)
                except Exception:  # never let the watchdog die of a report
                    pass

    def describe(self, stalled: float) -> str | None:
        """The warning for a stall, or None when only aioray's own code runs (a burst of
        bookkeeping, not a bug in the program)."""
        frame = sys._current_frames().get(self.thread_id)
        found = describe_frames(frame)
        if found is None:
            return None
        what, where = found
        return (f"aioray: the event loop has not run for {stalled:.1f} s (more than "
                f"{self.threshold:g} s): {what} is blocking it{where}. While it does, every "
                f"other task, actor call and get waits. {FIX} (This warning comes once per "
                f"stall; {ENV}=<seconds> sets the threshold, {ENV}=0 turns it off.)")


def describe_frames(frame: types.FrameType | None) -> tuple[str, str] | None:
    """What the loop thread runs (``"actor Counter (…) method slow"``, ``"task f"``, ``"code
    that is not an aioray task"``) and where (`` at file:line in fn: `source` ``); None when
    no code but aioray's and asyncio's is on the stack."""
    innermost: types.FrameType | None = None  # the innermost frame not of aioray or asyncio
    body_name: str | None = None
    callee: types.FrameType | None = None  # the user's frame called by the body runner
    what: str | None = None
    below: types.FrameType | None = None
    f = frame
    while f is not None:
        code = f.f_code
        if innermost is None and not code.co_filename.startswith(_INTERNAL):
            innermost = f
        if code is _BODY and body_name is None:
            name = _local(f, "name")
            body_name = name if isinstance(name, str) else "?"
            callee = below
        elif code is _ACTOR_CALL and what is None:
            state = _local(f, "self")
            call = _local(f, "call")
            actor = getattr(getattr(state, "ac", None), "__name__", None) or "?"
            actor_id = getattr(state, "actor_id", b"")
            method = getattr(getattr(call, "meta", None), "name", None) or "?"
            ident = actor_id.hex()[:12] if isinstance(actor_id, bytes) else "?"
            what = f"actor {actor} ({ident}…) method {method!r}"
        elif code in _TASK_CODES and what is None:
            what = f"task {body_name or getattr(_local(f, 'spec'), 'name', '?')!r}"
        below = f
        f = f.f_back
    if innermost is None:
        return None
    if what is None:
        what = (f"{body_name!r}" if body_name is not None
                else "code that is not an aioray task (a callback or coroutine of your own?)")
    where = f" at {_location(innermost)}"
    if callee is not None and callee is not innermost:
        where += f", called from {_location(callee)}"
    return what, where


def _local(frame: types.FrameType, name: str) -> object:
    try:
        return frame.f_locals.get(name)
    except Exception:
        return None


def _location(frame: types.FrameType) -> str:
    code = frame.f_code
    line = frame.f_lineno
    source = linecache.getline(code.co_filename, line).strip()
    text = f"{code.co_filename}:{line} in {code.co_name}"
    return f"{text}: `{source}`" if source else text
