"""The memory monitor: kill a worker before the kernel's OOM killer kills the program.

A task that allocates past the machine's memory otherwise gets the whole program killed by the
kernel (or swaps it to a halt). Like Ray's memory monitor (in its raylet), this checks the
machine's used memory every ``AIORAY_MEMORY_MONITOR_REFRESH_MS`` (default 250 ms; ``0`` turns
it off; Ray's ``RAY_memory_monitor_refresh_ms`` is read too) and, when it is at or above
``AIORAY_MEMORY_USAGE_THRESHOLD`` of the total (default 0.95; Ray's
``RAY_memory_usage_threshold`` is read too), kills one worker process:

1. the newest task (most recently dispatched) that can still be retried;
2. else the newest task that can't (its refs get :class:`~aioray.exceptions.OutOfMemoryError`);
3. only then an actor's process (actors with restarts left first, then the largest): the actor
   dies as if its process crashed (``ActorDiedError``) and restarts per ``max_restarts``.

The driver is never the victim, nor any process aioray did not start. A task whose worker was
killed is retried per its ``max_retries`` — after memory is back below the threshold, or a
bounded wait — and otherwise fails with ``OutOfMemoryError`` (tasks.py). One kill at a time:
the next victim is chosen only after the last one is dead and memory was measured again.

Memory is read from cgroup limits when the process runs in a container with a memory limit
below the machine's (v2 ``memory.max`` / ``memory.current``, v1 ``memory.limit_in_bytes`` /
``memory.usage_in_bytes``; reclaimable page cache, ``inactive_file``, is not counted as used),
else from ``/proc/meminfo`` (``MemTotal - MemAvailable``). Linux only; elsewhere it is off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from typing import TYPE_CHECKING, NamedTuple

from aioray._engine.worker_pool import WorkerHandle, kill_group

if TYPE_CHECKING:
    from aioray._engine.runtime import Runtime
    from aioray._engine.tasks import TaskSpec

_log = logging.getLogger("aioray")

ENV_THRESHOLD = "AIORAY_MEMORY_USAGE_THRESHOLD"
ENV_REFRESH_MS = "AIORAY_MEMORY_MONITOR_REFRESH_MS"
_RAY_THRESHOLD = "RAY_memory_usage_threshold"
_RAY_REFRESH_MS = "RAY_memory_monitor_refresh_ms"
DEFAULT_THRESHOLD = 0.95
DEFAULT_REFRESH_MS = 250.0
# After an OOM kill a retry waits (at most this long) for memory to come back below the
# threshold: retrying into the same pressure would only be killed again.
RETRY_WAIT_S = 10.0

_GB = 1024 ** 3
_PROC_MEMINFO = "/proc/meminfo"
_CGROUP_V2 = "/sys/fs/cgroup"
_CGROUP_V1 = "/sys/fs/cgroup/memory"


class MemoryUsage(NamedTuple):
    """The machine's (or the container's) memory, in bytes."""

    used: int
    total: int
    source: str  # "/proc/meminfo", "cgroup v2", "cgroup v1"

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"{self.used / _GB:.2f}GB / {self.total / _GB:.2f}GB ({self.fraction:.6g})"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_field(text: str | None, name: str) -> int:
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == name:
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


def _system_memory() -> MemoryUsage | None:
    text = _read(_PROC_MEMINFO)
    if text is None:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        k, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[k] = int(parts[0]) * 1024  # kB
    total = fields.get("MemTotal", 0)
    if not total:
        return None
    avail = fields.get("MemAvailable")
    if avail is None:  # very old kernels
        avail = fields.get("MemFree", 0) + fields.get("Buffers", 0) + fields.get("Cached", 0)
    return MemoryUsage(max(0, total - avail), total, _PROC_MEMINFO)


def _cgroup_memory() -> MemoryUsage | None:
    """The container's limit and usage, when it has a limit (v2, else v1)."""
    limit_text = _read(os.path.join(_CGROUP_V2, "memory.max"))
    if limit_text is not None:
        current = _read(os.path.join(_CGROUP_V2, "memory.current"))
        if limit_text.strip() == "max" or current is None:
            return None
        inactive = _stat_field(_read(os.path.join(_CGROUP_V2, "memory.stat")), "inactive_file")
        try:
            limit, used = int(limit_text), int(current)
        except ValueError:
            return None
        return MemoryUsage(max(0, used - inactive), limit, "cgroup v2")
    limit_text = _read(os.path.join(_CGROUP_V1, "memory.limit_in_bytes"))
    current = _read(os.path.join(_CGROUP_V1, "memory.usage_in_bytes"))
    if limit_text is None or current is None:
        return None
    inactive = _stat_field(_read(os.path.join(_CGROUP_V1, "memory.stat")),
                           "total_inactive_file")
    try:
        limit, used = int(limit_text), int(current)
    except ValueError:
        return None
    return MemoryUsage(max(0, used - inactive), limit, "cgroup v1")


