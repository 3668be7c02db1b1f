"""``Pool``: a drop-in for ``multiprocessing.Pool`` (Ray's ``ray.util.multiprocessing.Pool``)
that runs its work as aioray tasks.

How it runs. Work is split into chunks (``chunksize`` items each); every chunk is one ordinary
``def`` task, so it runs in one of aioray's worker processes — real CPU parallelism, which is
what a process pool is for. (Ray's Pool uses one actor per process; aioray's sync actors are
threads of this process, so CPU-bound pool functions would share one GIL.) At most
``processes`` chunks are in flight at once; a handler thread submits the next chunk as one
finishes, collects results and runs the callbacks (one thread per pool, alive only while the
pool has work — like the stdlib's result-handler thread, callbacks should return quickly).

``initializer(*initargs)`` runs once in every worker process that runs this pool's work, before
its first item, and what it sets up (module globals, environment variables, open resources)
is seen by every later item in that process: the stdlib's "once per worker process" contract.
aioray's worker processes are shared by all tasks, so it runs in as many processes as the pool
ends up using (at most the number of CPUs) and its effects stay in them after the pool closes.

Semantics follow the stdlib where Ray's Pool deviates from it: a task's error is raised by
``get()`` (and by ``next()`` of ``imap`` at the failing chunk) as the original exception class
and value, with the remote traceback as ``__cause__``; ``error_callback`` receives that
exception; ``map_async`` fails as soon as one chunk fails; ``starmap_async`` takes
``chunksize``. ``imap``/``imap_unordered`` pull their iterable lazily, keeping at most
``2 * processes`` chunks submitted but not yet consumed (until ``close()``, which lets the rest
run so that ``join()`` returns). ``terminate()`` cancels the work in flight (its results raise
``TaskCancelledError``); leaving a ``with Pool() as p:`` block terminates, as in the stdlib.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sys
import threading
import time
import traceback
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from multiprocessing import TimeoutError
from typing import Any, TypeAlias, cast

import aioray
from aioray.exceptions import RayTaskError, TaskCancelledError, UnserializableException

__all__ = ["AsyncResult", "IMapIterator", "Pool", "TimeoutError"]

# What a chunk is: a list of (args, kwargs-or-None), one per item.
_Item: TypeAlias = tuple[tuple[Any, ...], dict[str, Any] | None]

# -- what runs in the worker processes ---------------------------------------------------------
# Pools whose initializer has run in this process (a worker's, or the driver's for thread
# tasks / local mode).
_INITIALIZED: set[str] = set()
_INIT_LOCK = threading.Lock()


def _run_chunk(setup: tuple[str, Callable[..., Any] | None, tuple[Any, ...]],
               func: Callable[..., Any], chunk: list[_Item]) -> list[Any]:
    pool_id, initializer, initargs = setup
    if initializer is not None and pool_id not in _INITIALIZED:
        with _INIT_LOCK:
            if pool_id not in _INITIALIZED:
                initializer(*initargs)
                _INITIALIZED.add(pool_id)
    return [func(*args, **kwargs) if kwargs else func(*args) for args, kwargs in chunk]


_run_chunk_task = aioray.remote(_run_chunk)


# -- results -------------------------------------------------------------------------------------
def _unwrap(error: BaseException) -> BaseException:
    """The exception the pool function raised, as the stdlib's pool raises it: its own class
    and value, with the remote error (and traceback) chained as ``__cause__``."""
    if isinstance(error, RayTaskError):
        cause: Any = error.cause
        while isinstance(cause, RayTaskError):
            cause = cause.cause
        if isinstance(cause, Exception) and not isinstance(cause, UnserializableException):
            cause.__cause__ = error
            return cause
    return error


def _report_callback_error(what: str, error: BaseException) -> None:
    print(f"Exception in aioray Pool {what}:", file=sys.stderr)
    traceback.print_exception(type(error), error, error.__traceback__)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _check_not_in_loop(what: str) -> None:
    if not _in_running_loop():
        return
    raise RuntimeError(
        f"{what} would block the event loop running in this thread (and deadlock if it is "
        "aioray's). Call it from a thread instead, e.g. `await asyncio.to_thread(...)`.")


class AsyncResult:
    """What ``apply_async``/``map_async``/``starmap_async`` return (the stdlib's interface)."""

    def __init__(self, single: bool, callback: Callable[[Any], object] | None,
                 error_callback: Callable[[BaseException], object] | None) -> None:
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._chunks: dict[int, list[Any]] = {}
        self._total: int | None = None
        self._value: Any = None
        self._error: BaseException | None = None

    def ready(self) -> bool:
        """Whether the call has completed (successfully or not)."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if it is not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or ``timeout`` seconds pass (never raises)."""
        if not self._event.is_set():
            _check_not_in_loop("AsyncResult.wait()")
            self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the call's error, or ``multiprocessing.TimeoutError`` when it
        is not ready within ``timeout`` seconds."""
        self.wait(timeout)
        if not self._event.is_set():
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value

    # -- fed by the pool's handler thread ------------------------------------------------------
    def _wants_more(self, submitted: int, unbounded: bool) -> bool:
        return not self._event.is_set()

    def _chunk_done(self, index: int, values: list[Any]) -> None:
        if self._event.is_set():
            return
        self._chunks[index] = values
        self._maybe_finish()

    def _chunk_failed(self, index: int, error: BaseException) -> None:
        if self._event.is_set():
            return
        self._error = error
        self._finish()

    def _set_total(self, total: int) -> None:
        self._total = total
        self._maybe_finish()

    def _abort(self, error: BaseException, submitted: int) -> None:
        self._chunk_failed(submitted, error)

    def _maybe_finish(self) -> None:
        if self._total is None or len(self._chunks) < self._total or self._event.is_set():
            return
        values = list(itertools.chain.from_iterable(
            self._chunks[i] for i in range(self._total)))
        self._chunks.clear()
        self._value = values[0] if self._single else values
        self._finish()

    def _finish(self) -> None:
        try:
            if self._error is None:
                if self._callback is not None:
                    self._callback(self._value)
            elif self._error_callback is not None:
                self._error_callback(self._error)
        except Exception as e:
            _report_callback_error("callback", e)
        finally:
            self._event.set()


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """What ``imap``/``imap_unordered`` return: iterate it, or ``next(timeout)``."""

    def __init__(self, pool: Pool, ordered: bool, window: int) -> None:
        self._pool = pool
        self._ordered = ordered
        self._window = window
        self._cond = threading.Condition(threading.Lock())
        self._arrived: dict[int, tuple[bool, Any]] = {}  # ordered: chunk index -> outcome
        self._queue: deque[tuple[bool, Any]] = deque()  # unordered: outcomes as they come
        self._items: deque[Any] = deque()  # the chunk being handed out
        self._next_index = 0
        self._delivered = 0
        self._total: int | None = None

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result; its error if that item's chunk failed; ``StopIteration`` at the
        end; ``multiprocessing.TimeoutError`` if nothing comes within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        checked = False
        with self._cond:
            while True:
                if self._items:
                    return self._items.popleft()
                outcome = self._take()
                if outcome is not None:
                    self._pool._post(("more",))  # room for the next chunk
                    ok, payload = outcome
                    if not ok:
                        raise payload
                    self._items.extend(payload)
                    continue
                if self._total is not None and self._delivered >= self._total:
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                if not checked:
                    _check_not_in_loop("IMapIterator.next()")
                    checked = True
                self._cond.wait(remaining)

    def _take(self) -> tuple[bool, Any] | None:
        if self._ordered:
            outcome = self._arrived.pop(self._next_index, None)
            if outcome is not None:
                self._next_index += 1
        else:
            outcome = self._queue.popleft() if self._queue else None
        if outcome is not None:
            self._delivered += 1
        return outcome

    # -- fed by the pool's handler thread ------------------------------------------------------
    def _wants_more(self, submitted: int, unbounded: bool) -> bool:
        with self._cond:
            return unbounded or submitted - self._delivered < self._window

    def _put(self, index: int, outcome: tuple[bool, Any]) -> None:
        with self._cond:
            if self._ordered:
                self._arrived[index] = outcome
            else:
                self._queue.append(outcome)
            self._cond.notify_all()

    def _chunk_done(self, index: int, values: list[Any]) -> None:
        self._put(index, (True, values))

    def _chunk_failed(self, index: int, error: BaseException) -> None:
        self._put(index, (False, error))

    def _set_total(self, total: int) -> None:
        with self._cond:
            self._total = total
            self._cond.notify_all()

    def _abort(self, error: BaseException, submitted: int) -> None:
        with self._cond:
            if self._total is not None:
                return
        self._put(submitted, (False, error))
        self._set_total(submitted + 1)


# -- the pool ------------------------------------------------------------------------------------
class _Job:
    """One call's chunks (pulled lazily) and where their results go."""

    def __init__(self, chunks: Iterator[list[_Item]], func: Any,
                 sink: AsyncResult | IMapIterator) -> None:
        self.chunks = chunks
        self.func = func
        # An imap iterator the caller dropped needs no more results: hold it weakly. An
        # AsyncResult is held, so apply_async(..., callback=cb) alone still calls cb.
        self._sink: Any = weakref.ref(sink) if isinstance(sink, IMapIterator) else sink
        self.submitted = 0

    @property
    def sink(self) -> AsyncResult | IMapIterator | None:
        return self._sink() if isinstance(self._sink, weakref.ref) else self._sink


def _chunked(items: Iterable[_Item], size: int) -> Iterator[list[_Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _check_chunksize(chunksize: Any) -> int:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
    return chunksize


class Pool:
    """A pool of ``processes`` parallel workers: ``multiprocessing.Pool``'s interface.

    Args:
        processes: how many chunks run at once (default: the runtime's CPUs; more than its
            CPUs is a ``ValueError``, as in Ray).
        initializer, initargs: run ``initializer(*initargs)`` once in each worker process
            before its first item of this pool.
        maxtasksperchild: a worker process exits after this many chunks of pool work (a fresh
            one takes its place and runs the initializer again).
        context: accepted and ignored (with a warning), as in Ray.
        ray_address: when aioray is not initialized yet, ``init(address=ray_address)`` (for
            instance ``"auto"`` for the Ray backend); otherwise ``init(num_cpus=processes)``.
        ray_remote_args: task options for the chunks (``num_cpus``, ``max_retries``, ...).
    """

    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: Mapping[str, Any] | None = None) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
                isinstance(maxtasksperchild, bool) or not isinstance(maxtasksperchild, int)
                or maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if context is not None:
            warnings.warn("The 'context' argument of Pool is not supported by aioray and is "
                          "ignored.", stacklevel=2)
        if not aioray.is_initialized():
            if ray_address is not None:
                aioray.init(address=ray_address)
            else:
                aioray.init(num_cpus=processes)
        options: dict[str, Any] = {"max_retries": 0, **(ray_remote_args or {})}
        if maxtasksperchild is not None:
            options["max_calls"] = maxtasksperchild
        cpus = aioray.cluster_resources().get("CPU", 0)
        if processes is None:
            processes = max(1, int(cpus))
        per_task = options.get("num_cpus", 1) or 0
        if processes * per_task > cpus:
            raise ValueError(
                f"Tried to start a pool with {processes} processes, but there are only "
                f"{cpus:g} CPUs in this aioray runtime.")
        self._processes = processes
        self._id = uuid.uuid4().hex
        self._task = _run_chunk_task.options(**options)
        self._setup = aioray.put((self._id, initializer, tuple(initargs)))
        self._lock = threading.Lock()
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._handler: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._state = "RUN"
        # Owned by the handler thread:
        self._jobs: deque[_Job] = deque()
        self._inflight: dict[Any, tuple[_Job, int]] = {}
        self._unbounded = False

    def __repr__(self) -> str:
        return f"<aioray.util.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    def __reduce__(self) -> Any:
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled")

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- the stdlib API ------------------------------------------------------------------------
    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (),
              kwds: Mapping[str, Any] | None = None, *,
              kwargs: Mapping[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)`` in a worker; blocks for the result (``kwargs=`` is Ray's
        spelling of ``kwds=``)."""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (),
                    kwds: Mapping[str, Any] | None = None,
                    callback: Callable[[Any], object] | None = None,
                    error_callback: Callable[[BaseException], object] | None = None, *,
                    kwargs: Mapping[str, Any] | None = None) -> AsyncResult:
        """``func(*args, **kwds)`` in a worker; returns an :class:`AsyncResult`. ``callback``
        gets the value, ``error_callback`` the exception (in the pool's handler thread)."""
        if kwds is not None and kwargs is not None:
            raise TypeError("apply_async() takes kwds or kwargs, not both")
        kw = kwargs if kwargs is not None else kwds
        item: _Item = (tuple(args or ()), dict(kw) if kw else None)
        result = AsyncResult(True, callback, error_callback)
        self._submit(_Job(iter([[item]]), func, result))
        return result

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any],
            chunksize: int | None = None) -> list[Any]:
        """``[func(x) for x in iterable]`` in parallel, in order."""
        return cast(list[Any], self._map_async(func, iterable, chunksize, False, None, None).get())

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: int | None = None,
                  callback: Callable[[Any], object] | None = None,
                  error_callback: Callable[[BaseException], object] | None = None,
                  ) -> AsyncResult:
        """Like :meth:`map`, returning an :class:`AsyncResult` (``callback`` gets the list)."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None) -> list[Any]:
        """``[func(*args) for args in iterable]`` in parallel, in order."""
        return cast(list[Any], self._map_async(func, iterable, chunksize, True, None, None).get())

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[Any], object] | None = None,
                      error_callback: Callable[[BaseException], object] | None = None,
                      ) -> AsyncResult:
        """Like :meth:`starmap`, returning an :class:`AsyncResult`."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int = 1) -> IMapIterator:
        """Results of ``func(x)`` one by one, in order, as they become available."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> IMapIterator:
        """Like :meth:`imap`, in the order the chunks finish."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def close(self) -> None:
        """Accept no more work; what was submitted still runs (``join()`` waits for it)."""
        with self._lock:
            if self._state == "RUN":
                self._state = "CLOSE"
        self._post(("close",))

    def terminate(self) -> None:
        """Accept no more work and cancel what is in flight or queued (their results raise
        ``TaskCancelledError``); returns once the pool is idle (at once when called from a
        callback or on a running event loop)."""
        with self._lock:
            self._state = "TERMINATE"
        self._post(("terminate",))
        # Not from a callback (the handler thread) nor on a running event loop (which may be
        # the one the cancellations need): there it returns at once, the pool idles soon after.
        if threading.current_thread() is not self._handler and not _in_running_loop():
            self._idle.wait()

    def join(self) -> None:
        """Wait until all submitted work is done; call ``close()`` or ``terminate()`` first."""
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        if threading.current_thread() is self._handler:
            raise RuntimeError("Pool.join() cannot be called from a pool callback")
        if not self._idle.is_set():
            _check_not_in_loop("Pool.join()")
            self._idle.wait()

    # -- submission ----------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._state != "RUN":
            raise ValueError("Pool not running")

    def _map_async(self, func: Callable[..., Any], iterable: Iterable[Any],
                   chunksize: int | None, star: bool,
                   callback: Callable[[Any], object] | None,
                   error_callback: Callable[[BaseException], object] | None) -> AsyncResult:
        self._check_running()
        values = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(values), self._processes * 4)
            chunksize = max(1, chunksize + bool(extra))
        chunksize = _check_chunksize(chunksize)
        items: list[_Item] = [((*args,), None) if star else ((args,), None)
                              for args in values]
        result = AsyncResult(False, callback, error_callback)
        func_arg = aioray.put(func) if len(items) > chunksize else func
        self._submit(_Job(_chunked(items, chunksize), func_arg, result))
        return result

    def _imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
              *, ordered: bool) -> IMapIterator:
        self._check_running()
        chunksize = _check_chunksize(chunksize)
        it = IMapIterator(self, ordered, window=2 * self._processes)
        items = (((x,), None) for x in iterable)
        self._submit(_Job(_chunked(items, chunksize), aioray.put(func), it))
        return it

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._check_running()
            self._post_locked(("job", job))

    def _post(self, event: tuple[Any, ...]) -> None:
        with self._lock:
            self._post_locked(event)

    def _post_locked(self, event: tuple[Any, ...]) -> None:
        if self._handler is None and event[0] in ("more",):
            return  # nothing is waiting for room
        self._events.put(event)
        if self._handler is None:
            self._idle.clear()
            self._handler = threading.Thread(target=self._handle_events, daemon=True,
                                             name=f"aioray-pool-{self._id[:8]}")
            self._handler.start()

    # -- the handler thread --------------------------------------------------------------------
    def _handle_events(self) -> None:
        while True:
            try:
                self._dispatch()
            except BaseException as e:  # a bug here must not hang the callers: fail them
                self._fail_all(e)
            with self._lock:
                if not self._inflight and not self._jobs and self._events.empty():
                    self._handler = None
                    self._idle.set()
                    return
            event = self._events.get()
            kind = event[0]
            if kind == "job":
                if self._state == "TERMINATE":
                    self._abort_job(event[1])
                else:
                    self._jobs.append(event[1])
            elif kind == "done":
                self._chunk_finished(event[1], event[2])
            elif kind == "close":
                self._unbounded = True
            elif kind == "terminate":
                self._terminate_now()

    def _dispatch(self) -> None:
        while len(self._inflight) < self._processes:
            job = self._next_job()
            if job is None:
                return
            try:
                chunk = next(job.chunks, None)
            except Exception as e:  # the caller's iterable raised: the error takes its place
                chunk = None
                sink = job.sink
                if sink is not None:
                    sink._chunk_failed(job.submitted, e)
                job.submitted += 1
            if chunk is None:
                self._jobs.remove(job)
                sink = job.sink
                if sink is not None:
                    sink._set_total(job.submitted)
                continue
            index = job.submitted
            job.submitted += 1
            try:
                ref = self._task.remote(self._setup, job.func, chunk)
            except Exception as e:  # not submittable (an argument that can't be pickled...)
                self._jobs.remove(job)
                sink = job.sink
                if sink is not None:
                    sink._chunk_failed(index, e)
                    sink._set_total(job.submitted)
                continue
            self._inflight[ref] = (job, index)
            ref.future().add_done_callback(
                lambda fut, ref=ref: self._events.put(("done", ref, fut)))

    def _next_job(self) -> _Job | None:
        for job in list(self._jobs):
            sink = job.sink
            if sink is None:  # an imap iterator nobody holds any more
                self._jobs.remove(job)
                continue
            if sink._wants_more(job.submitted, self._unbounded):
                return job
            if isinstance(sink, AsyncResult):  # finished (failed): submit no more of it
                self._jobs.remove(job)
        return None

    def _chunk_finished(self, ref: Any, fut: Any) -> None:
        job, index = self._inflight.pop(ref)
        sink = job.sink
        if sink is None:
            return
        try:
            values = fut.result()
        except BaseException as e:
            sink._chunk_failed(index, _unwrap(e))
        else:
            sink._chunk_done(index, values)

    def _terminate_now(self) -> None:
        for job in list(self._jobs):
            self._abort_job(job)
        self._jobs.clear()
        for ref in list(self._inflight):
            try:
                aioray.cancel(ref, force=True)
            except Exception:  # already finished, or the runtime is gone: its result comes
                pass

    def _abort_job(self, job: _Job) -> None:
        sink = job.sink
        if sink is not None:
            sink._abort(TaskCancelledError(message="The pool was terminated before this "
                                           "work ran."), job.submitted)

    def _fail_all(self, error: BaseException) -> None:
        for job in list(self._jobs):
            sink = job.sink
            if sink is not None:
                sink._abort(error, job.submitted)
        self._jobs.clear()

