"""Every code example of the "Ray Core" blog post (seed 003, in Chinese), run on aioray.

The post's snippets have typos and missing definitions; each fix is minimal and marked
"fix:", each aioray adaptation "aioray:". Sleeps are multiplied by AIORAY_EXAMPLE_SLEEP_SCALE
(default 1; the test suite uses 0.01).
"""

import asyncio
import os
import time

import aioray as ray
from aioray import ObjectRefGenerator  # aioray: the post imports it from ray._raylet
from aioray.util import ActorPool  # fix: the post writes `import ray.util import ActorPool`
from aioray.util.queue import Empty, Queue

SCALE = float(os.environ.get("AIORAY_EXAMPLE_SLEEP_SCALE", "1"))


def section(title: str) -> None:
    print(f"\n== {title}")


# aioray: logical resources so every example can be scheduled on any machine: a GPU for the
# first task, and enough CPUs for the 2-CPU Counter actor plus the tasks that call it.
ray.init(num_cpus=8, num_gpus=1)

section("Task")


@ray.remote(num_cpus=1, num_gpus=1)  # fix: the post writes `num=gpus=1`
def f():
    return 1


# Blocking call
print(ray.get(f.remote()))

section("Ray generators")


@ray.remote
def f():
    for i in range(5):
        if i == 1:
            raise ValueError
        yield i


try:
    for obj_ref in f.remote():
        print(ray.get(obj_ref))
except ValueError as e:
    print(repr(e).splitlines()[0])

section("Generators from actors, async actors and threaded actors")


@ray.remote
class actor:
    def f(self):
        for i in range(5):
            yield i


@ray.remote
class asyncActor:
    async def f(self):
        for i in range(5):
            yield i


@ray.remote(max_concurrency=5)
class threadActor:
    def f(self):
        for i in range(5):
            yield i


# fix: the post defines actor/asyncActor/threadActor but uses these names:
Actor, AsyncActor, ThreadedActor = actor, asyncActor, threadActor

actor = Actor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))

actor = AsyncActor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))

actor = ThreadedActor.remote()
for ref in actor.f.remote():
    print(ray.get(ref))
# 當沒用或不繼續generator記得刪
# gen = threadActor.remote()
# del gen

section("Asynchronous consumption: asyncio and await")


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

section("Asynchronous consumption: ray.wait")


@ray.remote
def generator_task():
    for i in range(5):
        time.sleep(5 * SCALE)
        yield i


@ray.remote
def regular_task():  # fix: the post uses `ref` without defining it (Ray's guide has this task)
    for i in range(5):
        time.sleep(5 * SCALE)
    return


gen = [generator_task.remote()]
ref = [regular_task.remote()]  # fix: see regular_task
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
print(result)

section("Actors")


@ray.remote(num_cpus=2)
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


@ray.remote
def f(counter):
    for _ in range(10):
        time.sleep(1 * SCALE)
        counter.increment.remote()  # call class func


counter = Counter.options(name="demo").remote()  # call class
tasks = [f.remote(counter) for _ in range(3)]  # 每秒+3
for _ in range(10):
    time.sleep(0.1 * SCALE)
    print(ray.get(counter.get_counter.remote()))
ray.get(tasks)  # aioray: wait for the three tasks, then show the count (3 tasks x 10 calls)
print("final:", ray.get(counter.get_counter.remote()))

section("Names and namespaces")


@ray.remote
class Actor:
    def exit(self):  # fix: the post calls a.exit.remote() on a class with no methods
        ray.actor.exit_actor()


# aioray: one process is the whole cluster, so there is no address="auto" to connect to and
# no second driver job: instead of the post's three ray.init(address="auto", namespace=...)
# calls ("colors", "fruit", "colors" again), each call below names its namespace.
Actor.options(name="orange", namespace="colors", lifetime="detached").remote()
# the "fruit" job
Actor.options(name="orange2", namespace="fruit", lifetime="detached").remote()  # fix: never created
ray.get_actor("orange2", namespace="fruit")
# back in the "colors" job
ray.get_actor("orange", namespace="colors")

# 當想獲取其他ray cluster的actor時,需要namespace指定。
ray.get_actor("orange2", namespace="fruit")
try:
    ray.get_actor("orange2", namespace="colors")
except ValueError as e:
    print("orange2 is not in colors:", str(e).splitlines()[0])
a = Actor.options(name="g1", get_if_exists=True).remote()
assert Actor.options(name="g1", get_if_exists=True).remote() == a

# 刪除actor
ray.kill(a)  # cluster delete actor
b = Actor.options(name="g2").remote()  # fix: `a` is already killed; exit another actor
b.exit.remote()  # manual delete
print("g1 killed, g2 exited")

section("asyncio actors (active)")


@ray.remote
class AsyncActor:
    async def start(self):
        print("start")
        await asyncio.sleep(2 * SCALE)
        print("finished")


actor = AsyncActor.remote()
ray.get([actor.start.remote() for _ in range(4)])  # fix: the post calls a missing run_task


async def monitor(actor):
    await actor.start.remote()  # fix: the post writes actor.start().remote()


asyncio.run(monitor(actor))  # fix: the post runs an undefined async_get()

section("asyncio (passive)")


@ray.remote
def task():  # fix: the post misses the colon
    return 1


# way 1
ray.wait([task.remote()])


# way 2
async def wait_obj():
    await asyncio.wait([task.remote()])


asyncio.run(wait_obj())
print("both ways waited")

section("Threaded actors and concurrency groups")


@ray.remote(concurrency_groups={"io": 2})
class ThreadedActor:
    @ray.method(concurrency_group="io")  # fix: the post writes concurrency_group:"hello"
    def task1(self):
        print("hello 1")


a = ThreadedActor.options(max_concurrency=10).remote()
ray.get([a.task1.remote(), a.task1.remote()])


@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    def __init__(self):
        pass

    @ray.method(concurrency_group="io")
    async def f1(self):
        pass

    @ray.method(concurrency_group="compute")
    async def f2(self):
        pass

    async def f3(self):
        pass


a = AsyncIOActor.remote()  # fix: the post uses `a` without creating this actor
ray.get(a.f3.options(concurrency_group="compute").remote())
print("f3 ran in the compute group")

section("Utils: ActorPool")


@ray.remote
class Actor:
    def double(self, n):
        return n * 2


pool = ActorPool([Actor.remote(), Actor.remote()])
gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
print(list(gen))  # [2, 4, 6, 8]

section("Utils: Queue")
# fix: the post calls ray.init() again here; aioray (like Ray) allows one init per process.
queue = Queue(maxsize=100)


@ray.remote
def consumer(id, queue):
    try:
        while True:
            next_item = queue.get(block=True, timeout=1)
            print(f"consumer {id} got work {next_item}")
    except Empty:
        pass


[queue.put(i) for i in range(10)]
consumers = [consumer.remote(id, queue) for id in range(2)]
ray.get(consumers)  # fix: wait for the consumers before the script ends

print("\nseed_003_ray_core_blog: all examples ran")
ray.shutdown()
