#!/usr/bin/env python3
"""The benchmark workloads. One *group* runs per process; the same code runs on aioray and Ray.

``run.py`` starts ``python suite.py --impl aioray|ray --group NAME --out FILE``; every figure is
appended to FILE as one JSON line ``{"key", "impl", "unit", "samples", "note"}`` (``impl`` is
``aioray``, ``ray`` or ``floor``). Raw floors (asyncio, ProcessPoolExecutor, ThreadPoolExecutor,
memcpy) are measured only in the aioray run, interleaved rep by rep with the aioray workload they
are compared with, so machine noise hits both alike. Workloads are written against Ray's API
(``R`` is the imported ``aioray`` or ``ray`` module); aioray-only forms are skipped on Ray.

Units: ``ops/s`` (higher is better), ``s`` (lower), ``x`` (higher), ``MB`` (lower), ``MB/s``
(higher).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import gc
import glob
import importlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

OUT = ""
IMPL = "aioray"
QUICK = False
R: Any = None  # the aioray or ray module
perf = time.perf_counter


# -- recording --------------------------------------------------------------------------------
def _write(rec: dict[str, Any]) -> None:
    with open(OUT, "a") as f:
        f.write(json.dumps(rec) + "\n")


def record(key: str, impl: str, unit: str, samples: list[float], note: str = "",
           beside: str = "") -> None:
    """``beside``: for a floor, the workload it was interleaved with."""
    _write({"key": key, "impl": impl, "unit": unit, "samples": samples, "note": note,
            "beside": beside})
    med = statistics.median(samples) if samples else float("nan")
    print(f"  {impl:6} {key:28} {med:14.6g} {unit}", file=sys.stderr, flush=True)


def record_error(key: str, impl: str, err: BaseException | str) -> None:
    msg = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg).strip()  # Ray colours its errors
    lines = [line for line in msg.splitlines() if line.strip()]
    if len(lines) > 1 and not isinstance(err, str):  # Ray: "RayTaskError(...): ray::f()" ...
        msg = f"{lines[0]} ... {lines[-1].strip()}"
    msg = (msg.splitlines()[0] if msg else type(err).__name__)[:200]
    _write({"key": key, "impl": impl, "error": msg})
    print(f"  {impl:6} {key:28} ERROR {msg}", file=sys.stderr, flush=True)


def started(key: str) -> None:
    """Written first, so a workload that hangs (and gets its group killed) is named."""
    _write({"key": key, "impl": IMPL, "started": True})


def n_(full: int, quick: int | None = None) -> int:
    return (quick if quick is not None else max(1, full // 4)) if QUICK else full


def reps_(full: int = 3) -> int:
    return 1 if QUICK else full


# -- measuring: alternate floor and impl reps ---------------------------------------------------
def rate(n: int, body: Callable[[int], Any]) -> Callable[[], float]:
    """A sample function returning ``n`` / seconds taken by ``body(n)``."""
    def sample() -> float:
        t = perf()
        body(n)
        return n / (perf() - t)
    return sample


def seconds(body: Callable[[], Any]) -> Callable[[], float]:
    def sample() -> float:
        t = perf()
        body()
        return perf() - t
    return sample


def measure(key: str, unit: str, impl: Callable[[], float] | None,
            floor_key: str | None = None, floor: Callable[[], float] | None = None,
            reps: int = 3, warm: Callable[[], Any] | None = None) -> None:
    """Median-of-``reps`` samples of ``impl`` (and of ``floor``, only in the aioray run)."""
    do_floor = floor is not None and IMPL == "aioray"
    started(key)
    try:
        if warm is not None:
            warm()
        fs: list[float] = []
        xs: list[float] = []
        for _ in range(reps):
            if do_floor:
                assert floor is not None
                fs.append(floor())
            if impl is not None:
                gc.collect()
                xs.append(impl())
        if do_floor:
            assert floor_key is not None
            record(floor_key, "floor", unit, fs, beside=key)
        if impl is not None:
            record(key, IMPL, unit, xs)
    except Exception as e:
        if os.environ.get("AIORAY_BENCH_DEBUG"):
            traceback.print_exc()
        record_error(key, IMPL, e)


async def ameasure(key: str, unit: str, impl: Callable[[], Awaitable[float]] | None,
                   floor_key: str | None = None,
                   floor: Callable[[], Awaitable[float]] | None = None,
                   reps: int = 3, warm: Callable[[], Awaitable[Any]] | None = None,
                   timeout: float = 60.0) -> None:
    do_floor = floor is not None and IMPL == "aioray"
    started(key)
    try:
        if warm is not None:
            await asyncio.wait_for(warm(), timeout)
        fs: list[float] = []
        xs: list[float] = []
        for _ in range(reps):
            if do_floor:
                assert floor is not None
                fs.append(await floor())
            if impl is not None:
                gc.collect()
                xs.append(await asyncio.wait_for(impl(), timeout))
        if do_floor:
            assert floor_key is not None
            record(floor_key, "floor", unit, fs, beside=key)
        if impl is not None:
            record(key, IMPL, unit, xs)
    except Exception as e:
        if os.environ.get("AIORAY_BENCH_DEBUG"):
            traceback.print_exc()
        record_error(key, IMPL, e if str(e) or not isinstance(e, TimeoutError)
                     else f"timed out after {timeout:.0f} s")


def arate(n: int, body: Callable[[int], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
    async def sample() -> float:
        t = perf()
        await body(n)
        return n / (perf() - t)
    return sample


# -- plain functions for the raw floors (module level: ProcessPoolExecutor pickles by name) ----
def noop() -> None:
    return None


def take_array(a: Any) -> int:
    return int(a.shape[0])


def spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i
    return x


def sleep_2ms() -> None:
    time.sleep(0.002)


async def anoop_coro() -> None:
    return None


def _warm_ppe(ppe: cf.ProcessPoolExecutor) -> None:
    # Forks both workers now, before the runtime starts its threads.
    for f in [ppe.submit(noop) for _ in range(4)]:
        f.result()


def init_runtime() -> None:
    if IMPL == "ray":
        R.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
               logging_level="ERROR")
    else:
        R.init(num_cpus=2)


# -- remote definitions (same code for both) -----------------------------------------------------
class _Rejected:
    """Stands for a remote function the implementation refused to define (Ray: async def
    tasks); any use raises that refusal, which the workload records as its result."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"{IMPL} rejects this task: {self.error}")


