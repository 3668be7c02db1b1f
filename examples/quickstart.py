"""aioray in one minute: tasks, put/get/wait, an async await, an error.

Run with `make demo`. Replace `import aioray as ray` with `import ray` and it runs on Ray.
"""

import asyncio
import time

import aioray as ray

t0 = time.perf_counter()
ray.init(num_cpus=2)
print(f"init took {1000 * (time.perf_counter() - t0):.1f} ms: {ray.cluster_resources()}")


@ray.remote
def square(x: int) -> int:
    """A sync task: runs in a worker process."""
    return x * x


@ray.remote
async def fetch(i: int) -> str:
    """An async task: runs as a coroutine on aioray's event loop."""
    await asyncio.sleep(0.05)
    return f"page-{i}"


@ray.remote
def fail() -> None:
    raise ValueError("this task failed on purpose")


# Tasks and get
refs = [square.remote(i) for i in range(8)]
print("squares:", ray.get(refs))

# put: store once, pass the ref to many tasks
big = ray.put(list(range(1000)))


@ray.remote
def total(xs: list[int]) -> int:
    return sum(xs)


print("sum of the stored list:", ray.get(total.remote(big)))

# wait: take results as they finish
@ray.remote
def sleepy(s: float) -> float:
    time.sleep(s)
    return s


pending = [sleepy.remote(s) for s in (0.3, 0.1, 0.2)]
ready, pending = ray.wait(pending, num_returns=1)
print("first to finish slept", ray.get(ready[0]), "s;", len(pending), "still running")


# async: await refs directly
async def main() -> None:
    pages = await asyncio.gather(*[fetch.remote(i) for i in range(3)])
    print("awaited:", pages)
    print("awaited a sync task's result:", await square.remote(12))


asyncio.run(main())

# errors come back as the task's own exception class
try:
    ray.get(fail.remote())
except ValueError as e:
    print("caught the task's ValueError:", str(e).splitlines()[0])

ray.shutdown()
print("done")
