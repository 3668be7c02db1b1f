"""Metric records: what ``aioray.util.metrics`` sends to the backend, and the store that
aggregates them in the driver (values recorded in worker processes travel to it)."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple


class MetricKind(str, Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class MetricRecord(NamedTuple):
    """One update: ``inc`` (counter), ``set`` (gauge) or ``observe`` (histogram)."""

    kind: MetricKind
    name: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]  # histograms only
    tags: tuple[tuple[str, str], ...]  # sorted (key, value) pairs
    value: float


@dataclass
class MetricSeries:
    """One metric's value for one set of tags."""

    value: float = 0.0  # counter total / gauge value / histogram sum
    count: int = 0  # histogram observations
    buckets: list[int] = field(default_factory=list)  # histogram: count per boundary (+inf)


@dataclass
class Metric:
    kind: MetricKind
    name: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]
    series: dict[tuple[tuple[str, str], ...], MetricSeries] = field(default_factory=dict)


class MetricStore:
    """Every metric of one runtime (any thread may record)."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def record(self, r: MetricRecord) -> None:
        with self._lock:
            m = self.metrics.get(r.name)
            if m is None:
                m = self.metrics[r.name] = Metric(r.kind, r.name, r.description, r.tag_keys,
                                                  r.boundaries)
            elif m.kind is not r.kind:
                raise ValueError(f"Metric {r.name!r} is a {m.kind.value}; it can't be recorded "
                                 f"as a {r.kind.value}. Use another name.")
            s = m.series.get(r.tags)
            if s is None:
                s = m.series[r.tags] = MetricSeries(
                    buckets=[0] * (len(m.boundaries) + 1) if r.kind is MetricKind.HISTOGRAM
                    else [])
            if r.kind is MetricKind.COUNTER:
                s.value += r.value
            elif r.kind is MetricKind.GAUGE:
                s.value = r.value
            else:
                s.value += r.value
                s.count += 1
                s.buckets[bisect.bisect_left(m.boundaries, r.value)] += 1

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per metric and tag set: name, kind, description, tags, value (and for a
        histogram count, sum, and cumulative-free bucket counts by upper boundary)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for m in sorted(self.metrics.values(), key=lambda m: m.name):
                for tags, s in sorted(m.series.items()):
                    row: dict[str, Any] = {"name": m.name, "kind": m.kind.value,
                                           "description": m.description, "tags": dict(tags)}
                    if m.kind is MetricKind.HISTOGRAM:
                        row.update(count=s.count, sum=s.value, buckets=dict(zip(
                            [*m.boundaries, float("inf")], s.buckets, strict=True)))
                    else:
                        row["value"] = s.value
                    out.append(row)
        return out