def _maybe_remote(fn: Callable[..., Any]) -> Any:
    try:
        return R.remote(fn)
    except (ValueError, TypeError) as e:
        return _Rejected(e)


def defs() -> SimpleNamespace:
    @R.remote
    def rnoop() -> None:
        return None

    async def _anoop() -> None:
        return None

    anoop = _maybe_remote(_anoop)

    @R.remote
    def rtake(a: Any) -> int:
        return int(a.shape[0])

    @R.remote
    def rbytes(n: int) -> bytes:
        return b"x" * n

    @R.remote
    def rarray(n: int) -> Any:
        import numpy as np
        return np.full(n, 120, dtype=np.uint8)

    @R.remote
    def rspin(n: int) -> int:
        x = 0
        for i in range(n):
            x += i
        return x

    @R.remote
    def inner() -> int:
        return 1

    @R.remote
    def outer() -> int:
        return R.get(inner.remote())  # type: ignore[no-any-return]

    async def _agen(n: int) -> Any:
        for i in range(n):
            yield i

    agen = _maybe_remote(_agen)

    @R.remote
    def pgen(n: int) -> Any:
        # not `yield from`: Ray 2.60 fails generator tasks written that way
        for i in range(n):  # noqa: UP028
            yield i

    @R.remote
    def gen3() -> Any:
        yield 1
        yield 2
        yield 3

    @R.remote
    class SyncActor:
        def f(self) -> None:
            return None

        def sleepy(self) -> None:
            time.sleep(0.002)

        def gen(self, n: int) -> Any:
            for i in range(n):  # noqa: UP028 (see pgen)
                yield i

        def ping(self) -> int:
            return 1

        def spin(self, n: int) -> int:
            x = 0
            for i in range(n):
                x += i
            return x

    @R.remote
    class AsyncActor:
        async def f(self) -> None:
            return None

        async def gen(self, n: int) -> Any:
            for i in range(n):
                yield i

    @R.remote
    def caller(h: Any, n: int) -> int:
        return len(R.get([h.f.remote() for _ in range(n)]))

    return SimpleNamespace(**{k: v for k, v in locals().items() if not k.startswith("_")})


