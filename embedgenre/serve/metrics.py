"""Prometheus metrics of one app: requests, latency per route and per stage, batch sizes,
queue depths and the index generation served. Each app has its own registry."""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedgenre_requests_total",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "embedgenre_request_seconds",
            "Time to answer a request.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "embedgenre_stage_seconds",
            "Time spent per stage: decode (upload to pixels), encode (one micro-batch), search, score.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "embedgenre_batch_size",
            "Inputs encoded together per micro-batch.",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "embedgenre_queue_depth", "Inputs waiting to be encoded.", ["kind"], registry=r
        )
        self.rejected = Counter(
            "embedgenre_rejected_total",
            "Requests refused before work: overload, size, auth, timeout.",
            ["reason"],
            registry=r,
        )
        self.generation = Gauge(
            "embedgenre_index_generation", "Index generation being served.", registry=r
        )
        self.decode_bytes = Gauge(
            "embedgenre_decode_bytes",
            "Bytes of pixels being decoded now, all requests (bounded by the decode budget).",
            registry=r,
        )
        self.dropped = Counter(
            "embedgenre_cancelled_inputs_total",
            "Inputs dropped from a micro-batch because their request was cancelled.",
            ["kind"],
            registry=r,
        )
        self.late = Histogram(
            "embedgenre_work_after_answer_seconds",
            "How long a request's work went on after it was answered (timed out, or its client "
            "went away).",
            buckets=(0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.reloads = Counter(
            "embedgenre_index_reloads_total", "Switches to a new index generation.", registry=r
        )

    @contextmanager
    def timed(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(stage).observe(time.perf_counter() - t)
