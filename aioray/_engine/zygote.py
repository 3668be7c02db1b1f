"""The driver's side of the zygote (``aioray._worker.zygote``): cheap worker processes by fork.

An actor takes a process for its whole life, so creating one must not cost an interpreter
start. The zygote is started once, on the first actor creation that finds no idle worker; each
later process is a fork of it (a few milliseconds). Its children are not ours, so it tells us
their pids and how they ended; :class:`ForkedProcess` gives the pool what it needs of a
``Popen`` (``pid``, ``poll``, ``wait``, ``kill``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque

from aioray._wire.framing import ZYGOTE_RECORD as RECORD


class ForkedProcess:
    """A worker forked by the zygote; its exit status arrives from the zygote."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def ended(self, code: int | None) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Zygote:
    """One zygote process and the forks it made (lives on the runtime's loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, env: dict[str, str]) -> None:
        self.loop = loop
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aioray._worker", "--zygote", str(child.fileno())],
                pass_fds=[child.fileno()], env=env, start_new_session=True,
                stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.sock = parent
        parent.setblocking(False)
        self._buf = b""
        self._forks: deque[asyncio.Future[int]] = deque()
        self.children: dict[int, ForkedProcess] = {}
        self._early: dict[int, int] = {}  # exits reported before the fork's own record
        self.dead = False
        loop.add_reader(parent.fileno(), self._on_readable)

    async def fork(self) -> tuple[ForkedProcess, socket.socket]:
        """A new worker process and the driver's end of its socket."""
        if self.dead:
            raise RuntimeError("the zygote process is gone")
        parent, child = socket.socketpair()
        fut: asyncio.Future[int] = self.loop.create_future()
        self._forks.append(fut)
        try:
            socket.send_fds(self.sock, [b"F"], [child.fileno()])
        except OSError as e:
            self._forks.remove(fut)
            parent.close()
            raise RuntimeError(f"the zygote process is gone: {e}") from None
        finally:
            child.close()
        pid = await fut
        proc = ForkedProcess(pid)
        self.children[pid] = proc
        if pid in self._early:
            self._ended(pid, self._early.pop(pid))
        return proc, parent

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._gone()
            return
        buf = self._buf + data
        size = RECORD.size
        n = len(buf) - len(buf) % size
        for off in range(0, n, size):
            kind, pid, status = RECORD.unpack_from(buf, off)
            if kind == b"P":
                fut = self._forks.popleft()
                if not fut.done():
                    fut.set_result(pid)
            elif pid in self.children:
                self._ended(pid, status)
            else:
                self._early[pid] = status
        self._buf = buf[n:]

    def _ended(self, pid: int, status: int) -> None:
        proc = self.children.pop(pid)
        proc.ended(os.waitstatus_to_exitcode(status))

    def _gone(self) -> None:
        """The zygote died: nobody will report on its children any more."""
        if self.dead:
            return
        self.dead = True
        self.loop.remove_reader(self.sock.fileno())
        for fut in self._forks:
            if not fut.done():
                fut.set_exception(RuntimeError("the zygote process died"))
        self._forks.clear()
        for proc in self.children.values():
            proc.ended(None)
        self.children.clear()

    def close(self) -> None:
        """End the zygote (loop thread): it exits when its socket closes; its children end
        when their own sockets close."""
        if not self.dead:
            self._gone()
        self.sock.close()

    def reap(self) -> None:
        """Wait for the zygote to exit (any thread), killing it if it lingers."""
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
