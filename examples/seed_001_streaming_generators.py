"""The code example of Ray's older "Ray Generators" guide (seed 001), run on aioray.

That guide spells streaming out with ``num_returns="streaming"`` (now the default for generator
functions; aioray accepts both). Its other examples are includes of Ray's doc_code files that
the guide does not show; seed_000_generators.py runs the current versions of all of them.
Sleeps are multiplied by AIORAY_EXAMPLE_SLEEP_SCALE (default 1; the test suite uses 0.01).
"""

import os
import time

import aioray as ray

SCALE = float(os.environ.get("AIORAY_EXAMPLE_SLEEP_SCALE", "1"))


# Takes 25 seconds to finish.
@ray.remote(num_returns="streaming")
def f():
    for i in range(5):
        time.sleep(5 * SCALE)
        yield i


for obj_ref in f.remote():
    # It is printed every 5 seconds, not after 25 seconds.
    print(ray.get(obj_ref))

# "ray.get(gen.completed()) to wait until a task completes"
gen = f.remote()
ray.get(gen.completed())
print("completed:", [ray.get(r) for r in gen])

print("\nseed_001_streaming_generators: all examples ran")
