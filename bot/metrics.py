"""Prometheus metrics, one registry per app so tests and several apps never collide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "cinebot_http_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cinebot_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
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

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the hot path skips prometheus' checks
        and lock (label values here come from bounded sets)."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
