"""Ray's test helpers, with Ray's names and behaviour, on aioray's public API.

In ray-import mode (:mod:`aioray.as_ray`) this module *is* ``ray._private.test_utils`` and
``ray._common.test_utils``, so Ray test suites import their helpers unchanged; with
``import aioray as ray`` import it as ``aioray.testing``.

* :func:`wait_for_condition` / :func:`async_wait_for_condition` — poll a predicate until it
  holds; ``RuntimeError`` (with the predicate's last exception) when time runs out.
* :class:`SignalActor` — an async actor tests block on: ``wait.remote()`` returns once
  ``send.remote()`` was called.
* :class:`Semaphore` — an async actor around :class:`asyncio.Semaphore`.
* :func:`run_string_as_driver` / :func:`run_string_as_driver_nonblocking` — a script in a new
  Python process (in ray-import mode when this process is), :func:`wait_for_pid_to_exit`,
  :func:`kill_actor_and_wait_for_failure`, :func:`client_test_enabled` (always False: there is
  no Ray Client).
* :func:`placement_group_assert_no_leak` — remove placement groups and wait until what they
  reserved is free again; :func:`generate_system_config_map` — ``init`` keywords for Ray's
  system config (aioray accepts and ignores it).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import aioray
from aioray import as_ray

__all__ = [
    "Semaphore",
    "SignalActor",
    "async_wait_for_condition",
    "client_test_enabled",
    "generate_system_config_map",
    "kill_actor_and_wait_for_failure",
    "placement_group_assert_no_leak",
    "run_string_as_driver",
    "run_string_as_driver_nonblocking",
    "wait_for_condition",
    "wait_for_pid_to_exit",
]

_TIMEOUT_MESSAGE = "The condition wasn't met before the timeout expired."


@aioray.remote(num_cpus=0)
class SignalActor:
    """An async actor for coordinating tests: ``wait.remote()`` resolves once ``send.remote()``
    has been called (Ray's ``SignalActor``).

    ``send(clear=True)`` wakes the callers waiting right now and leaves the signal unset for
    later ones; ``clear()`` unsets it; ``wait(should_wait=False)`` returns at once;
    ``cur_num_waiters()`` counts the calls blocked in ``wait``.
    """

    def __init__(self) -> None:
        self.ready_event = asyncio.Event()
        self.num_waiters = 0

    def send(self, clear: bool = False) -> None:
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    def clear(self) -> None:
        self.ready_event.clear()

    async def wait(self, should_wait: bool = True) -> None:
        if should_wait:
            self.num_waiters += 1
            try:
                await self.ready_event.wait()
            finally:
                self.num_waiters -= 1

    async def cur_num_waiters(self) -> int:
        return self.num_waiters


@aioray.remote(num_cpus=0)
class Semaphore:
    """An async actor around :class:`asyncio.Semaphore` (Ray's test ``Semaphore``):
    ``acquire()`` resolves once a slot is free, ``release()`` frees one, ``locked()`` says
    whether none is free."""

    def __init__(self, value: int = 1) -> None:
        self._sema = asyncio.Semaphore(value=value)

    async def acquire(self) -> None:
        await self._sema.acquire()

    async def release(self) -> None:
        self._sema.release()

    async def locked(self) -> bool:
        return self._sema.locked()


def _timeout_error(last_ex: str | None) -> RuntimeError:
    message = _TIMEOUT_MESSAGE
    if last_ex is not None:
        message += f" Last exception: {last_ex}"
    return RuntimeError(message)


def wait_for_condition(condition_predictor: Callable[..., Any], timeout: float = 10,
                       retry_interval_ms: float = 100, raise_exceptions: bool = False,
                       **kwargs: Any) -> None:
    """Call ``condition_predictor(**kwargs)`` every ``retry_interval_ms`` until it returns a
    true value; returns None then.

    Exceptions it raises count as "not yet" unless ``raise_exceptions`` (then they propagate).
    After ``timeout`` seconds: ``RuntimeError("The condition wasn't met before the timeout
    expired.")``, followed by the traceback of the last exception if there was one.
    """
    start = time.monotonic()
    last_ex: str | None = None
    while time.monotonic() - start <= timeout:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception:
            if raise_exceptions:
                raise
            last_ex = traceback.format_exc()
        time.sleep(retry_interval_ms / 1000.0)
    raise _timeout_error(last_ex)


async def async_wait_for_condition(condition_predictor: Callable[..., Any], timeout: float = 10,
                                   retry_interval_ms: float = 100, **kwargs: Any) -> None:
    """:func:`wait_for_condition` for async code: the predictor may be sync or async, and the
    pauses are ``asyncio.sleep`` (the event loop keeps running). The timeout message ends with
    the last exception (``str``), as in Ray."""
    start = time.monotonic()
    last_ex: BaseException | None = None
    while time.monotonic() - start <= timeout:
        try:
            result = condition_predictor(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except Exception as e:
            last_ex = e
        await asyncio.sleep(retry_interval_ms / 1000.0)
    raise _timeout_error(None if last_ex is None else str(last_ex))


def client_test_enabled() -> bool:
    """Ray's switch for running its tests through Ray Client: aioray has no client, so False."""
    return False


def generate_system_config_map(**kwargs: Any) -> dict[str, Any]:
    """``init`` keywords that set Ray's ``_system_config`` (``ray.init(**generate_system_config_map(
    num_heartbeats_timeout=10))``, often through a fixture's ``param``). aioray accepts the
    option and has none of those settings."""
    return {"_system_config": kwargs}


def placement_group_assert_no_leak(pgs_created: list[Any], timeout: float = 10) -> None:
    """Remove ``pgs_created``, then wait until every placement group is removed and every
    resource is as available as when nothing runs; ``RuntimeError`` after ``timeout``."""
    for pg in pgs_created:
        aioray.util.remove_placement_group(pg)

    def removed() -> bool:
        return all(entry["state"] == "REMOVED"
                   for entry in aioray.util.placement_group_table().values())

    wait_for_condition(removed, timeout=timeout)
    totals = {k: v for k, v in aioray.cluster_resources().items()
              if k not in ("memory", "object_store_memory")}

    def recovered() -> bool:
        available = aioray.available_resources()
        return all(available.get(k) == v for k, v in totals.items()) and not any(
            "_group_" in k for k in available)

    wait_for_condition(recovered, timeout=timeout)


def kill_actor_and_wait_for_failure(actor: aioray.ActorHandle[Any], timeout: float = 10,
                                    retry_interval_ms: float = 100) -> None:
    """Kill ``actor`` (no restart, as Ray's ``kill``) and return once it is dead. aioray's
    ``kill`` is done when it returns (calls fail with ``ActorDiedError`` at once), so there is
    nothing to poll; ``timeout`` and ``retry_interval_ms`` are accepted for Ray's signature."""
    aioray.kill(actor)


def _driver_command() -> list[str]:
    """``python -`` (script on stdin), through ``python -m aioray.as_ray`` when this process is in
    ray-import mode, so a driver script's ``import ray`` gets aioray there too."""
    if as_ray.is_installed():
        # Installing here succeeded, so shadowing any Ray the child finds is what was asked.
        return [sys.executable, "-m", "aioray.as_ray", "--shadow", "-"]
    return [sys.executable, "-"]


def run_string_as_driver(driver_script: str, env: Mapping[str, str] | None = None,
                         encode: str = "utf-8", timeout: float | None = None) -> str:
    """Run ``driver_script`` in a new Python process; return its output (stdout and stderr
    together). A non-zero exit prints the output and raises
    :class:`subprocess.CalledProcessError`; ``timeout`` (seconds) kills it and raises
    :class:`subprocess.TimeoutExpired`. In ray-import mode the script runs in that mode too."""
    proc = subprocess.Popen(_driver_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=None if env is None else dict(env))
    with proc:
        try:
            output = proc.communicate(driver_script.encode(encode), timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        out = output.decode(encode, errors="replace")
        if proc.returncode:
            print(out)
            raise subprocess.CalledProcessError(proc.returncode, proc.args, output)
    return out


def run_string_as_driver_nonblocking(driver_script: str, env: Mapping[str, str] | None = None
                                     ) -> subprocess.Popen[bytes]:
    """Start ``driver_script`` in a new Python process and return the
    :class:`subprocess.Popen` (stdout and stderr are pipes), as Ray's helper does."""
    proc = subprocess.Popen(_driver_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=None if env is None else dict(env))
    assert proc.stdin is not None
    proc.stdin.write(driver_script.encode("utf-8"))
    proc.stdin.close()
    proc.stdin = None  # all written: communicate() must not flush it again
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return True


def wait_for_pid_to_exit(pid: int, timeout: float = 20) -> None:
    """Return once process ``pid`` has exited; ``TimeoutError`` after ``timeout`` seconds.

    aioray runs async actors and async tasks in this process, so a pid they report is this
    process's own: that raises ``TimeoutError`` at once instead of waiting for it to expire.
    """
    if pid == os.getpid():
        raise TimeoutError(
            f"Process {pid} is this process: aioray runs async actors and async tasks in the "
            "driver process, so it will not exit.")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Timed out while waiting for process {pid} to exit.")
