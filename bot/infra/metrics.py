"""Prometheus metrics, one registry per app so tests and several apps never collide."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class HttpStats(Collector):
    """Requests by route and status, and latency by route, as prometheus exposes a
    ``Counter`` and a ``Histogram`` (``cinebot_http_requests_total``,
    ``cinebot_http_request_seconds``), kept in plain dicts and read at scrape time.

    Every request passes here: prometheus' own metrics take a lock per increment and
    walk the buckets in Python, about a fortieth of a callback's cost. The app runs on
    one event loop, so nothing else writes these counts meanwhile.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = (*sorted(buckets), math.inf)
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, tuple[list[int], list[float]]] = {}  # per bucket, and sum

    def observe(self, route: str, status: str, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = ([0] * len(self.bounds), [0.0])
        hist[0][bisect_left(self.bounds, seconds)] += 1
        hist[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "cinebot_http_requests", "HTTP requests by route and status", labels=["route", "status"]
        )
        for (route, status), n in list(self.requests.items()):
            requests.add_metric([route, status], n)
        yield requests
        latency = HistogramMetricFamily(
            "cinebot_http_request_seconds", "HTTP request latency by route", labels=["route"]
        )
        for route, (counts, total) in list(self.latency.items()):
            buckets = []
            running = 0
            for bound, n in zip(self.bounds, counts):
                running += n
                buckets.append((floatToGoString(bound), running))
            latency.add_metric([route], buckets, total[0])
        yield latency


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http = HttpStats(
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        )
        r.register(self.http)
        self.callbacks = Counter(
            "cinebot_callbacks_total",
            "Accepted callbacks by channel and kind",
            ["channel", "kind"],
            registry=r,
        )
        self.rejected = Counter(
            "cinebot_callbacks_rejected_total",
            "Callbacks refused, by channel and reason",
            ["channel", "reason"],
            registry=r,
        )
        self.dedup_hits = Counter(
            "cinebot_dedup_hits_total",
            "Retried callbacks recognised as duplicates",
            ["channel"],
            registry=r,
        )
        self.handler_errors = Counter(
            "cinebot_handler_errors_total", "Handlers that raised", ["handler"], registry=r
        )
        self.pay_notifies = Counter(
            "cinebot_pay_notifies_total",
            "Payment notifies, by outcome (issued, duplicate, rejected, refused, ...)",
            ["outcome"],
            registry=r,
        )
        self.deferred = Counter(
            "cinebot_replies_deferred_total",
            "Replies that overran the handler budget and went out asynchronously",
            ["channel"],
            registry=r,
        )

        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the hot path skips prometheus' checks
        and lock (label values here come from bounded sets)."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