# ================================================================================================
# groups
# ================================================================================================
def group_init() -> None:
    """``import X; X.init()`` in a fresh interpreter (interpreter start-up excluded)."""
    if IMPL == "ray":
        code = ("import time; t = time.perf_counter(); import ray; ray.init(); "
                "print('T', time.perf_counter() - t, flush=True); ray.shutdown()")
        reps = 1 if QUICK else 2
    else:
        code = ("import time; t = time.perf_counter(); import aioray; aioray.init(); "
                "print('T', time.perf_counter() - t, flush=True)")
        reps = 3 if QUICK else 7

    def once() -> float:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        return float(next(line for line in out.splitlines() if line.startswith("T "))[2:])

    measure("init", "s", once, reps=reps, warm=once)  # the warm-up fills the bytecode cache


def group_core_sync() -> None:
    import numpy as np
    ppe = cf.ProcessPoolExecutor(2)
    _warm_ppe(ppe)
    init_runtime()
    d = defs()

    # process task round trip / batch
    n = n_(300)
    measure("proc_rt", "ops/s",
            rate(n, lambda n: [R.get(d.rnoop.remote()) for _ in range(n)]),
            "ppe_rt", rate(n, lambda n: [ppe.submit(noop).result() for _ in range(n)]),
            reps=reps_(), warm=lambda: R.get([d.rnoop.remote() for _ in range(20)]))
    n = n_(2000)
    measure("proc_batch", "ops/s",
            rate(n, lambda n: R.get([d.rnoop.remote() for _ in range(n)])),
            "ppe_batch", rate(n, lambda n: [f.result() for f in
                                            [ppe.submit(noop) for _ in range(n)]]),
            reps=reps_())

    # async tasks submitted from a sync driver thread (hop to the loop)
    n = n_(10000)
    measure("async_batch_sync", "ops/s",
            rate(n, lambda n: R.get([d.anoop.remote() for _ in range(n)])), reps=reps_(),
            warm=lambda: R.get([d.anoop.remote() for _ in range(100)]))

    # put/get
    n = n_(10000)
    measure("put_get_small", "ops/s", rate(n, lambda n: [R.get(R.put(i)) for i in range(n)]),
            reps=reps_())
    arr = np.arange(12_500_000, dtype=np.float64)  # 100 MB
    measure("put_get_100mb", "s", seconds(lambda: R.get(R.put(arr))),
            "memcpy_100mb", seconds(lambda: arr.copy()), reps=reps_(5),
            warm=lambda: R.get(R.put(arr)))

    # put alone (the ref dropped at once) vs one memcpy into an already mapped buffer
    dst = np.empty_like(arr)
    np.copyto(dst, arr)
    measure("put_100mb", "s", seconds(lambda: R.put(arr)),
            "memcpy_mapped_100mb", seconds(lambda: np.copyto(dst, arr)), reps=reps_(5),
            warm=lambda: [R.put(arr) for _ in range(2)])

    # a 100 MB array ref passed to a process task vs the pickled array through a PPE
    ref = R.put(arr)
    measure("arr_to_proc", "s", seconds(lambda: R.get(d.rtake.remote(ref))),
            "ppe_pickled_100mb", seconds(lambda: ppe.submit(take_array, arr).result()),
            reps=reps_(5), warm=lambda: R.get(d.rtake.remote(ref)))
    ref = None  # frees the array's shared memory

    # large results from a process task: bytes (any buffer type) beside a numpy array
    for label, size in (("64mb", 64 << 20), ("1gb", 1 << 30)):
        measure(f"bytes_result_{label}", "s",
                seconds(lambda size=size: R.get(d.rbytes.remote(size))),
                f"numpy_result_{label}", seconds(lambda size=size: R.get(d.rarray.remote(size))),
                reps=reps_(3), warm=lambda size=size: R.get(d.rbytes.remote(size)))

    # wait loop over 500 tasks, one ready at a time
    def wait_loop(n: int) -> None:
        refs = [d.rnoop.remote() for _ in range(n)]
        while refs:
            _, refs = R.wait(refs, num_returns=1)

    def cf_wait_loop(n: int) -> None:
        fs = {ppe.submit(noop) for _ in range(n)}
        while fs:
            _, fs = cf.wait(fs, return_when=cf.FIRST_COMPLETED)

    measure("wait_500", "ops/s", rate(500, wait_loop), "ppe_wait_500", rate(500, cf_wait_loop),
            reps=reps_())

    # nested: a process task that submits and gets a child process task
    n = n_(100, 20)
    measure("nested", "ops/s", rate(n, lambda n: [R.get(d.outer.remote()) for _ in range(n)]),
            reps=reps_(), warm=lambda: R.get([d.outer.remote() for _ in range(4)]))

    # CPU-parallel speedup of 4 pure-Python tasks on 2 cores
    t = perf()
    spin(2_000_000)
    work = max(100_000, int(2_000_000 * (0.1 if QUICK else 0.3) / (perf() - t)))

    def speedup(parallel: Callable[[], Any]) -> Callable[[], float]:
        def sample() -> float:
            t0 = perf()
            for _ in range(4):
                spin(work)
            serial = perf() - t0
            t1 = perf()
            parallel()
            return serial / (perf() - t1)
        return sample

    measure("cpu_speedup", "x", speedup(lambda: R.get([d.rspin.remote(work) for _ in range(4)])),
            "ppe_speedup", speedup(lambda: list(ppe.map(spin, [work] * 4))), reps=reps_())
    R.shutdown()
    ppe.shutdown()


