"""The zygote: a worker process with everything imported, forked to start actor processes.

Starting ``python -m aioray._worker`` costs an interpreter start and the imports (about
100 ms of CPU); a fork of this process costs a few milliseconds, which is what makes creating
an actor cheap. The driver sends one end of a fresh socketpair (``SCM_RIGHTS``); we fork; the
child serves the driver on it like any worker. We stay single-threaded (forking a threaded
process can copy a held lock) and report, as fixed-size records on our own socket:

* ``b"P"`` + pid: the child we forked for the last request;
* ``b"X"`` + pid + wait status: a child ended (the driver cannot ``waitpid`` a grandchild, and
  it wants to say "killed by signal SIGSEGV").

When the driver goes away (EOF) we exit; our children notice on their own sockets.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

from aioray._wire.framing import ZYGOTE_RECORD

RECORD = ZYGOTE_RECORD


def serve(fd: int, run_worker: Callable[[int], NoReturn]) -> None:
    sock = socket.socket(fileno=fd)

    def reap(signum: int, frame: object) -> None:
        # Runs between bytecodes of the main thread, never inside a send: records stay whole.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                sock.sendall(RECORD.pack(b"X", pid, status))
            except OSError:
                return

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver's Ctrl-C is not for us
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            break
        if not fds:  # EOF: the driver is gone
            break
        child_fd = fds[0]
        pid = os.fork()
        if pid == 0:
            os.setsid()  # its own process group: it can take down what it starts
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            sock.close()
            run_worker(child_fd)
        os.close(child_fd)
        try:
            sock.sendall(RECORD.pack(b"P", pid, 0))
        except OSError:
            break
    sys.exit(0)
