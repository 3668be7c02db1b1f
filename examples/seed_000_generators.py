"""Every code example of Ray's "Ray Generators" guide (seed 000), run on aioray.

Adapted only where marked "aioray:" (the import, shorter sleeps). Sleeps are multiplied by
AIORAY_EXAMPLE_SLEEP_SCALE (default 1, as in the guide; the test suite uses 0.01).
"""

import asyncio
import os
import time

import aioray as ray
from aioray import ObjectRefGenerator  # aioray: Ray's guide imports it from ray._raylet

SCALE = float(os.environ.get("AIORAY_EXAMPLE_SLEEP_SCALE", "1"))
# Where the guide asserts on timing (ray.wait with timeout=0), sleeps keep a floor of 0.5 s so
# a busy machine cannot make the first item arrive "too early".
WAIT_SCALE = max(SCALE, 0.1)


def section(title: str) -> None:
    print(f"\n== {title}")


ray.init()

section("Intro: a generator task streams its outputs")


# Takes 25 seconds to finish.
@ray.remote
def f():
    for i in range(5):
        time.sleep(5 * SCALE)
        yield i


for obj_ref in f.remote():
    # Prints every 5 seconds and stops after 25 seconds.
    print(ray.get(obj_ref))

section("Getting started")


@ray.remote
def task():
    for i in range(5):
        time.sleep(5 * SCALE)
        yield i


gen = task.remote()
# Blocks for 5 seconds.
ref = next(gen)
# return 0
assert ray.get(ref) == 0
# Blocks for 5 seconds.
ref = next(gen)
# Return 1
assert ray.get(ref) == 1
# Returns 2~4 every 5 seconds.
for ref in gen:
    print(ray.get(ref))

section("Error handling")


@ray.remote
def task():  # the guide redefines `task` in each section
    for i in range(5):
        time.sleep(1 * SCALE)
        if i == 1:
            raise ValueError
        yield i


gen = task.remote()
# it's okay.
ray.get(next(gen))
# Raises an exception
try:
    ray.get(next(gen))
except ValueError as e:
    print(f"Exception is raised when i == 1 as expected {e}")

section("Generator from actor tasks")


@ray.remote
class Actor:
    def f(self):
        for i in range(5):
            yield i


@ray.remote
class AsyncActor:
    async def f(self):
        for i in range(5):
            yield i


@ray.remote(max_concurrency=5)
class ThreadedActor:
    def f(self):
        for i in range(5):
            yield i


actor = Actor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))
actor = AsyncActor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))
actor = ThreadedActor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))

section("Using the Ray generator with asyncio")


@ray.remote
def task():
    for i in range(5):
        time.sleep(1 * SCALE)
        yield i


async def main():
    async for ref in task.remote():
        print(await ref)


asyncio.run(main())

section("Garbage collection of object references")


@ray.remote
def task():
    for i in range(5):
        time.sleep(1 * SCALE)
        yield i


gen = task.remote()
ref1 = next(gen)
del gen
print("ref1 is still usable after del gen:", ray.get(ref1))

section("Wait until a generator task completes")
gen = task.remote()
ray.get(gen.completed())
print("completed; refs left to take:", [ray.get(r) for r in gen])

section("Use asyncio and await")


@ray.remote
def task():
    for i in range(5):
        time.sleep(1 * SCALE)
        yield i


async def async_task():
    async for ref in task.remote():
        print(await ref)


async def main():
    t1 = async_task()
    t2 = async_task()
    await asyncio.gather(t1, t2)


asyncio.run(main())

section("Use ray.wait")


@ray.remote
def task():
    for i in range(5):
        time.sleep(5 * WAIT_SCALE)
        yield i


gen = task.remote()
# Because it takes 5 seconds to make the first yield,
# with 0 timeout, the generator is unready.
ready, unready = ray.wait([gen], timeout=0)
print("timeout 0, nothing is ready.")
print(ready)
assert len(ready) == 0
assert len(unready) == 1

# Without a timeout argument, ray.wait waits until the given argument
# is ready. When a next item is ready, it returns.
ready, unready = ray.wait([gen])
print("Wait for 5 seconds. The next item is ready.")
assert len(ready) == 1
assert len(unready) == 0
next(gen)

# Because the second yield hasn't happened yet,
ready, unready = ray.wait([gen], timeout=0)
print("Wait for 0 seconds. The next item is not ready.")
print(ready, unready)
assert len(ready) == 0
assert len(unready) == 1
del gen

section("ray.wait with generators and refs mixed")


@ray.remote
def generator_task():
    for i in range(5):
        time.sleep(5 * SCALE)
        yield i


@ray.remote
def regular_task():
    for i in range(5):
        time.sleep(5 * SCALE)
    return


gen = [generator_task.remote()]
ref = [regular_task.remote()]
ready, unready = [], [*gen, *ref]
result = []
while unready:
    ready, unready = ray.wait(unready)
    for r in ready:
        if isinstance(r, ObjectRefGenerator):
            try:
                ref = next(r)
                result.append(ray.get(ref))
            except StopIteration:
                pass
            else:
                unready.append(r)
        else:
            result.append(ray.get(r))
print("result:", result)
assert sorted(result, key=repr) == sorted([0, 1, 2, 3, 4, None], key=repr)

print("\nseed_000_generators: all examples ran")
ray.shutdown()  # aioray: stops the generator tasks still running (their generators were deleted)