def read_memory_usage() -> MemoryUsage | None:
    """Used and total memory of this machine, or of its container when that has a smaller
    limit (an unlimited cgroup reports a huge limit: the machine's figures apply). None when
    neither can be read (not Linux)."""
    system = _system_memory()
    cgroup = _cgroup_memory()
    if cgroup is not None and (system is None or cgroup.total < system.total):
        return cgroup
    return system


def process_rss(pid: int) -> int | None:
    """Resident memory of ``pid`` in bytes (None if it is gone)."""
    text = _read(f"/proc/{pid}/statm")
    if text is None:
        return None
    try:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (IndexError, ValueError, OSError):
        return None


def _env(names: tuple[str, ...]) -> tuple[str, str] | None:
    for n in names:
        raw = os.environ.get(n, "").strip()
        if raw:
            return n, raw
    return None


def threshold_from_env() -> float:
    found = _env((ENV_THRESHOLD, _RAY_THRESHOLD))
    if found is None:
        return DEFAULT_THRESHOLD
    name, raw = found
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        _log.warning("aioray: %s=%r is not a fraction of memory in (0, 1]; using %s.", name,
                     raw, DEFAULT_THRESHOLD)
        return DEFAULT_THRESHOLD
    return value


def refresh_from_env() -> float | None:
    """Seconds between checks, or None when the monitor is off."""
    found = _env((ENV_REFRESH_MS, _RAY_REFRESH_MS))
    if found is None:
        return DEFAULT_REFRESH_MS / 1000.0
    name, raw = found
    try:
        ms = float(raw)
    except ValueError:
        _log.warning("aioray: %s=%r is not a number of milliseconds; using %s.", name, raw,
                     DEFAULT_REFRESH_MS)
        return DEFAULT_REFRESH_MS / 1000.0
    return ms / 1000.0 if ms > 0 else None


class OomKill(NamedTuple):
    """One worker the monitor killed, and why (for the error its task gets)."""

    pid: int
    what: str
    usage: MemoryUsage
    threshold: float
    rss: int | None
    policy: str

    def error_message(self) -> str:
        """Ray's wording for ``OutOfMemoryError``, with aioray's knobs."""
        used = f", memory used={self.rss / _GB:.2f}GB" if self.rss is not None else ""
        kind, _, name = self.what.partition(" ")
        return (
            "Task was killed due to the node running low on memory.\n"
            f"Memory on the node where the {kind} (name={name}, pid={self.pid}{used}) was "
            "running was "
            f"{self.usage.describe()}, which exceeds the memory usage threshold of "
            f"{self.threshold:g}. aioray killed this worker because {self.policy}. "
            "Consider reducing the memory each task uses, or the task parallelism by "
            "requesting more CPUs per task. Set max_retries to enable retry when the task "
            f"crashes due to OOM. To adjust the kill threshold, set the environment variable "
            f"`{ENV_THRESHOLD}` before aioray.init(). To disable worker killing, set the "
            f"environment variable `{ENV_REFRESH_MS}` to zero.")