def group_core_async() -> None:
    async def main() -> None:
        init_runtime()  # adopts this loop (aioray); Ray's driver just runs inside it
        d = defs()
        has_get_async = hasattr(R, "get_async")

        async def floor_rt(n: int) -> None:
            for _ in range(n):
                await asyncio.create_task(anoop_coro())

        async def floor_batch(n: int) -> None:
            await asyncio.gather(*[asyncio.create_task(anoop_coro()) for _ in range(n)])

        async def rt(n: int) -> None:
            for _ in range(n):
                await d.anoop.remote()

        async def batch_gather(n: int) -> None:
            await asyncio.gather(*[d.anoop.remote() for _ in range(n)])

        async def batch_get_async(n: int) -> None:
            await R.get_async([d.anoop.remote() for _ in range(n)])

        async def warm() -> None:
            await asyncio.gather(*[d.anoop.remote() for _ in range(50)])

        n = n_(3000)
        await ameasure("async_rt", "ops/s", arate(n, rt), "asyncio_rt", arate(n, floor_rt),
                       reps=reps_(), warm=warm)
        n = n_(20000)
        await ameasure("async_batch_gather", "ops/s", arate(n, batch_gather),
                       "asyncio_batch", arate(n, floor_batch), reps=reps_())
        if has_get_async:
            await ameasure("async_batch_get_async", "ops/s", arate(n, batch_get_async),
                           "asyncio_batch", arate(n, floor_batch), reps=reps_())
        else:
            record_error("async_batch_get_async", IMPL, f"n/a: {IMPL} has no get_async")

        # async actor calls
        a = d.AsyncActor.remote()
        await a.f.remote()

        async def actor_gather(n: int) -> None:
            await asyncio.gather(*[a.f.remote() for _ in range(n)])

        async def actor_get_async(n: int) -> None:
            await R.get_async([a.f.remote() for _ in range(n)])

        n = n_(10000)
        await ameasure("async_actor_batch", "ops/s", arate(n, actor_gather),
                       "asyncio_batch", arate(n, floor_batch), reps=reps_())
        if has_get_async:
            await ameasure("async_actor_batch_get_async", "ops/s", arate(n, actor_get_async),
                           "asyncio_batch", arate(n, floor_batch), reps=reps_())
        else:
            record_error("async_actor_batch_get_async", IMPL, f"n/a: {IMPL} has no get_async")

        # generators consumed with async for + await
        async def consume(gen: Any) -> None:
            async for ref in gen:
                await ref

        n = n_(20000)
        await ameasure("gen_loop_async", "ops/s", arate(n, lambda n: consume(d.agen.remote(n))),
                       "asyncio_batch", arate(n, floor_batch), reps=reps_(), timeout=30)
        n = n_(5000)
        await ameasure("gen_proc_async", "ops/s", arate(n, lambda n: consume(d.pgen.remote(n))),
                       reps=reps_(), warm=lambda: consume(d.pgen.remote(10)))
        s = d.SyncActor.remote()
        await ameasure("gen_actor_async", "ops/s",
                       arate(n, lambda n: consume(s.gen.remote(n))), reps=reps_(),
                       warm=lambda: consume(s.gen.remote(10)))
        await ameasure("gen_async_actor_async", "ops/s",
                       arate(n, lambda n: consume(a.gen.remote(n))), reps=reps_(),
                       warm=lambda: consume(a.gen.remote(10)))
        R.shutdown()

    asyncio.run(main())


