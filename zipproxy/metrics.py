"""Prometheus metrics (``GET /-/metrics``): one registry per app, so tests and workers never share.

With ``--workers N`` each process counts its own requests; scrape replicas, not workers, or run
one worker per container (the Kubernetes way) when exact totals matter.
"""

from __future__ import annotations

import asyncio

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.zip_started = Counter("zipproxy_zip_started", "ZIP streams whose first byte was sent",
                                   registry=r)
        self.zip_completed = Counter("zipproxy_zip_completed", "ZIP streams sent whole",
                                     registry=r)
        self.zip_aborted = Counter("zipproxy_zip_aborted",
                                   "ZIP streams cut after their first byte", ["reason"],
                                   registry=r)
        self.zip_refused = Counter("zipproxy_zip_refused",
                                   "ZIP requests answered with an error before any ZIP byte",
                                   ["status"], registry=r)
        self.zip_bytes = Counter("zipproxy_zip_bytes", "ZIP bytes sent to clients", registry=r)
        self.zip_instances = Counter("zipproxy_zip_instances", "DICOM instances written to ZIPs",
                                     registry=r)
        self.upstream_errors = Counter("zipproxy_upstream_errors",
                                       "upstream failures by kind", ["kind"], registry=r)
        self.passthrough = Counter("zipproxy_passthrough_requests",
                                   "requests passed through to the upstream", ["method"],
                                   registry=r)
        self.in_flight = Gauge("zipproxy_zip_in_flight", "ZIP streams in progress", registry=r)
        self.tasks = Gauge("zipproxy_event_loop_tasks", "asyncio tasks of the event loop",
                           registry=r)
        ProcessCollector(registry=r)
        self.zip_duration = Histogram(
            "zipproxy_zip_duration_seconds", "time from request to the last ZIP byte",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expose what a leak would grow: tasks of the event loop, and the process's open file
        descriptors, RSS and CPU (``process_*``, prometheus-client's ProcessCollector)."""
        self.tasks.set_function(lambda: len(asyncio.all_tasks(loop)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
