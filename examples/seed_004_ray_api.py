"""Every code example of the early "The Ray API" page (seed 004), run on aioray.

That page predates Ray 1.0: a few names changed since (each marked "fix:"), and the cluster
parts do not apply to a one-process runtime ("aioray:"). Sleeps are multiplied by
AIORAY_EXAMPLE_SLEEP_SCALE (default 1; the test suite uses 0.01).
"""

import os
import time

import numpy as np

import aioray as ray

SCALE = float(os.environ.get("AIORAY_EXAMPLE_SLEEP_SCALE", "1"))


def section(title: str) -> None:
    print(f"\n== {title}")


section("Starting and stopping a cluster within a script")
ray.init()
print(ray.cluster_resources())
ray.shutdown()  # aioray: the page's second init is meant as an alternative, not a second call

ray.init(num_cpus=20, num_gpus=2)
print(ray.cluster_resources())

section("Connecting to an existing cluster")
# aioray: there is no cluster to connect to; aioray says so (run the program on Ray for that).
try:
    ray.init(redis_address="12.345.67.89:6379")
except ValueError as e:
    print("aioray:", e)

section("Defining remote functions")


@ray.remote
def f(x):
    return x + 1


x_id = f.remote(0)
assert ray.get(x_id) == 1  # 1

y_id = f.remote(x_id)
assert ray.get(y_id) == 2  # 2


@ray.remote(num_returns=2)  # fix: Ray < 1.0 called this option num_return_vals
def f():
    return 1, 2


x_id, y_id = f.remote()
assert ray.get(x_id) == 1  # 1
assert ray.get(y_id) == 2  # 2

section("Getting values from object IDs")


@ray.remote
def f():
    return {'key1': ['value']}


# Get one object ID.
print(ray.get(f.remote()))  # {'key1': ['value']}
# Get a list of object IDs.
print(ray.get([f.remote() for _ in range(2)]))  # [{'key1': ['value']}, {'key1': ['value']}]

section("Putting objects in the object store")
x_id = ray.put(1)
assert ray.get(x_id) == 1  # 1


@ray.remote
def f(x):
    pass


x = np.zeros(10 ** 6)
# Alternative 1: Here, x is copied into the object store 10 times.
refs = [f.remote(x) for _ in range(10)]
# Alternative 2: Here, x is copied into the object store once.
x_id = ray.put(x)
refs += [f.remote(x_id) for _ in range(10)]
ray.get(refs)  # aioray: not on the page; waits for the 20 tasks
print("20 tasks got the array; a returned array is read-only:",
      not ray.get(ray.put(x)).flags.writeable)

section("Waiting for a subset of tasks to finish")


@ray.remote
def f(n):
    time.sleep(n * SCALE)
    return n


# Start 3 tasks with different durations.
results = [f.remote(i) for i in range(3)]
# Block until 2 of them have finished.
ready_ids, remaining_ids = ray.wait(results, num_returns=2)
print(len(ready_ids), "ready,", len(remaining_ids), "remaining")

# Start 5 tasks with different durations.
results = [f.remote(i) for i in range(5)]  # fix: the page says 5 tasks but starts 3
# Block until 4 of them have finished or 2.5 seconds pass.
# fix: the timeout was in milliseconds (2500) before Ray 1.0; it is in seconds now.
ready_ids, remaining_ids = ray.wait(results, num_returns=4, timeout=2.5 * SCALE)
print(len(ready_ids), "ready,", len(remaining_ids), "remaining")


@ray.remote
def f():
    return 1


# Start 5 tasks.
remaining_ids = [f.remote() for i in range(5)]
# Whenever one task finishes, start a new one.
for _ in range(100):
    ready_ids, remaining_ids = ray.wait(remaining_ids)
    # Get the available object and do something with it.
    print(ray.get(ready_ids))
    # Start a new task.
    remaining_ids.append(f.remote())

section("Viewing errors")


@ray.remote
def f():
    raise Exception("This task failed!!")


f.remote()  # An error message will be printed in the background.

# Wait for the error to propagate to Redis.
time.sleep(1 * SCALE)

# fix: ray.error_info() was removed from Ray (and aioray has no Redis): an error nobody
# retrieves is printed in the background as above, and ray.get raises it.
try:
    ray.get(f.remote())
except Exception as e:
    print("ray.get raised:", str(e).splitlines()[0])

print("\nseed_004_ray_api: all examples ran")
ray.shutdown()