def group_actors() -> None:
    tpe1 = cf.ThreadPoolExecutor(1)
    tpe8 = cf.ThreadPoolExecutor(8)
    init_runtime()
    d = defs()
    a = d.SyncActor.remote()
    R.get(a.f.remote())

    # A sync actor: its own worker process on aioray (the default) and on Ray.
    n = n_(1000)
    measure("sync_actor_rt", "ops/s", rate(n, lambda n: [R.get(a.f.remote()) for _ in range(n)]),
            reps=reps_())
    n = n_(5000)
    measure("sync_actor_batch", "ops/s",
            rate(n, lambda n: R.get([a.f.remote() for _ in range(n)])), reps=reps_())

    # aioray's executor="thread" actor: a thread of the driver (Ray has no such placement).
    if IMPL == "aioray":
        th = d.SyncActor.options(executor="thread").remote()
        R.get(th.f.remote())
        n = n_(1000)
        measure("thread_actor_rt", "ops/s",
                rate(n, lambda n: [R.get(th.f.remote()) for _ in range(n)]),
                "tpe_rt", rate(n, lambda n: [tpe1.submit(noop).result() for _ in range(n)]),
                reps=reps_())
        n = n_(5000)
        measure("thread_actor_batch", "ops/s",
                rate(n, lambda n: R.get([th.f.remote() for _ in range(n)])),
                "tpe_batch", rate(n, lambda n: [f.result() for f in
                                                [tpe1.submit(noop) for _ in range(n)]]),
                reps=reps_())
    else:
        for key in ("thread_actor_rt", "thread_actor_batch"):
            record_error(key, IMPL, f"n/a: {IMPL} has no in-driver thread actors")

    # Two CPU-bound actors against one doing both jobs (2 cores): parallel only if each
    # actor has its own interpreter.
    t0 = perf()
    spin(2_000_000)
    work = max(100_000, int(2_000_000 * (0.1 if QUICK else 0.4) / (perf() - t0)))
    pair = [d.SyncActor.options(num_cpus=0).remote() for _ in range(2)]
    R.get([p.spin.remote(1000) for p in pair])

    def cpu_speedup() -> float:
        t1 = perf()
        R.get([pair[0].spin.remote(work), pair[0].spin.remote(work)])
        one = perf() - t1
        t2 = perf()
        R.get([pair[0].spin.remote(work), pair[1].spin.remote(work)])
        return one / (perf() - t2)
    measure("cpu_actors_speedup", "x", cpu_speedup, reps=reps_())
    for p in pair:
        R.kill(p)

    t = d.SyncActor.options(max_concurrency=8).remote()
    R.get(t.f.remote())
    n = n_(800, 200)
    measure("threaded_actor", "ops/s",
            rate(n, lambda n: R.get([t.sleepy.remote() for _ in range(n)])),
            "tpe8_sleep", rate(n, lambda n: [f.result() for f in
                                             [tpe8.submit(sleep_2ms) for _ in range(n)]]),
            reps=reps_())

    many = [d.SyncActor.remote() for _ in range(8)]
    R.get([h.f.remote() for h in many])
    n = n_(4000)
    measure("actor_1_to_n", "ops/s",
            rate(n, lambda n: R.get([many[i % 8].f.remote() for i in range(n)])), reps=reps_())
    n = n_(2000, 400)
    measure("actor_n_to_1", "ops/s",
            rate(n, lambda n: R.get([d.caller.remote(a, n // 4) for _ in range(4)])),
            reps=reps_(), warm=lambda: R.get([d.caller.remote(a, 5) for _ in range(2)]))

    n = n_(200, 50) if IMPL == "aioray" else (3 if QUICK else 8)
    P = d.SyncActor.options(num_cpus=0)

    def create(n: int) -> None:
        hs = [P.remote() for _ in range(n)]
        R.get([h.ping.remote() for h in hs])
        for h in hs:
            R.kill(h)

    measure("actor_create", "ops/s", rate(n, create), reps=reps_())
    R.shutdown()
    tpe1.shutdown()
    tpe8.shutdown()


def group_generators() -> None:
    ppe = cf.ProcessPoolExecutor(2)
    _warm_ppe(ppe)
    init_runtime()
    d = defs()

    def next_get(gen: Any) -> None:
        for ref in gen:
            R.get(ref)

    n = n_(10000)
    measure("gen_loop_next", "ops/s", rate(n, lambda n: next_get(d.agen.remote(n))),
            reps=reps_())
    n = n_(5000)
    measure("gen_proc_next", "ops/s", rate(n, lambda n: next_get(d.pgen.remote(n))),
            reps=reps_(), warm=lambda: next_get(d.pgen.remote(10)))
    s = d.SyncActor.remote()
    measure("gen_actor_next", "ops/s", rate(n, lambda n: next_get(s.gen.remote(n))),
            reps=reps_(), warm=lambda: next_get(s.gen.remote(10)))

    def first_item() -> float:
        t = perf()
        g = d.gen3.remote()
        R.get(next(g))
        dt = perf() - t
        next_get(g)
        return dt

    measure("first_item", "s", first_item, "ppe_rt_latency",
            seconds(lambda: ppe.submit(noop).result()), reps=5 if QUICK else 15,
            warm=lambda: [first_item() for _ in range(3)])
    R.shutdown()
    ppe.shutdown()


def group_rss() -> None:
    """Peak memory of a generator yielding 50 x 100 MB arrays, consumed one at a time, with
    ``_generator_backpressure_num_objects=2``."""
    import numpy as np
    import psutil
    init_runtime()
    d = defs()
    R.get(d.rnoop.remote())  # a worker is up: part of the baseline
    k = 10 if QUICK else 50
    bp = 2

    @R.remote(_generator_backpressure_num_objects=bp)
    def big(k: int) -> Any:
        for i in range(k):
            yield np.full(12_500_000, i, dtype=np.float64)

    me = psutil.Process()
    shm_glob = f"/dev/shm/aioray-{os.getpid()}-*"

    def footprint() -> tuple[float, float]:
        """(driver + children private memory + aioray shared memory, driver RSS) in bytes."""
        anon = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                mi = p.memory_info()
                anon += mi.rss - mi.shared
            except psutil.Error:
                pass
        shm = 0
        for f in glob.glob(shm_glob):
            try:
                shm += os.stat(f).st_blocks * 512
            except OSError:
                pass
        return anon + shm, me.memory_info().rss

    base_total, base_rss = footprint()
    peak = [base_total]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], footprint()[0])
            stop.wait(0.01)

    th = threading.Thread(target=sampler, daemon=True)
    started("gen_bp_footprint")
    try:
        th.start()
        t = perf()
        total = 0.0
        for ref in big.remote(k):
            a = R.get(ref)
            total += float(a.sum())  # touch every page, as a real consumer would
            del a, ref
        elapsed = perf() - t
        stop.set()
        th.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        note = f"{k} x 100 MB, backpressure={bp}, {elapsed:.1f} s"
        if IMPL == "aioray":
            record("gen_bp_footprint", IMPL, "MB", [(peak[0] - base_total) / 1e6], note)
        else:
            record_error("gen_bp_footprint", IMPL, "n/a: Ray's object store is one preallocated "
                         "shared-memory file, so this footprint is not comparable")
        record("gen_bp_driver_rss", IMPL, "MB", [(maxrss - base_rss) / 1e6], note)
    except Exception as e:
        stop.set()
        record_error("gen_bp_footprint", IMPL, e)
    R.shutdown()


def group_util() -> None:
    try:
        util = importlib.import_module(f"{IMPL}.util")
        ActorPool = util.ActorPool
        Queue = importlib.import_module(f"{IMPL}.util.queue").Queue
        pgmod = importlib.import_module(f"{IMPL}.util.placement_group")
    except (ImportError, AttributeError) as e:
        for key in ("actorpool_map", "queue_throughput", "pg_rate"):
            record_error(key, IMPL, f"skipped: {IMPL}.util not available ({e})")
        return
    init_runtime()
    d = defs()

    @R.remote
    class Echo:
        def f(self, x: int) -> int:
            return x

    actors = [Echo.remote() for _ in range(2)]
    R.get([h.f.remote(0) for h in actors])
    n = n_(2000)
    measure("actorpool_map", "ops/s",
            rate(n, lambda n: list(ActorPool(actors).map(lambda h, v: h.f.remote(v),
                                                         range(n)))), reps=reps_())

    @R.remote
    def producer(q: Any, n: int) -> None:
        for i in range(n):
            q.put(i)

    @R.remote
    def consumer(q: Any, n: int) -> int:
        for _ in range(n):
            q.get()
        return n

    def queue_run(n: int) -> None:
        q = Queue()
        R.get([producer.remote(q, n), consumer.remote(q, n)])

    n = n_(1000, 200)
    measure("queue_throughput", "ops/s", rate(n, queue_run), reps=reps_(),
            warm=lambda: queue_run(10))

    def pg_cycle(n: int) -> None:
        for _ in range(n):
            pg = pgmod.placement_group([{"CPU": 1}])
            R.get(pg.ready())
            pgmod.remove_placement_group(pg)

    n = n_(200, 50) if IMPL == "aioray" else n_(20, 5)
    measure("pg_rate", "ops/s", rate(n, pg_cycle), reps=reps_())
    del d
    R.shutdown()


def group_watchdog() -> None:
    """The loop watchdog's cost (issue 20; aioray only): the same async actor call batch with
    the watchdog on (threshold 1 s, the default) and off, interleaved."""
    if IMPL != "aioray":
        record_error("watchdog_on", IMPL, "n/a: aioray's loop watchdog")
        for key in ("state_on_actor", "state_on_task"):
            record_error(key, IMPL, "n/a: aioray's state records")
        return
    runtime = importlib.import_module("aioray._engine.runtime")
    watchdog = importlib.import_module("aioray._engine.watchdog")

    async def main() -> None:
        init_runtime()
        rt = runtime.current_runtime()
        d = defs()
        a = d.AsyncActor.remote()
        await a.f.remote()

        def switch(on: bool) -> None:
            if on and rt.watchdog is None:
                rt.watchdog = watchdog.LoopWatchdog(rt.loop, rt.loop_thread_id,
                                                    watchdog.DEFAULT_THRESHOLD)
                rt.watchdog.start()
            elif not on and rt.watchdog is not None:
                rt.watchdog.stop()
                rt.watchdog = None

        async def calls(n: int, on: bool) -> None:
            switch(on)
            await R.get_async([a.f.remote() for _ in range(n)])

        n = n_(20000)
        await ameasure("watchdog_on", "ops/s", arate(n, lambda n: calls(n, True)),
                       "watchdog_off", arate(n, lambda n: calls(n, False)), reps=reps_(7),
                       warm=lambda: calls(1000, True))

        # The state API's records of finished tasks and calls (issue 16), on and off.
        @R.remote
        async def task() -> None:
            return None

        async def recorded(n: int, on: bool, actor: bool) -> None:
            rt.state.on = on
            await R.get_async([a.f.remote() if actor else task.remote() for _ in range(n)])

        for actor in (True, False):
            key = "state_on_actor" if actor else "state_on_task"
            await ameasure(key, "ops/s", arate(n, lambda n, b=actor: recorded(n, True, b)),
                           key.replace("_on_", "_off_"),
                           arate(n, lambda n, b=actor: recorded(n, False, b)), reps=reps_(7),
                           warm=lambda b=actor: recorded(1000, True, b))
        rt.state.on = True
        R.shutdown()

    asyncio.run(main())


def _disk_write_mbps(directory: str, size: int) -> float:
    """Sequential write of ``size`` bytes to a new file in ``directory`` (as a spill writes:
    no fsync), in MB/s."""
    chunk = b"\x01" * (8 << 20)
    path = os.path.join(directory, f"bench-disk-{os.getpid()}")
    t = perf()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        done = 0
        while done < size:
            done += os.write(fd, chunk)
    finally:
        os.close(fd)
    took = perf() - t
    os.unlink(path)
    return size / 1e6 / took


def group_objects() -> None:
    """Spilling: a 256 MB store receives 1 GB of 100 MB arrays (aioray only: the figures are
    read from the store's own counters)."""
    import numpy as np
    if IMPL != "aioray":
        for key in ("spill_mbps", "restore_mbps"):
            record_error(key, IMPL, "n/a: aioray's store counters")
        return
    from aioray._objects import shm
    R.init(num_cpus=1, object_store_memory=256 << 20)
    n = 100 << 20
    started("spill_mbps")
    spill: list[float] = []
    restore: list[float] = []
    disk: list[float] = []
    try:
        for rep in range(reps_(3)):
            disk.append(_disk_write_mbps(shm._SPILL_DIR, 512 << 20))
            gc.collect()
            before = shm.describe()
            refs = [R.put(np.full(n, rep * 16 + i, dtype=np.uint8)) for i in range(n_(10, 6))]
            mid = shm.describe()
            spill.append((mid["spilled_bytes"] - before["spilled_bytes"]) / 1e6
                         / (mid["spill_seconds"] - before["spill_seconds"]))
            for i, ref in enumerate(refs[:4]):  # the oldest: all spilled
                a = R.get(ref)
                assert a[0] == rep * 16 + i
                del a
            after = shm.describe()
            restore.append((after["restored_bytes"] - mid["restored_bytes"]) / 1e6
                           / (after["restore_seconds"] - mid["restore_seconds"]))
            del refs, ref
        record("disk_write_mbps", "floor", "MB/s", disk, beside="spill_mbps")
        record("spill_mbps", IMPL, "MB/s", spill)
        record("restore_mbps", IMPL, "MB/s", restore)
    except Exception as e:
        record_error("spill_mbps", IMPL, e)
    finally:
        R.shutdown()


def group_ray_backend() -> None:
    """The Ray backend's own cost (issue 18): the same task and actor workloads through aioray
    on the Ray backend and through plain ``ray``, on one local Ray in this process, interleaved
    rep by rep (plain Ray is the floor). Measured in the aioray pass when Ray is importable."""
    keys = ("rb_task_rt", "rb_task_batch", "rb_actor_rt", "rb_actor_batch")
    if IMPL != "aioray":
        return  # both sides are measured in the aioray pass
    try:
        ray = importlib.import_module("ray")
    except ImportError as e:
        for key in keys:
            record_error(key, IMPL, f"skipped: Ray is not installed ({e})")
        return
    aioray = importlib.import_module("aioray")
    aioray.init(address="local-ray", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote
        def r_noop() -> None:
            return None

        @aioray.remote
        def a_noop() -> None:
            return None

        @ray.remote
        class RActor:
            def f(self) -> None:
                return None

        @aioray.remote
        class AActor:
            def f(self) -> None:
                return None

        ra, aa = RActor.remote(), AActor.remote()

        def warm() -> None:
            ray.get([r_noop.remote() for _ in range(200)] + [ra.f.remote() for _ in range(200)])
            aioray.get([a_noop.remote() for _ in range(200)] + [aa.f.remote() for _ in range(200)])

        def rt(get: Any, call: Callable[[], Any]) -> Callable[[int], None]:
            def body(n: int) -> None:
                for _ in range(n):
                    get(call())
            return body

        def batch(get: Any, call: Callable[[], Any]) -> Callable[[int], None]:
            return lambda n: get([call() for _ in range(n)])

        n_rt, n_batch = n_(300, 100), n_(2000, 500)
        measure("rb_task_rt", "ops/s", rate(n_rt, rt(aioray.get, a_noop.remote)),
                "ray_task_rt", rate(n_rt, rt(ray.get, r_noop.remote)), reps=reps_(7), warm=warm)
        measure("rb_task_batch", "ops/s", rate(n_batch, batch(aioray.get, a_noop.remote)),
                "ray_task_batch", rate(n_batch, batch(ray.get, r_noop.remote)), reps=reps_(7))
        measure("rb_actor_rt", "ops/s", rate(n_rt, rt(aioray.get, aa.f.remote)),
                "ray_actor_rt", rate(n_rt, rt(ray.get, ra.f.remote)), reps=reps_(7))
        measure("rb_actor_batch", "ops/s", rate(n_batch, batch(aioray.get, aa.f.remote)),
                "ray_actor_batch", rate(n_batch, batch(ray.get, ra.f.remote)), reps=reps_(7))
    finally:
        aioray.shutdown()


GROUPS: dict[str, Callable[[], None]] = {
    "objects": group_objects,
    "init": group_init,
    "core_sync": group_core_sync,
    "core_async": group_core_async,
    "actors": group_actors,
    "generators": group_generators,
    "rss": group_rss,
    "util": group_util,
    "watchdog": group_watchdog,
    "ray_backend": group_ray_backend,
}


def main() -> None:
    global OUT, IMPL, QUICK, R
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=("aioray", "ray"), default="aioray")
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    OUT, IMPL, QUICK = a.out, a.impl, a.quick
    if IMPL == "ray":
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if a.group != "init":
        R = importlib.import_module(IMPL)
    GROUPS[a.group]()


if __name__ == "__main__":
    main()