class MemoryMonitor:
    """Polls memory on the runtime's loop and kills one worker when it is too high."""

    def __init__(self, rt: Runtime, threshold: float, refresh: float) -> None:
        self.rt = rt
        self.threshold = threshold
        self.refresh = refresh
        self.last: MemoryUsage | None = None
        self.kills: weakref.WeakKeyDictionary[WorkerHandle, OomKill] = (
            weakref.WeakKeyDictionary())
        self.killed = 0
        self._pending: WorkerHandle | None = None  # the last victim, until it is dead
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    @classmethod
    def from_env(cls, rt: Runtime) -> MemoryMonitor | None:
        refresh = refresh_from_env()
        if refresh is None or read_memory_usage() is None:
            return None
        return cls(rt, threshold_from_env(), refresh)

    # -- lifecycle (loop thread for start/tick; stop from any) -------------------------
    def start(self) -> None:
        self._timer = self.rt.loop.call_later(self.refresh, self._tick)

    def stop(self) -> None:
        self.closed = True
        timer = self._timer
        if timer is not None:
            timer.cancel()

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        try:
            self.check()
        except Exception:  # a bug of ours must not stop the monitor
            _log.exception("aioray: the memory monitor failed; it keeps running")
        if not self.closed:
            self._timer = self.rt.loop.call_later(self.refresh, self._tick)

    # -- the check ------------------------------------------------------------------------
    def check(self) -> OomKill | None:
        """Measure; kill one worker if memory is at or above the threshold."""
        pending = self._pending
        if pending is not None:
            if not pending.dead:
                return None  # one kill at a time: wait until the last one is gone
            self._pending = None
        usage = read_memory_usage()
        if usage is None:
            return None
        self.last = usage
        if usage.fraction < self.threshold:
            return None
        return self._kill_one(usage)

    def _task_candidates(self) -> list[tuple[bool, float, TaskSpec, WorkerHandle]]:
        out = []
        for spec in list(self.rt.tasks.tasks.values()):
            w = spec.worker
            if w is None or w.dead or w in self.kills:
                continue
            out.append((spec.retries_left(), spec.started or 0.0, spec, w))
        return out

    def _kill_one(self, usage: MemoryUsage) -> OomKill | None:
        tasks = self._task_candidates()
        if tasks:
            retriable, _, spec, w = max(tasks, key=lambda t: (t[0], t[1]))
            policy = ("it was the most recently scheduled task" + (
                " that can be retried" if retriable else
                "; no running task could be retried"))
            kill = OomKill(w.pid, f"task {spec.name}", usage, self.threshold,
                           process_rss(w.pid), policy)
            self._kill(w, kill, f"the task {spec.name}" + (
                f", which will be retried ({_retry_note(spec)})" if retriable else
                ", which fails with OutOfMemoryError (no retries left)"))
            return kill
        actors = []
        for st in list(self.rt.actors.actors.values()):
            host = st.host
            aw = host.worker if host is not None else None
            if aw is None or aw.dead or aw in self.kills:
                continue
            actors.append((st.can_restart(), process_rss(aw.pid) or 0, st.ac.__name__, aw))
        if not actors:
            return None
        restartable, rss, name, victim = max(actors, key=lambda a: (a[0], a[1]))
        kill = OomKill(victim.pid, f"actor {name}", usage, self.threshold, rss,
                       "no task was running in a worker process, and it was the actor "
                       "using the most memory" + (" that can restart" if restartable else ""))
        self._kill(victim, kill, f"the actor {name}" + (
            ", which restarts (max_restarts)" if restartable else
            ", which dies (no restarts left)"))
        return kill

    def _kill(self, w: WorkerHandle, kill: OomKill, outcome: str) -> None:
        self.kills[w] = kill
        self._pending = w
        self.killed += 1
        rss = f", {kill.rss / _GB:.2f}GB resident" if kill.rss is not None else ""
        _log.warning(
            "aioray: memory on this machine is %s (%s), at or above the memory usage "
            "threshold of %g (%s): killed the worker process (pid=%d%s) of %s.",
            kill.usage.describe(), kill.usage.source, self.threshold, ENV_THRESHOLD, kill.pid,
            rss, outcome)
        # Not WorkerHandle.kill(): that marks a kill "on purpose" (cancel, shutdown); this one
        # must look like the crash it replaces — an actor restarts per max_restarts.
        kill_group(w.pid)
        try:
            w.proc.kill()
        except ProcessLookupError:
            pass

    def kill_of(self, w: WorkerHandle) -> OomKill | None:
        """Why the monitor killed ``w``, if it did."""
        return self.kills.get(w)

    async def settle(self, timeout: float = RETRY_WAIT_S) -> None:
        """Wait (at most ``timeout``) until memory is below the threshold again."""
        loop = self.rt.loop
        deadline = loop.time() + timeout
        while not self.closed and loop.time() < deadline:
            usage = read_memory_usage()
            if usage is None or usage.fraction < self.threshold:
                return
            await asyncio.sleep(self.refresh)


def _retry_note(spec: TaskSpec) -> str:
    if spec.max_retries == -1:
        return f"attempt {spec.attempt + 2}; max_retries=-1"
    return f"attempt {spec.attempt + 2} of {spec.max_retries + 1}"
