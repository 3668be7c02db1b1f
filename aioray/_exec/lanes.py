"""Threads that run the calls of one concurrency group: up to ``limit`` threads on one FIFO.

Used wherever sync actor methods run on threads: in the driver (``executor="thread"`` actors)
and in an actor's worker process. The caller hands over every ready call at once and each
job posts its own outcome, so a busy actor costs no thread hop per call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Interrupted(BaseException):
    """Raised in a lane thread whose call was stopped by a kill or a restart."""


class Lanes:
    """Up to ``limit`` threads taking jobs from one FIFO, started as the work needs them."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._queued = 0  # jobs not taken by a thread yet
        self._waiting = 0  # threads blocked waiting for a job

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._queued += 1
            # a new thread only when the waiting ones cannot take all queued jobs
            start = self._queued > self._waiting and len(self.threads) < self.limit
            if start:
                t = threading.Thread(target=self._main, name=f"aioray-actor-{self.name}",
                                     daemon=True)
                self.threads.append(t)
        self.jobs.put(job)
        if start:
            t.start()

    def _main(self) -> None:
        while True:
            try:
                with self._lock:
                    self._waiting += 1
                job = self.jobs.get()
                with self._lock:
                    self._waiting -= 1
                    self._queued -= 1
                if job is None:
                    return
                job()
            except Interrupted:  # a kill/restart interrupt that landed between calls
                pass

    def close(self) -> None:
        """Threads exit once the jobs already queued are through (stale ones are skipped)."""
        with self._lock:
            n = len(self.threads)
            self._queued += n
        for _ in range(n):
            self.jobs.put(None)
