"""``aioray.util.metrics``: Ray's Counter/Gauge/Histogram, aggregated in the driver from
everywhere they are recorded (driver, tasks in worker processes, actors in theirs)."""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle
import pytest

import aioray
from aioray.util import metrics

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _row(name: str, **tags: str) -> dict[str, Any]:
    rows = [r for r in metrics.snapshot() if r["name"] == name and r["tags"] == tags]
    assert len(rows) == 1, metrics.snapshot()
    return rows[0]


def test_values_aggregate_from_driver_tasks_and_actors(ray: object) -> None:
    requests = metrics.Counter("requests", "requests served", tag_keys=("route",))
    requests.set_default_tags({"route": "/"})

    @aioray.remote
    def serve(n: int) -> None:
        c = metrics.Counter("requests", "requests served", tag_keys=("route",))
        for _ in range(n):
            c.inc(tags={"route": "/task"})

    @aioray.remote
    class Server:
        def __init__(self) -> None:
            self.latency = metrics.Histogram("latency_s", "call latency",
                                             boundaries=[0.1, 1.0], tag_keys=("who",))
            self.load = metrics.Gauge("load", "current load")

        def handle(self, t: float) -> None:
            self.latency.observe(t, tags={"who": "actor"})
            self.load.set(t * 10)

    requests.inc()
    requests.inc(2)
    aioray.get([serve.remote(3), serve.remote(4)])
    s = Server.remote()
    aioray.get([s.handle.remote(t) for t in (0.05, 0.5, 5.0)])
    aioray.get(s.handle.remote(0.3))  # after the others: the gauge's last value

    assert _row("requests", route="/")["value"] == 3.0
    assert _row("requests", route="/task")["value"] == 7.0
    hist = _row("latency_s", who="actor")
    assert hist["count"] == 4 and hist["sum"] == pytest.approx(5.85)
    assert hist["buckets"] == {0.1: 1, 1.0: 2, float("inf"): 1}
    assert _row("load")["value"] == pytest.approx(3.0)


def test_bad_records_say_what_is_wrong(ray: object) -> None:
    c = metrics.Counter("errors_total", tag_keys=("kind",))
    with pytest.raises(ValueError, match="Missing value for tag key"):
        c.inc()
    with pytest.raises(ValueError, match="Unrecognized tag key"):
        c.inc(tags={"kind": "x", "other": "y"})
    with pytest.raises(ValueError, match="must be > 0"):
        c.inc(0)
    with pytest.raises(ValueError, match="boundaries"):
        metrics.Histogram("h")
    with pytest.raises(ValueError, match="positive and increasing"):
        metrics.Histogram("h", boundaries=[2, 1])
    with pytest.raises(ValueError, match="non-empty name"):
        metrics.Gauge("")
    metrics.Gauge("same_name").set(1)
    with pytest.raises(ValueError, match="is a gauge"):
        metrics.Counter("same_name").inc()


def test_prometheus_export(ray: object) -> None:
    prom = pytest.importorskip("prometheus_client")
    reg = prom.CollectorRegistry()
    metrics.register_prometheus(reg)
    metrics.Counter("jobs", "jobs done", tag_keys=("q",)).inc(5, tags={"q": "a"})
    metrics.Histogram("size", "sizes", boundaries=[1, 10]).observe(3)
    text = prom.generate_latest(reg).decode()
    assert 'jobs_total{q="a"} 5.0' in text
    assert 'size_bucket{le="10.0"} 1.0' in text and 'size_bucket{le="+Inf"} 1.0' in text
