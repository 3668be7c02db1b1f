"""See what the runtime is doing: the state API, a timeline, metrics and progress bars.

    python examples/observe.py     # prints a task summary; writes aioray-timeline.json in the
                                   # temp directory (open it in https://ui.perfetto.dev or
                                   # chrome://tracing)
"""

import json
import os
import tempfile
import time

import aioray
from aioray.experimental.tqdm_ray import tqdm
from aioray.util import metrics, state

aioray.init(num_cpus=2)
items = metrics.Counter("items_processed", "items through the pipeline", tag_keys=("stage",))


@aioray.remote
def load(i):
    time.sleep(0.02)
    return list(range(i, i + 10))


@aioray.remote
def transform(batch):
    for _ in tqdm(batch, desc=f"batch {batch[0]}", flush_interval_s=0):
        time.sleep(0.002)
    metrics.Counter("items_processed", tag_keys=("stage",)).inc(len(batch), {"stage": "transform"})
    return [x * x for x in batch]


@aioray.remote
class Sink:
    def __init__(self):
        self.total = 0

    def add(self, batch):
        self.total += sum(batch)
        return self.total


sink = Sink.remote()
results = [sink.add.remote(transform.remote(load.remote(i * 10))) for i in range(4)]
print("total:", aioray.get(results)[-1])
items.inc(40, {"stage": "load"})

summary = state.summarize_tasks()["cluster"]["summary"]
for name, row in sorted(summary.items()):
    print(f"{name:12} {row['type']:12} {row['state_counts']}")
print("actors:", [(a.class_name, a.state, a.pid) for a in state.list_actors()])
print("metrics:", [(m["name"], m["tags"], m["value"]) for m in metrics.snapshot()])
path = os.path.join(tempfile.gettempdir(), "aioray-timeline.json")
aioray.timeline(path)
with open(path) as f:
    print(f"{path}: {len(json.load(f))} trace events")
aioray.shutdown()
