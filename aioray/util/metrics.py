"""``aioray.util.metrics``: Ray's ``ray.util.metrics`` — ``Counter``, ``Gauge``, ``Histogram``.

Usable anywhere (the driver, tasks, actors in their processes); every update goes to the driver,
which aggregates per metric and tag set. Read them with :func:`snapshot`, or export them with
:func:`register_prometheus` when ``prometheus_client`` is installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from aioray._backend import registry
from aioray._backend.metrics import MetricKind, MetricRecord


class Metric:
    """What the three kinds share: a name, a description, tag keys and default tags."""

    _kind: MetricKind

    def __init__(self, name: str, description: str = "",
                 tag_keys: Sequence[str] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"A metric needs a non-empty name (a str), got {name!r}.")
        if tag_keys is not None and (isinstance(tag_keys, str) or not all(
                isinstance(k, str) for k in tag_keys)):
            raise TypeError(f"tag_keys must be a tuple of str, got {tag_keys!r}.")
        self._name = name
        self._description = description
        self._tag_keys = tuple(tag_keys or ())
        self._default_tags: dict[str, str] = {}
        self._boundaries: tuple[float, ...] = ()

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used when a record doesn't give them (Ray's method; returns the metric)."""
        for k in default_tags:
            if k not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {k!r} for metric {self._name!r}; its "
                                 f"tag_keys are {self._tag_keys}.")
        self._default_tags = {k: str(v) for k, v in default_tags.items()}
        return self

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"A metric value must be a number, got {value!r}.")
        merged = {**self._default_tags, **{k: str(v) for k, v in (tags or {}).items()}}
        unknown = sorted(set(merged) - set(self._tag_keys))
        if unknown:
            raise ValueError(f"Unrecognized tag key(s) {unknown} for metric {self._name!r}; "
                             f"its tag_keys are {self._tag_keys}.")
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"Missing value for tag key(s) {missing} of metric "
                             f"{self._name!r}: pass tags= or set_default_tags().")
        registry.current().record_metric(MetricRecord(
            self._kind, self._name, self._description, self._tag_keys, self._boundaries,
            tuple(sorted(merged.items())), float(value)))


class Counter(Metric):
    """A cumulative count (Ray's ``Counter``)."""

    _kind = MetricKind.COUNTER

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if isinstance(value, (int, float)) and value <= 0:
            raise ValueError(f"value must be > 0, got {value}")
        self._record(value, tags)


class Gauge(Metric):
    """The last value set (Ray's ``Gauge``)."""

    _kind = MetricKind.GAUGE

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record(value, tags)


class Histogram(Metric):
    """Observations counted into buckets (Ray's ``Histogram``: ``boundaries`` are the
    buckets' upper bounds, positive and increasing)."""

    _kind = MetricKind.HISTOGRAM

    def __init__(self, name: str, description: str = "",
                 boundaries: Sequence[float] | None = None,
                 tag_keys: Sequence[str] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        bounds = list(boundaries or ())
        if not bounds:
            raise ValueError("Histogram needs boundaries: a non-empty list of bucket upper "
                             "bounds, e.g. boundaries=[0.1, 1, 10].")
        if any(b <= 0 for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"Histogram boundaries must be positive and increasing, got "
                             f"{bounds}.")
        self._boundaries = tuple(float(b) for b in bounds)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record(value, tags)


def snapshot() -> list[dict[str, Any]]:
    """Every metric's current values, one dict per metric and tag set (aioray's addition:
    ``name``, ``kind``, ``description``, ``tags``, and ``value`` or, for a histogram,
    ``count``, ``sum`` and ``buckets`` — observations per bucket upper bound)."""
    return registry.current().metrics_snapshot()


def register_prometheus(prom_registry: Any = None) -> Any:
    """Export aioray's metrics on a ``prometheus_client`` registry (default: its global one),
    read on every scrape. Returns the collector (``unregister`` it to stop)."""
    try:
        from prometheus_client import REGISTRY
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
    except ImportError:
        raise ImportError("register_prometheus() needs prometheus_client: "
                          "pip install prometheus_client") from None

    class _Collector:
        def collect(self) -> Iterator[Any]:
            families: dict[str, Any] = {}
            for row in snapshot():
                keys = sorted(row["tags"])
                fam = families.get(row["name"])
                if fam is None:
                    make = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                            "histogram": HistogramMetricFamily}[row["kind"]]
                    fam = families[row["name"]] = make(row["name"], row["description"],
                                                       labels=keys)
                labels = [row["tags"][k] for k in keys]
                if row["kind"] == "histogram":
                    total, buckets = 0, []
                    for bound, n in row["buckets"].items():
                        total += n
                        buckets.append(("+Inf" if bound == float("inf") else str(bound), total))
                    fam.add_metric(labels, buckets, row["sum"])
                else:
                    fam.add_metric(labels, row["value"])
            yield from families.values()

    collector = _Collector()
    (prom_registry if prom_registry is not None else REGISTRY).register(collector)
    return collector


__all__ = ["Counter", "Gauge", "Histogram", "Metric", "register_prometheus", "snapshot"]
