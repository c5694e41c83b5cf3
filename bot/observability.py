"""Prometheus metrics, one registry per application (tests run several side by side):
counters the hot paths bump, and gauges read from the database when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.services.availability import Gauges


class Instruments:
    """Prometheus' instruments (not the CX metrics: bot.services.metrics)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.answers = Counter("otklik_answers_recorded", "Answers recorded",
                               ["channel", "metric"], registry=registry)
        self.alerts_raised = Counter("otklik_alerts_raised", "Alerts raised by low scores",
                                     ["channel"], registry=registry)
        self.send_errors = Counter(
            "otklik_send_errors", "Surveys not sent: reason is the closed channel's "
            "(blocked, no_chat, hard_bounce), transient (retried) or exception",
            ["channel", "reason"], registry=registry)
        self.webhooks = Counter("otklik_webhook_attempts",
                                "Outbound webhook POSTs, by result (delivered or failed)",
                                ["result"], registry=registry)
        self.http = Histogram("otklik_http_request_duration_seconds",
                              "HTTP requests served, by route (its pattern, not the URL) "
                              "and status class (2xx, 3xx, 4xx, 5xx)",
                              ["method", "route", "status"], registry=registry)
        self.state = _State()
        registry.register(self.state)
        # The process's CPU, memory and open files, and the interpreter's garbage collector.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def recorded(self, answers: Sequence[Any]) -> None:
        """Dialogues.record's observer (storage.repositories.dialogues): the answers a
        turn inserted."""
        for answer in answers:
            self.answers.labels(answer.channel, answer.metric).inc()
            if answer.alert_id is not None:
                self.alerts_raised.labels(answer.channel).inc()

    def refresh(self, gauges: Gauges) -> None:
        """The gauges as just read (deliveries and alerts by status, events waiting in the
        outbox: bot.services.availability), for the scrape under way."""
        self.state.counts, self.state.pending = gauges.by_status, gauges.outbox_pending


class _State(Collector):
    """Gauges as of the last refresh (Metrics.refresh, run by each scrape first)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.pending = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, what in (("deliveries", "Deliveries"), ("alerts", "Alerts")):
            family = GaugeMetricFamily(f"otklik_{name}", f"{what} by status",
                                       labels=["status"])
            for status, count in sorted(self.counts.get(name, {}).items()):
                family.add_metric([status], count)
            yield family
        yield GaugeMetricFamily("otklik_outbox_pending",
                                "Outbox events (webhooks, team chat) not carried out yet",
                                value=self.pending)
